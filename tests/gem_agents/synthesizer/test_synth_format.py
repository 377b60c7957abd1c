"""The synthesizer's target string: round trips exactly, and every parse error names its line."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gem_agents.synthesizer.format import (
    FormatError,
    SynthTrajectory,
    canonical_messages,
    decode_value,
    encode_value,
    extract_block,
    from_trajectory,
    parse,
    render,
    trajectory_to_text,
)
from tests.helpers import example, example_names, rollout
from tools_runtime.records import PlannedError
from tools_runtime.scenario import build_scenario

TOOL = {"type": "function", "function": {"name": "get_order", "description": "Get one order.",
                                         "parameters": {"type": "object",
                                                        "properties": {"order_id": {"type": "string"}},
                                                        "required": ["order_id"]}}}
STATE = {"collections": {"order": {"ORD-1": {"status": "shipped"}}}, "session": {"logged_in": False, "user": None,
                                                                                "credentials": {}}, "counters": {}}


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


def block(messages, **kw):
    return SynthTrajectory(tools=kw.get("tools", [TOOL]), execution_graph=kw.get("graph", "(get_order)"),
                           initial_state=kw.get("state", STATE), planned_errors=kw.get("errors", []),
                           messages=messages)


@pytest.mark.parametrize("name", example_names())
def test_simulated_trajectories_round_trip_exactly(name):
    for seed in (0, 1):
        traj = rollout(build_scenario(example(name), seed))
        assert traj.verdict.passed, traj.verdict.failures
        st_ = from_trajectory(traj)
        text = render(st_)
        back = parse(text)
        assert back == st_
        # The simulator's messages and tools are already canonical: identical, key for key.
        assert back.messages == traj.messages
        assert back.tools == traj.tools
        assert back.initial_state == traj.scenario.initial_state
        assert back.execution_graph == traj.scenario.workflow.execution_graph
        assert render(back) == text


def test_planned_errors_travel_in_their_own_section():
    sc = build_scenario(example("shop_return"), 0)
    sc = sc.model_copy(update={"planned_errors": [PlannedError(kind="transient", tool="create_return")]})
    traj = rollout(sc)
    text = trajectory_to_text(traj)
    assert "\n## errors\n" in text and text.index("## errors") < text.index("## dialogue")
    assert parse(text).planned_errors == sc.planned_errors
    assert parse(text).messages == traj.messages


def test_awkward_contents_round_trip():
    msgs = [
        {"role": "system", "content": "  leading and trailing spaces  "},
        {"role": "user", "content": '"starts with a quote" and more'},
        {"role": "assistant", "content": "line one\nline two\r\nthree"},
        {"role": "user", "content": "ünïcödé → ok; user: looks like a role; ## dialogue"},
        {"role": "assistant", "content": "", "tool_calls": [call("c1", "get_order", '{"order_id": "ORD-1"}'),
                                                           call("c2", "get_order", "not json at all")]},
        {"role": "tool", "tool_call_id": "c1", "name": "get_order", "content": '{"status": "shipped"}'},
        {"role": "tool", "tool_call_id": "c2", "content": ""},
        {"role": "assistant", "content": "Checking once more.", "tool_calls": [
            call("c3", "get_order", '{\n  "order_id": "ORD-1"\n}')]},
        {"role": "tool", "tool_call_id": "c3", "name": "get_order", "content": "multi\nline result"},
        {"role": "assistant", "content": "first reply"},
        {"role": "assistant", "content": "a second assistant message, not merged into the first"},
    ]
    st_ = block(msgs, graph="(a)\n->(b)")
    text = render(st_)
    assert parse(text) == st_
    assert parse(text).messages == msgs
    assert len(parse(text).messages) == len(msgs)


def test_canonical_form_fills_what_the_format_needs():
    raw = [{"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
           {"role": "assistant", "content": None, "tool_calls": [
               {"id": "c1", "function": {"name": "get_order", "arguments": {"order_id": "ORD-1"}}}]},
           {"role": "tool", "tool_call_id": "c1", "content": {"status": "shipped"}},
           {"role": "assistant", "content": "done", "stop": True}]
    canon = canonical_messages(raw)
    assert canon[0] == {"role": "user", "content": "hi there"}
    assert canon[1]["content"] == "" and json.loads(canon[1]["tool_calls"][0]["function"]["arguments"]) == {
        "order_id": "ORD-1"}
    assert canon[2]["content"] == '{"status": "shipped"}'
    assert "stop" not in canon[3]
    assert parse(render(block(raw))).messages == canon


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_round_trips(text):
    assert decode_value(encode_value(text), 1, "x") == text
    msgs = [{"role": "user", "content": text}, {"role": "assistant", "content": text}]
    assert parse(render(block(msgs))).messages == msgs


def test_writer_refuses_what_it_cannot_write():
    msgs = [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": "", "tool_calls": [call("has space", "get_order", "{}")]}]
    with pytest.raises(FormatError, match="tool call id 'has space'"):
        render(block(msgs))
    with pytest.raises(FormatError, match="role 'narrator'"):
        canonical_messages([{"role": "narrator", "content": "x"}])


GOOD = render(block([{"role": "user", "content": "Where is ORD-1?"},
                     {"role": "assistant", "content": "", "tool_calls": [call("c1", "get_order",
                                                                              '{"order_id": "ORD-1"}')]},
                     {"role": "tool", "tool_call_id": "c1", "name": "get_order", "content": '{"status": "shipped"}'},
                     {"role": "assistant", "content": "It has shipped."}]))


def lines_of(text):
    return text.rstrip("\n").split("\n")


def replace_line(text, startswith, new):
    lines = lines_of(text)
    i = next(i for i, line in enumerate(lines) if line.startswith(startswith))
    lines[i:i + 1] = [new] if new is not None else []
    return "\n".join(lines) + "\n", i + 1


def test_good_block_parses():
    assert parse(GOOD).messages[-1] == {"role": "assistant", "content": "It has shipped."}


@pytest.mark.parametrize("mutate,match", [
    (lambda t: (t.replace("## end\n", ""), None), r"cut off: no ## end"),
    (lambda t: (t.split("## state")[0], None), r"cut off: no ## state, ## dialogue, ## end"),
    (lambda t: ("Sure! Here is the conversation.\n" + t, 1), r"start with '## tools'"),
    (lambda t: ("nothing useful here", 1), r"start with '## tools'"),
    (lambda t: (t.replace("## graph", "## grpah"), 3), r"unknown section '## grpah'"),
    (lambda t: (t + "and some chatter\n", 14), r"text after '## end'"),
    (lambda t: replace_line(t, '{"name"', '{"name": "get_order", '), r"the tool is not valid JSON"),
    (lambda t: replace_line(t, '{"name"', '["not", "an", "object"]'), r"must be a JSON object"),
    (lambda t: replace_line(t, '{"collections"', '{"collections": {"order": ["ORD-1"]}}'),
     r"state.collections.order must be an object"),
    (lambda t: replace_line(t, '{"collections"', '{"tables": {}}'), r"unknown state key 'tables'"),
    (lambda t: replace_line(t, "call c1", 'call c1 get_order'), r"has no arguments"),
    (lambda t: replace_line(t, "user:", 'call c0 get_order {}'), r"must follow an 'assistant:' line"),
    (lambda t: replace_line(t, "user:", 'user: "unterminated'), r"not a valid JSON string"),
    (lambda t: replace_line(t, "user:", 'USER: hello'), r"cannot read this dialogue line"),
    (lambda t: replace_line(t, "tool c1", 'tool: {"status": "shipped"}'), r"cannot read this dialogue line"),
])
def test_parse_errors_name_the_line(mutate, match):
    text, line = mutate(GOOD)
    with pytest.raises(FormatError, match=match) as info:
        parse(text)
    if line is not None:
        assert info.value.line == line, str(info.value)
        assert str(info.value).startswith(f"line {line}:")


def test_sections_out_of_order_or_twice_or_missing():
    swapped = GOOD.replace("## graph\n(get_order)\n", "").replace("## dialogue\n", "## dialogue\n", 1)
    with pytest.raises(FormatError, match=r"'## graph' is missing before '## state'"):
        parse(swapped)
    twice = GOOD.replace("## end\n", "## tools\n## end\n")
    with pytest.raises(FormatError, match="appears twice"):
        parse(twice)
    reordered = GOOD.replace("## graph\n(get_order)\n", "").replace("## end\n", "## graph\n(get_order)\n## end\n")
    with pytest.raises(FormatError, match="missing before"):
        parse(reordered)


def test_planned_error_fields_are_checked():
    text = GOOD.replace("## dialogue\n", '## errors\n{"kind": "meteor", "tool": "get_order"}\n## dialogue\n')
    with pytest.raises(FormatError, match=r"planned error field kind") as info:
        parse(text)
    assert info.value.line == lines_of(text).index('{"kind": "meteor", "tool": "get_order"}') + 1


def test_multiline_state_error_points_inside_the_state():
    text = GOOD.replace(json.dumps(STATE), '{\n  "collections": {},\n  "session": {oops}\n}')
    with pytest.raises(FormatError, match="the state is not valid JSON") as info:
        parse(text)
    assert lines_of(text)[info.value.line - 1].strip().startswith('"session"')


def test_extract_block_drops_fences_and_chatter():
    answer = "Here you go:\n```text\n" + GOOD + "```\nHope this helps!"
    assert parse(extract_block(answer)) == parse(GOOD)
    assert extract_block("no block at all") == "no block at all"


def test_extract_block_skips_thinking_and_drafts():
    draft = GOOD.replace("It has shipped.", "draft answer")
    thinking = f"<think>\nLet me plan.\n{draft}</think>\n"
    assert parse(extract_block(thinking + GOOD)).messages[-1]["content"] == "It has shipped."
    # A draft written outside the think tags: the last complete block is the answer.
    assert parse(extract_block(draft + "\nWait, let me fix that.\n" + GOOD)) == parse(GOOD)
    # The final block cut off: the last complete one is taken only if it exists; else the cut is reported.
    with pytest.raises(FormatError, match="cut off"):
        parse(extract_block("Sure.\n" + GOOD[: len(GOOD) // 2]))


@pytest.mark.parametrize("name", ["shop_return", "support_ticket"])
def test_refined_trajectories_round_trip_and_replay_verify(name):
    refine_ops = pytest.importorskip("tools_runtime.refine_ops")
    from gem_agents.synthesizer.oneshot import verify_text

    refined, applied, _ = refine_ops.apply_ops(build_scenario(example(name), 0), seed=0)
    traj = rollout(refined)
    assert traj.verdict.passed, traj.verdict.failures
    assert refined.planned_errors and len(applied) >= 4  # errors, extra goals, extra tools: the hard case
    text = trajectory_to_text(traj)
    assert parse(text) == from_trajectory(traj) and parse(text).messages == traj.messages
    outcome = verify_text(text, doc_id=name)
    assert outcome.passed, outcome.trajectory.verdict.failures
    assert outcome.trajectory.stats.errors_recovered >= 1
