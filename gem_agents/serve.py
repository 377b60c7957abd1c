"""One environment's tools as an MCP server over the stateful backend (`gem serve`).

Any MCP client or agent framework can then be evaluated or trained against a generated environment:
`tools/list` gives the environment's tools plus two control tools, `reset` (a fresh backend for a
seed) and `verify` (the verdict of everything called since the last reset, as the outcome verifier
judges it: components, passed, blame). Every call runs on the backend exactly as in a simulation;
nothing the client sends is ever evaluated as code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gem_agents.io import iter_json_lines
from tools_runtime.executor import ToolEnvironment, tool_message_content
from tools_runtime.records import Scenario, Workflow
from tools_runtime.tasks import Task

CONTROL = {
    "reset": {"description": "Start over on a fresh backend (the seed picks the scenario's filler values).",
              "input_schema": {"type": "object", "properties": {"seed": {"type": "integer", "minimum": 0}}}},
    "verify": {"description": "Judge every call since the last reset against the task: components, passed, blame. "
                              "`final_message` is what the assistant finally told the user.",
               "input_schema": {"type": "object", "properties": {"final_message": {"type": "string"}}}},
}


def load_target(path: Path, task_id: str | None = None, seed: int = 0) -> tuple[Workflow, Task | None]:
    """The environment (a workflow or environment JSON) and, from a tasks JSONL, the task to play."""
    from tools_runtime.workflow_io import load_workflow

    if path.name.endswith(".tasks.jsonl"):
        wf = load_workflow(path.with_name(path.name.removesuffix(".tasks.jsonl") + ".json"))
        tasks = []
        for row in iter_json_lines(path, "tasks JSONL"):
            if row.error:
                raise ValueError(f"{path}:{row.line}: {row.error}")
            tasks.append(Task.model_validate(row.value))
        if not tasks:
            raise ValueError(f"{path}: no task")
        task = next((t for t in tasks if t.id == task_id), None) if task_id else tasks[0]
        if task is None:
            raise ValueError(f"{path}: no task {task_id!r} (have {', '.join(t.id for t in tasks)})")
        return wf, task
    return load_workflow(path), None


def make_scenario(workflow: Workflow, task: Task | None, seed: int) -> Scenario:
    """The scenario a session plays: the task's, or the workflow's own for `seed`."""
    from tools_runtime.scenario import build_scenario
    from tools_runtime.tasks import scenario_from_task

    return scenario_from_task(workflow, task, seed) if task is not None else build_scenario(workflow, seed)


@dataclass
class EnvSession:
    """The backend one client talks to, and the calls it made since the last reset."""

    workflow: Workflow
    task: Task | None = None
    seed: int = 0
    scenario: Scenario | None = None
    env: ToolEnvironment | None = None
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        """A fresh backend from the scenario's initial state."""
        import copy

        self.seed = self.seed if seed is None else seed
        self.scenario = make_scenario(self.workflow, self.task, self.seed)
        self.env = ToolEnvironment(self.scenario.workflow, copy.deepcopy(self.scenario.initial_state))
        self.calls = []
        return {"status": "reset", "seed": self.seed, "scenario": self.scenario.id,
                "instruction": self.scenario.goals[0].description if self.scenario.goals else ""}

    def call(self, name: str, arguments: dict[str, Any]) -> tuple[bool, str]:
        """Run one tool call: (ok, the tool message text)."""
        if self.env is None:
            self.reset()
        assert self.env is not None
        rec = self.env.call(name, arguments, f"mcp_{len(self.calls) + 1}")
        content = tool_message_content(rec)
        self.calls.append((name, arguments, content))
        return rec.ok, content

    def transcript(self, final_message: str = "") -> list[dict[str, Any]]:
        """The session as an OpenAI-format dialogue (the instruction, every call, the final message)."""
        assert self.scenario is not None
        msgs: list[dict[str, Any]] = [{"role": "user", "content": self.scenario.goals[0].description
                                       if self.scenario.goals else "Please help me."}]
        for n, (name, args, content) in enumerate(self.calls, 1):
            cid = f"mcp_{n}"
            msgs.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]})
            msgs.append({"role": "tool", "tool_call_id": cid, "content": content})
        msgs.append({"role": "assistant", "content": final_message or "Done."})
        return msgs

    def verify(self, final_message: str = "") -> dict[str, Any]:
        """The outcome verdict of the session so far."""
        from tools_runtime.verification.verify import verify

        if self.scenario is None:
            self.reset()
        assert self.scenario is not None
        verdict = verify(self.transcript(final_message), self.scenario)[0]
        return {"passed": verdict.passed, "blame": verdict.blame, "blame_reason": verdict.blame_reason,
                "components": {k: {"passed": c.passed, "pending": c.pending, "reason": c.reason}
                               for k, c in verdict.components.items()},
                "failures": [f.model_dump() for f in verdict.failures]}


def build_server(session: EnvSession) -> Any:
    """An MCP low-level Server whose tools are the environment's tools plus `reset` and `verify`."""
    import mcp_types as types
    from mcp.server import Server

    def tool_list() -> list[Any]:
        tools = [types.Tool(name=t.name, description=t.description or t.name, input_schema=t.parameters)
                 for t in session.workflow.tools]
        taken = {t.name for t in session.workflow.tools}
        tools += [types.Tool(name=name, description=spec["description"], input_schema=spec["input_schema"])
                  for name, spec in CONTROL.items() if name not in taken]
        return tools

    async def on_list_tools(ctx: Any, params: Any) -> Any:
        return types.ListToolsResult(tools=tool_list())

    async def on_call_tool(ctx: Any, params: Any) -> Any:
        name = params.name
        args = dict(params.arguments or {})
        taken = {t.name for t in session.workflow.tools}
        if name == "reset" and name not in taken:
            seed = args.get("seed")
            payload = session.reset(int(seed) if isinstance(seed, int) else None)
            ok, text = True, json.dumps(payload)
        elif name == "verify" and name not in taken:
            payload = session.verify(str(args.get("final_message") or ""))
            ok, text = True, json.dumps(payload)
        else:
            ok, text = session.call(name, args)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=not ok)

    return Server("gem-env", version="1", instructions=f"Environment {session.workflow.id}: "
                  f"{session.workflow.title}. Call `reset` to start over and `verify` to be judged.",
                  on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_stdio(session: EnvSession) -> None:
    """Serve over stdin/stdout until the client closes."""
    from mcp.server.stdio import stdio_server

    server = build_server(session)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def serve_http(session: EnvSession, host: str, port: int) -> None:
    """Serve streamable HTTP at http://host:port/mcp."""
    import uvicorn

    app = build_server(session).streamable_http_app(host=host)
    uvicorn.run(app, host=host, port=port, log_level="warning")
