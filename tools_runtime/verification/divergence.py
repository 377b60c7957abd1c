"""Where a recorded transcript first departs from the simulator: the state, the execution graph or the dialogue.

`gem replay` steps a trajectory (ours or a third-party OpenAI-format one) against a fresh backend.
Each tool call is re-executed (`tools_runtime/verification/replay.py`) and checked, in message order, against:

dialogue   the dialogue graph's shape (user → assistant → tools → assistant …; every call answered)
schema     the call names a tool of the workflow with arguments its schema accepts
graph      the execution graph: every predecessor of the called node has already succeeded
state      the recorded tool message equals what the backend returns at that point

The first failure in message order is the divergence; `None` means the transcript is grounded
step by step (its end state may still differ from the goal, which `verify` reports).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools_runtime.exec_graph import ExecGraph, parse_graph
from tools_runtime.records import ExecRecord, Failure, Scenario
from tools_runtime.verification.replay import replay_dialogue
from tools_runtime.verification.verify import FAILURE_CODES, check_dialogue

# At the same message, report the structural problem before the call's own problems.
_RANK = {"dialogue": 0, "schema": 1, "order": 2, "execution": 3}
# Failures check_dialogue reports only once the whole transcript is seen: not a step divergence.
_END_ONLY = {"no_final_assistant_message"}


@dataclass
class CallStep:
    """One replayed call: the backend's record, what the transcript said, where the graph stood."""

    message_index: int
    record: ExecRecord
    recorded: Any
    answered_at: int | None
    matches: bool
    graph_done: list[str] = field(default_factory=list)
    graph_allowed: list[str] = field(default_factory=list)


@dataclass
class Divergence:
    """The first place the transcript departs from the simulator."""

    index: int
    code: str
    check: str
    reason: str
    call: int | None = None  # position in `calls` when a tool call diverged


@dataclass
class StepReplay:
    """Every replayed call, and the first divergence (None when there is none)."""

    calls: list[CallStep]
    divergence: Divergence | None


def allowed_next(graph: ExecGraph, done: set[str]) -> list[str]:
    """Graph nodes not yet done whose predecessors have all succeeded."""
    g = graph.graph
    return sorted(n for n in g.nodes if n not in done and all(p in done for p in g.predecessors(n) if p != n))


def step_replay(messages: list[dict[str, Any]], scenario: Scenario, *, check_results: bool = True,
                proposals: dict[str, Any] | None = None) -> StepReplay:
    """Replay `messages` call by call on a fresh backend and find the first divergence."""
    candidates: list[tuple[int, int, Divergence]] = []
    for f in check_dialogue(messages):
        if f.code not in _END_ONLY:
            candidates.append(_candidate(f, None))
    try:
        graph: ExecGraph | None = parse_graph(scenario.workflow.execution_graph)
    except ValueError:
        graph = None
    replay = replay_dialogue(messages, scenario, check_results=check_results, proposals=proposals)
    mismatches = {f.index: f for f in replay.failures}
    done: set[str] = set()
    steps: list[CallStep] = []
    for n, rc in enumerate(replay.calls):
        rec = rc.record
        allowed = allowed_next(graph, done) if graph is not None else []
        steps.append(CallStep(message_index=rc.message_index, record=rec, recorded=rc.recorded,
                              answered_at=rc.answered_at, matches=rc.matches, graph_done=sorted(done),
                              graph_allowed=allowed))
        code = (rec.error or {}).get("code")
        if code in ("unknown_tool", "invalid_arguments"):
            candidates.append(_candidate(Failure(code=code, index=rc.message_index,
                                                 reason=f"{rec.name}: {(rec.error or {}).get('message', '')}"), n))
        elif graph is not None and rec.name in graph.graph and rec.name not in done:
            missing = sorted(p for p in graph.graph.predecessors(rec.name) if p not in done and p != rec.name)
            if missing:
                candidates.append(_candidate(Failure(
                    code="order_violation", index=rc.message_index,
                    reason=f"{rec.name} is called before {', '.join(missing)} succeeded "
                           f"(the graph allows {', '.join(allowed) or 'nothing'} here)"), n))
        if not rc.matches and rc.answered_at in mismatches:
            candidates.append(_candidate(mismatches[rc.answered_at], n))
        if rec.ok:
            done.add(rec.name)
    if not candidates:
        return StepReplay(calls=steps, divergence=None)
    first = min(candidates, key=lambda c: (c[0], c[1]))[2]
    return StepReplay(calls=steps, divergence=first)


def _candidate(f: Failure, call: int | None) -> tuple[int, int, Divergence]:
    check = FAILURE_CODES.get(f.code, "dialogue")
    index = f.index if f.index is not None else 1 << 30
    return index, _RANK.get(check, 9), Divergence(index=index, code=f.code, check=check, reason=f.reason, call=call)
