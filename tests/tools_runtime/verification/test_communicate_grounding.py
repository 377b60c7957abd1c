"""`communicate`: a value the tools give must come from the dialogue's tools, not from a lucky guess.

Measured with the embedded 0.5B on the example environments (docs/verification.md): asked how many sheets a
booklet of Club-Rules.pdf needs (3, from calculate_sheets), it called no tool and answered with invented
page numbers "8,1,2,7,6,3,4,5" and "26 sheets"; the `3` in its list passed `communicate`.
"""

from __future__ import annotations

from pathlib import Path

from gem_agents.eval.runner import load_items
from tools_runtime.verification.perturbations import reground
from tools_runtime.verification.verify import verify

REPO = Path(__file__).resolve().parents[3]
ASK = "Hi! How many sheets of paper do I need to print Club-Rules.pdf as a booklet?"


def _sheets_task():
    items = load_items(REPO / "examples" / "environments" / "print_booklet.tasks.jsonl")
    item = next(i for i in items if i.task_id == "sheets-for-rules")
    assert item.scenario is not None and item.scenario.task is not None
    assert item.scenario.task.communicate_info == ["3"]
    return item.scenario


def _call(cid: str, name: str, args: str) -> dict:
    return {"role": "assistant", "content": "", "tool_calls": [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}]}


def test_a_guess_that_contains_the_value_is_not_telling_it():
    sc = _sheets_task()
    guess = [{"role": "user", "content": ASK},
             {"role": "assistant", "content": "The page count is 8,1,2,7,6,3,4,5, so (8 + 1 + 2 + 7 + 6 + 3 + 4 + 5) "
                                              "/ 8 ≈ 25.9: you need 26 sheets."}]
    v = verify(guess, sc)[0]
    assert not v.passed and not v.components["communicate"].passed
    assert "without a tool result" in v.components["communicate"].reason
    assert v.blame == "assistant"


def test_the_value_told_after_the_tools_gave_it_passes():
    sc = _sheets_task()
    read = reground([{"role": "user", "content": ASK},
                     _call("c1", "get_document", '{"file_name": "Club-Rules.pdf"}'),
                     {"role": "tool", "tool_call_id": "c1", "content": ""},
                     _call("c2", "calculate_sheets", '{"page_count": 12}'),
                     {"role": "tool", "tool_call_id": "c2", "content": ""},
                     {"role": "assistant", "content": "Club-Rules.pdf has 12 pages: a booklet needs 3 sheets."}], sc)
    v = verify(read, sc)[0]
    assert v.passed, v.failures
    # Said before the tool gave it (a guess confirmed later) is still a guess.
    early = [read[0], {"role": "assistant", "content": "Probably 3 sheets; let me check."},
             {"role": "user", "content": "Please check."}, *read[1:-1],
             {"role": "assistant", "content": "Done, it is as I said."}]
    assert not verify(early, sc)[0].components["communicate"].passed
