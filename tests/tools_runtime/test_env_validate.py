"""Environment validation: each broken spec is reported at the right path; UI gestures and bad provenance too."""

import copy
import json
from pathlib import Path

import pytest

from tools_runtime.env_validate import (
    errors,
    find_span,
    ground_sources,
    ground_task,
    grounding,
    task_issues,
    ui_gesture_reason,
    validate_environment,
)
from tools_runtime.tasks import Action, Info, Task
from tools_runtime.toolspec import ToolSpec
from tools_runtime.workflow_io import workflow_from_dict

ENVS = Path(__file__).resolve().parents[2] / "examples" / "environments"


def spec(name="shop_return"):
    return json.loads((ENVS / f"{name}.json").read_text())


def text_of(data):
    return "\n".join(data["steps"])


@pytest.mark.parametrize("name", sorted(p.stem for p in ENVS.glob("*.json")))
def test_bundled_environments_have_no_errors(name):
    data = spec(name)
    assert errors(validate_environment(data, text_of(data))) == []
    assert errors(validate_environment(workflow_from_dict(data))) == []


def _set(data, path, value):
    cur = data
    for part in path[:-1]:
        cur = cur[part]
    cur[path[-1]] = value


BREAKS = [
    ("effect for a missing tool", ["effects", "teleport"], {"kind": "read", "entity": "order"},
     "effects.teleport", "unknown_tool"),
    ("unknown entity", ["effects", "get_order", "entity"], "parcel", "effects.get_order.entity", "unknown_entity"),
    ("key not a param", ["effects", "get_order", "key"], "order_number", "effects.get_order.key", "unknown_param"),
    ("match not a field", ["effects", "get_order", "match"], "number", "effects.get_order.match", "unknown_field"),
    ("returns not a field", ["effects", "get_order", "returns"], ["colour"], "effects.get_order.returns[0]",
     "unknown_field"),
    ("write to unknown field", ["effects", "set_refund_method", "writes"], [{"field": "refund", "param": "method"}],
     "effects.set_refund_method.writes[0].field", "unknown_field"),
    ("write from unknown param", ["effects", "set_refund_method", "writes"], [{"field": "refund_method", "param": "how"}],
     "effects.set_refund_method.writes[0].param", "unknown_param"),
    ("unsafe formula", ["effects", "calculate_refund", "formula"], "price.__class__",
     "effects.calculate_refund.formula", "bad_formula"),
    ("formula reads an unknown name", ["effects", "calculate_refund", "formula"], "price * discount",
     "effects.calculate_refund.formula", "bad_formula"),
    ("compute without formula", ["effects", "calculate_refund", "formula"], None,
     "effects.calculate_refund.formula", "missing_formula"),
    ("precondition refused", ["effects", "request_return", "preconditions", 0, "expr"], "__import__('os')",
     "effects.request_return.preconditions[0].expr", "bad_formula"),
    ("precondition names unknown rule", ["effects", "request_return", "preconditions", 0, "rule"], "nope",
     "effects.request_return.preconditions[0].rule", "unknown_rule"),
    ("entity key not a field", ["entities", 1, "key"], "number", "entities[1].key", "unknown_field"),
    ("bad field schema", ["entities", 1, "fields", "price"], {"type": "money"}, "entities[1].fields.price",
     "bad_schema"),
    ("state value breaks schema", ["initial_state", 1, "values", "status"], "lost", "initial_state[1].values.status",
     "invalid_state"),
    ("state of unknown entity", ["initial_state", 1, "entity"], "parcel", "initial_state[1].entity", "invalid_state"),
    ("rule names unknown tool", ["policy", 0, "tools"], ["fly"], "policy[0].tools", "unknown_tool"),
    ("cyclic graph", ["execution_graph"], "(sign_in)->(get_order)->(sign_in)", "execution_graph", "graph_cycle"),
    ("graph names unknown tool", ["execution_graph"], "(sign_in)->(get_orderz)", "execution_graph",
     "graph_unknown_node"),
]


@pytest.mark.parametrize("what, path, value, where, code", BREAKS, ids=[b[0] for b in BREAKS])
def test_each_break_is_reported_at_its_path(what, path, value, where, code):
    data = spec()
    _set(data, path, value)
    issues = errors(validate_environment(data, text_of(data)))
    assert any(i.path == where and i.code == code for i in issues), [str(i) for i in issues]


def test_schema_error_and_duplicate_tools():
    data = spec()
    data["tools"].append(copy.deepcopy(data["tools"][0]))
    assert any(i.code == "schema" and "duplicate" in i.reason for i in validate_environment(data))
    data = spec()
    data["effects"]["get_order"]["kind"] = "teleport"
    assert validate_environment(data)[0].code == "schema"


