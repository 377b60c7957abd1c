"""Our tasks as an inspect_ai Task (optional extra `inspect`): dataset, backend-executed tools, our verifier.

    import inspect_ai
    from gem_agents.eval.inspect_task import gem_task
    inspect_ai.eval(gem_task("examples/environments/print_booklet.tasks.jsonl", epochs=4), model="openai/…")  # safe: inspect's runner, not Python eval

Each sample is one of our tasks (the same sources as `gem eval`). Its tools are the environment's
tools, executed on a fresh backend per sample and epoch; the scorer replays the transcript and gives
the outcome verdict (1 when it passes; components and blame in the score's metadata). Epochs are
reduced with inspect's `pass_k`, the same estimator `gem eval` reports. The user is the task's
instruction (single turn: inspect drives the assistant alone).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from gem_agents.eval.runner import EvalItem, load_items
from tools_runtime.executor import ToolEnvironment, tool_message_content


def _openai_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """inspect's chat messages in the OpenAI format our verifier reads."""
    out: list[dict[str, Any]] = []
    for m in messages:
        text = m.text if hasattr(m, "text") else str(m.content)
        if m.role == "assistant":
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if m.tool_calls:
                msg["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.function, "arguments": json.dumps(c.arguments)}}
                                     for c in m.tool_calls]
            out.append(msg)
        elif m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": text})
        else:
            out.append({"role": m.role, "content": text})
    return out


def _tools_for(item: EvalItem, env: ToolEnvironment) -> list[Any]:
    """inspect tools that run the environment's tools on `env` (their results are our tool messages)."""
    from inspect_ai.tool import ToolDef, ToolParams
    from inspect_ai.util import JSONSchema

    assert item.scenario is not None
    tools = []
    for spec in item.scenario.workflow.tools:
        def make(name: str) -> Any:
            async def execute(**kwargs: Any) -> str:
                return tool_message_content(env.call(name, kwargs))
            return execute

        props = {}
        for k, v in spec.properties.items():
            schema = JSONSchema.model_validate(v if isinstance(v, dict) else {})
            # inspect requires a description for every parameter; many tool files have none.
            schema.description = schema.description or k.replace("_", " ")
            props[k] = schema
        params = ToolParams(properties=props, required=list(spec.required))
        tools.append(ToolDef(make(spec.name), name=spec.name, description=spec.description or spec.name,
                             parameters=params).as_tool())
    return tools


def gem_task(tasks: str | Path, *, env: str | Path | None = None, epochs: int = 1, limit: int | None = None) -> Any:
    """An inspect_ai Task over `tasks` (run directory, tasks JSONL, τ² tasks.json or BFCL data)."""
    from inspect_ai import Epochs, Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.scorer import Score, Target, pass_k, scorer
    from inspect_ai.scorer import accuracy as accuracy_metric
    from inspect_ai.solver import Generate, TaskState, solver

    items = [i for i in load_items(Path(tasks), env=Path(env) if env else None, limit=limit)
             if i.scenario is not None and not i.skip]
    by_id = {i.task_id: i for i in items}
    dataset = MemoryDataset([Sample(id=i.task_id, input=i.scenario.goals[0].description if i.scenario.goals
                                    else i.task_id) for i in items if i.scenario is not None])

    @solver
    def backend_tools() -> Any:
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            item = by_id[str(state.sample_id)]
            assert item.scenario is not None
            env_ = ToolEnvironment(item.scenario.workflow, copy.deepcopy(item.scenario.initial_state),
                                   item.scenario.planned_errors)
            state.tools = _tools_for(item, env_)
            return await generate(state, tool_calls="loop")
        return solve

    @scorer(metrics=[accuracy_metric()])
    def outcome() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            from tools_runtime.verification.verify import verify

            item = by_id[str(state.sample_id)]
            assert item.scenario is not None
            verdict = verify(_openai_messages(state.messages), item.scenario)[0]
            return Score(value=1.0 if verdict.passed else 0.0,
                         explanation=verdict.blame_reason or "passed",
                         metadata={"blame": verdict.blame,
                                   "components": {k: c.passed for k, c in verdict.components.items()},
                                   "failures": [f.code for f in verdict.failures]})
        return score

    return Task(dataset=dataset, solver=backend_tools(), scorer=outcome(),
                epochs=Epochs(epochs, [pass_k(epochs)]) if epochs > 1 else 1)
