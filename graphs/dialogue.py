"""The dialogue graph (docs/design.md §5.1): user ⇄ assistant ⇄ tools, then verify.

    START → user ─┬→ assistant ─┬→ tools → assistant …
                  │             ├→ user            (a text reply)
                  │             └→ verify          (reply to the user's closing message)
                  └→ verify → END                  (user done, or the turn budget is spent)

State holds one transcript in OpenAI format, the backend snapshot and the executed steps, so a
checkpoint is everything needed to inspect, edit, rewind and resume a dialogue. Per-rollout
dependencies (scenario, policies, budgets) travel in the run context, which is not checkpointed,
so one compiled graph serves every rollout.

Bulk runs need no checkpoints, breakpoints or streaming, so `run_plain` walks the very same nodes,
routes and reducers with a plain loop (LangGraph's per-step machinery was ~20 % of the engine's CPU,
docs/throughput.md); `gem debug` and checkpointed runs keep the compiled graph. Both are pinned to
produce identical trajectories (tests/graphs/test_dialogue_paths.py).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from graphs.roles import Roles, RoleView, assistant_view, is_stop, strip_stop, user_view
from tools_runtime.binding import bind_tools
from tools_runtime.executor import ToolEnvironment, tool_message_content
from tools_runtime.records import ExecRecord, Scenario
from tools_runtime.stats import compute_stats
from tools_runtime.verification.replay import call_name_args, tool_calls_of
from tools_runtime.verification.verify import proposals_from_steps, verify


class DialogueState(TypedDict, total=False):
    """The checkpointed state of one dialogue."""

    messages: Annotated[list[dict[str, Any]], operator.add]
    backend: dict[str, Any]
    steps: Annotated[list[dict[str, Any]], operator.add]
    user_turns: int
    rounds: int
    closing: bool
    ended_by: str
    verdict: dict[str, Any] | None
    stats: dict[str, Any] | None


@dataclass
class SimContext:
    """Per-rollout dependencies, not checkpointed."""

    scenario: Scenario
    roles: Roles
    max_user_turns: int = 24
    max_tool_rounds: int = 16
    # (the backend snapshot the last tools step returned, the environment that produced it): the next
    # tools step continues on that environment instead of rebuilding it from a copy of the snapshot.
    last_env: tuple[dict[str, Any], ToolEnvironment] | None = field(default=None, repr=False, compare=False)


def initial_state(scenario: Scenario, system: dict[str, Any] | None = None) -> DialogueState:
    """The state a dialogue starts from: the system message if any, the scenario's seeded backend."""
    return {"messages": [system] if system else [], "backend": scenario.initial_state, "steps": [], "user_turns": 0, "rounds": 0,
            "closing": False, "ended_by": "", "verdict": None, "stats": None}


