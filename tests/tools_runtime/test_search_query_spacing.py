"""A search box ignores spaces around the query (both backends).

Measured with the embedded 0.5B on the example environments: it searched `" Harbour View"` (a leading
space) and the room called Harbour View was not found.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import example
from tools_runtime.executor import ToolEnvironment
from tools_runtime.scenario import build_scenario
from tools_runtime.workflow_io import load_workflow

REPO = Path(__file__).resolve().parents[2]


def _names(result: dict) -> list[str]:
    return [r.get("name") for r in result["results"]]


def test_environment_search_ignores_surrounding_spaces():
    wf = load_workflow(REPO / "examples" / "environments" / "calendar_booking.json")
    env = ToolEnvironment(wf, build_scenario(wf, 0).initial_state)
    for query in ("Harbour View", " Harbour View", "harbour view  "):
        rec = env.call("search_rooms", {"query": query})
        assert rec.ok and _names(rec.result) == ["Harbour View"], (query, rec.result)


def test_workflow_search_ignores_surrounding_spaces():
    sc = build_scenario(example("calendar_booking"), 0)
    env = ToolEnvironment(sc.workflow, sc.initial_state)
    query = sc.plan[0].arguments["query"]  # the plan's own search, by a room's name
    plain = env.call("search_rooms", {"query": query})
    spaced = env.call("search_rooms", {"query": f"  {query} "})
    assert plain.ok and plain.result["results"], plain.result
    assert spaced.ok and spaced.result == plain.result