@pytest.mark.parametrize("name, props", [
    ("click_save_button", {}), ("press_enter", {}), ("open_file_menu", {}), ("tap_ok", {}),
    ("select_wireless_tab", {}), ("type_password", {"text": {"type": "string"}}), ("log", {}),
])
def test_ui_gestures_are_reported_with_a_reason(name, props):
    tool = ToolSpec(name=name, parameters={"type": "object", "properties": props})
    assert ui_gesture_reason(tool) is not None
    data = spec()
    data["tools"].append({"name": name, "inputSchema": {"type": "object", "properties": props}})
    issues = validate_environment(data)
    assert any(i.path == f"tools.{name}" and i.code == "ui_gesture" and "fold" in i.reason for i in issues)


@pytest.mark.parametrize("name", ["set_wifi_password", "request_return", "restart_router", "get_order"])
def test_capabilities_are_not_gestures(name):
    tool = ToolSpec(name=name, parameters={"type": "object", "properties": {"x": {"type": "string"}}})
    assert ui_gesture_reason(tool) is None


def test_span_is_case_and_space_insensitive():
    text = "Open the   Wireless\nSettings page and pick WPA2."
    start, end = find_span("wireless settings", text)
    assert text[start:end] == "Wireless\nSettings"
    assert find_span("WPA3", text) is None


def test_text_provenance_gets_its_span_or_is_downgraded():
    data = spec()
    text = text_of(data)
    data["initial_state"][1]["sources"]["price"] = {"kind": "text", "quote": "$49.90"}
    wf, issues = ground_sources(workflow_from_dict(data), text)
    order = wf.initial_state[1]
    span = order.sources["order_id"].span
    assert span is not None and text[span[0]:span[1]] == "ORD-4821"
    assert order.sources["price"].kind == "invented"
    assert [i.path for i in issues] == ["initial_state[1].sources.price"] and issues[0].severity == "warning"
    assert any(i.path == "initial_state[1].sources.price" for i in validate_environment(data, text))


def test_grounding_counts_state_known_info_and_gold_arguments():
    data = spec()
    text = text_of(data)
    wf = workflow_from_dict(data)
    base = grounding(wf, text=text)
    assert 0 < base.share < 1 and base.parts["state"][1] == base.values
    task = Task(id="t", env_id=wf.id, instruction="Return my lamp.",
                known_info=[Info(key="order_id", value="ORD-4821", source={"kind": "text", "quote": "ORD-4821"}),
                            Info(key="reason", value="damaged", source={"kind": "text"}),
                            Info(key="nickname", value="Lampy", source={"kind": "text"})],
                gold_actions=[Action(tool="request_return", arguments={"order_id": "ORD-4821", "reason": "damaged"}),
                              Action(tool="email_return_label", arguments={"order_id": "ORD-4821",
                                                                           "email": "zed@example.org"})])
    g = grounding(wf, [task], text)
    assert g.parts["known_info"] == [2, 3]  # "Lampy" is not in the text
    assert g.parts["gold_arguments"] == [3, 4]  # the invented email is not
    fixed, issues = ground_task(task, text)
    assert fixed.known_info[2].source.kind == "invented" and issues[0].path == "known_info[2].source"


def _tasks(name):
    path = ENVS / f"{name}.tasks.jsonl"
    return [Task.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(p.stem for p in ENVS.glob("*.json")))
def test_bundled_tasks_have_no_task_errors(name):
    data = spec(name)
    wf = workflow_from_dict(data)
    for task in _tasks(name):
        assert errors(task_issues(wf, task, text_of(data))) == [], task.id


def test_task_issues_find_what_the_assistant_cannot_know():
    data = spec()
    wf = workflow_from_dict(data)
    task = _tasks("shop_return")[0]
    email = next(i for i, a in enumerate(task.gold_actions) if a.tool == "email_return_label")
    hidden = task.model_copy(update={"known_info": [i for i in task.known_info if i.key != "email"],
                                     "communicate_info": ["a refund of 99.99"], "cites": [0, 42]})
    codes = {(i.code, i.path) for i in task_issues(wf, hidden)}
    assert ("unreachable_argument", f"gold_actions[{email}].arguments.email") in codes
    assert ("unsupported_communicate", "communicate_info[0]") in codes
    assert ("bad_cite", "cites[1]") in codes
    # told in the instruction instead: reachable
    told = hidden.model_copy(update={"instruction": hidden.instruction + " Send it to maria.k@example.com.",
                                     "communicate_info": [], "cites": []})
    assert errors(task_issues(wf, told)) == []


def test_task_issues_report_a_failing_gold_run():
    wf = workflow_from_dict(spec())
    task = _tasks("shop_return")[0]
    broken = task.model_copy(update={"gold_actions": task.gold_actions[1:]})  # not signed in
    assert [i.code for i in task_issues(wf, broken)] == ["gold_failed"]