def _occurrences(messages: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in messages:
        for call in tool_calls_of(m):
            name = call_name_args(call)[0]
            counts[name] = counts.get(name, 0) + 1
    return counts


async def user_node(state: DialogueState, runtime: Runtime[SimContext]) -> dict[str, Any]:
    """The user simulator speaks (or ends the conversation)."""
    ctx = runtime.context
    turns = state.get("user_turns", 0)
    if turns >= ctx.max_user_turns:
        return {"ended_by": "turn_budget"}
    view = RoleView(role="user", messages=user_view(state["messages"]), scenario=ctx.scenario, turn=turns)
    msg = await ctx.roles.user(view)
    if is_stop(msg):
        closing = strip_stop(msg)
        if closing["content"] and turns > 0:
            return {"messages": [closing], "user_turns": turns + 1, "closing": True, "rounds": 0}
        return {"ended_by": "user"}
    return {"messages": [{"role": "user", "content": str(msg.get("content") or "")}],
            "user_turns": turns + 1, "rounds": 0}


async def assistant_node(state: DialogueState, runtime: Runtime[SimContext]) -> dict[str, Any]:
    """The assistant answers in text or calls tools."""
    ctx = runtime.context
    view = RoleView(role="assistant", messages=assistant_view(state["messages"]), scenario=ctx.scenario,
                    tools=[t.to_openai() for t in ctx.scenario.tools], turn=state.get("user_turns", 0))
    msg = await ctx.roles.assistant(view)
    out: dict[str, Any] = {"role": "assistant", "content": msg.get("content") or ""}
    if msg.get("tool_calls"):
        out["tool_calls"] = msg["tool_calls"]
    update: dict[str, Any] = {"messages": [out]}
    if out.get("tool_calls"):
        update["rounds"] = state.get("rounds", 0) + 1
        if update["rounds"] > ctx.max_tool_rounds:
            # Decided here, not in the route: routes read state only, so `update_state` (the
            # step debugger's edits) can re-route a checkpoint without a run context.
            update["ended_by"] = "tool_budget"
    return update


async def tools_node(state: DialogueState, runtime: Runtime[SimContext]) -> dict[str, Any]:
    """The mock tool environment executes every call of the last assistant message."""
    ctx = runtime.context
    scenario = ctx.scenario
    messages = state["messages"]
    last = messages[-1]
    env = _environment(ctx, state["backend"], _occurrences(messages[:-1]))
    bindings = bind_tools(scenario.tools) if ctx.roles.tool_env else {}
    tool_messages, steps = [], []
    for call in tool_calls_of(last):
        name, raw_args, call_id = call_name_args(call)
        binding = bindings.get(name)
        if ctx.roles.tool_env is not None and binding is not None and binding.op == "action":
            rec = await _proposed(ctx, env, name, raw_args, call_id, messages)
        else:
            rec = env.call(name, raw_args, call_id)
        tool_messages.append({"role": "tool", "tool_call_id": call_id, "name": name,
                              "content": tool_message_content(rec)})
        steps.append(rec.model_dump())
    snapshot = env.backend.snapshot()
    ctx.last_env = (snapshot, env)
    return {"messages": tool_messages, "steps": steps, "backend": snapshot}


def _environment(ctx: SimContext, backend: dict[str, Any], occurrences: dict[str, int]) -> ToolEnvironment:
    """The tool environment at `backend`: the previous step's own, when `backend` is the very snapshot it
    returned (its live state equals it); else a new one. A checkpoint reloaded, rewound or edited by the
    step debugger is a different object, so it always gets a fresh environment."""
    if ctx.last_env is not None and ctx.last_env[0] is backend:
        env = ctx.last_env[1]
        env.occurrences = dict(occurrences)
        return env
    return ToolEnvironment(ctx.scenario.workflow, backend, ctx.scenario.planned_errors, occurrences)


async def _proposed(ctx: SimContext, env: ToolEnvironment, name: str, raw_args: Any, call_id: str,
                    messages: list[dict[str, Any]]) -> ExecRecord:
    """A call no operation fits: the tool-env model proposes a result; the backend still records it."""
    rec = env.call(name, raw_args, call_id)
    if not rec.ok or ctx.roles.tool_env is None:
        return rec
    view = RoleView(role="tool_env", messages=assistant_view(messages), scenario=ctx.scenario,
                    request={"name": name, "arguments": rec.arguments, "default_result": rec.result})
    proposal = await ctx.roles.tool_env(view)
    result = proposal.get("result")
    if isinstance(result, dict) and "error" not in result:
        rec = rec.model_copy(update={"result": result, "proposed": True})
    return rec


async def verify_node(state: DialogueState, runtime: Runtime[SimContext]) -> dict[str, Any]:
    """Verify the finished dialogue against the scenario."""
    ctx = runtime.context
    messages = state["messages"]
    ended_by = state.get("ended_by") or ("tool_budget" if messages and tool_calls_of(messages[-1]) else "user")
    verdict, _, recovered = verify(messages, ctx.scenario, ended_by=ended_by,
                                   proposals=proposals_from_steps(state.get("steps", [])))
    stats = compute_stats(messages, recovered)
    return {"verdict": verdict.model_dump(), "stats": stats.model_dump(), "ended_by": ended_by}


def route_after_user(state: DialogueState) -> Literal["assistant", "verify"]:
    """A new user message goes to the assistant; an ended conversation goes to verification."""
    return "verify" if state.get("ended_by") else "assistant"


def route_after_assistant(state: DialogueState, _unused: Any = None) -> Literal["tools", "user", "verify"]:
    """Tool calls go to the tools (or to verify past the tool budget); a text reply goes back to the user."""
    last = state["messages"][-1]
    if tool_calls_of(last):
        return "verify" if state.get("ended_by") == "tool_budget" else "tools"
    return "verify" if state.get("closing") else "user"


NODES = {"user": user_node, "assistant": assistant_node, "tools": tools_node, "verify": verify_node}
# The state keys with an `operator.add` reducer in DialogueState; every other key is replaced.
APPENDED = frozenset({"messages", "steps"})


async def run_plain(state: DialogueState, ctx: SimContext, recursion_limit: int) -> DialogueState:
    """Run a dialogue from `state` to the end without LangGraph: the same nodes, routes and reducers.

    Raises GraphRecursionError at the same step count as the graph does (its limit counts the input step).
    """
    runtime: Runtime[SimContext] = Runtime(context=ctx)
    cur: dict[str, Any] = dict(state)
    node, steps = "user", 0
    while True:
        steps += 1
        if steps >= recursion_limit:  # the graph counts its input as a step too
            raise GraphRecursionError(f"Recursion limit of {recursion_limit} reached without hitting a stop condition.")
        update = await NODES[node](cur, runtime)  # type: ignore[arg-type]
        for key, value in update.items():
            # A new list per append, as the graph's reducer makes: nodes may keep the old one.
            cur[key] = cur.get(key, []) + value if key in APPENDED else value
        if node == "verify":
            return cur  # type: ignore[return-value]
        if node == "user":
            node = route_after_user(cur)  # type: ignore[arg-type]
        elif node == "assistant":
            node = route_after_assistant(cur)  # type: ignore[arg-type]
        else:  # tools → assistant, the graph's fixed edge
            node = "assistant"


def build_dialogue_graph(checkpointer: Any = None, interrupt_before: list[str] | None = None) -> Any:
    """Compile the dialogue graph (optionally with a checkpointer and static breakpoints)."""
    g = StateGraph(DialogueState, context_schema=SimContext)
    g.add_node("user", user_node)
    g.add_node("assistant", assistant_node)
    g.add_node("tools", tools_node)
    g.add_node("verify", verify_node)
    g.add_edge(START, "user")
    g.add_conditional_edges("user", route_after_user, ["assistant", "verify"])
    g.add_conditional_edges("assistant", route_after_assistant, ["tools", "user", "verify"])
    g.add_edge("tools", "assistant")
    g.add_edge("verify", END)
    return g.compile(checkpointer=checkpointer, interrupt_before=interrupt_before)
