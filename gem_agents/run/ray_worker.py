"""What runs inside a Ray worker, importable without Ray: the worker class and the plain-JSON transport.

`DocWorker` builds its own run context from the config and the run directory (`open_run`): its own
model clients, its own connection to the model call cache, no store (the driver is the one
writer) and no per-document checkpoints (a document is the unit of resume). A role whose
`base_url` holds `{node_ip}` talks to the endpoint on the worker's own node.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from typing import Any

from gem_agents.config import ROLE_NAMES, RunConfig
from gem_agents.run.engine import failed_outcome
from gem_agents.run.store import DocOutcome
from tools_runtime.records import Document, Relevance, Trajectory, Workflow
from tools_runtime.tasks import Task, TaskRejection

Event = dict[str, Any]
NODE_IP = "{node_ip}"


# ---------------------------------------------------------------------------------------------------------
# plain-JSON transport (what crosses process boundaries never depends on pickled classes)


def outcome_to_dict(outcome: DocOutcome) -> dict[str, Any]:
    """A DocOutcome as plain JSON-able data."""
    return {
        "doc_id": outcome.doc_id, "status": outcome.status, "stage": outcome.stage, "source": outcome.source,
        "text": outcome.text,
        "relevance": outcome.relevance.model_dump(mode="json") if outcome.relevance else None,
        "workflow": outcome.workflow.model_dump(mode="json") if outcome.workflow else None,
        "reasons": list(outcome.reasons), "error": outcome.error, "seconds": outcome.seconds,
        "trajectories": [[kind, t.model_dump(mode="json")] for kind, t in outcome.trajectories],
        "tasks": [t.model_dump(mode="json") for t in outcome.tasks],
        "task_rejections": [r.model_dump(mode="json") for r in outcome.task_rejections],
    }


def outcome_from_dict(data: dict[str, Any]) -> DocOutcome:
    """The inverse of `outcome_to_dict`."""
    return DocOutcome(
        doc_id=data["doc_id"], status=data["status"], stage=data["stage"], source=data.get("source", ""),
        text=data.get("text", ""),
        relevance=Relevance.model_validate(data["relevance"]) if data.get("relevance") else None,
        workflow=Workflow.model_validate(data["workflow"]) if data.get("workflow") else None,
        reasons=list(data.get("reasons", [])), error=data.get("error"), seconds=float(data.get("seconds", 0.0)),
        trajectories=[(kind, Trajectory.model_validate(t)) for kind, t in data.get("trajectories", [])],
        tasks=[Task.model_validate(t) for t in data.get("tasks", [])],
        task_rejections=[TaskRejection.model_validate(r) for r in data.get("task_rejections", [])],
    )


def localize_config(cfg: RunConfig, node_ip: str) -> RunConfig:
    """The config with `{node_ip}` in each role's base_url replaced by this node's address."""
    update = {}
    for name in ROLE_NAMES:
        role = getattr(cfg.roles, name)
        if role.base_url and NODE_IP in role.base_url:
            update[name] = role.model_copy(update={"base_url": role.base_url.replace(NODE_IP, node_ip)})
    if not update:
        return cfg
    return cfg.model_copy(update={"roles": cfg.roles.model_copy(update=update)})


# ---------------------------------------------------------------------------------------------------------
# the worker (made a Ray actor by the engine; a plain class here so this module imports without ray)


class DocWorker:
    """One worker: its own run context (clients, cache, roles, pipeline graph), built on first use."""

    def __init__(self, config: dict[str, Any], run_dir: str, cache_path: str | None, name: str):
        self.config = RunConfig.model_validate(config)
        self.run_dir = run_dir
        self.cache_path = cache_path
        self.name = name
        self.node = ""
        self._ctx: Any = None
        self._stack: AsyncExitStack | None = None
        self._lock: asyncio.Lock | None = None

    async def _context(self) -> Any:
        if self._ctx is not None:
            return self._ctx
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._ctx is None:
                from gem_agents.run.context import open_run

                self.node = _node_ip()
                cfg = localize_config(self.config, self.node)
                stack = AsyncExitStack()
                # No store (the driver is the one writer) and no checkpoints (a document is the unit of resume).
                self._ctx = await stack.enter_async_context(
                    open_run(cfg, self.run_dir, cache_path=self.cache_path, checkpoint=False, store=False))
                self._stack = stack
        return self._ctx

    async def process(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Run one document; returns its outcome, its stage events and this worker's usage so far."""
        from gem_agents.run.document import process_document

        document = Document.model_validate(doc)
        events: list[Event] = []

        def on_stage(doc_id: str, stage: str, update: dict[str, Any]) -> None:
            events.append({"event": "stage", "doc": doc_id, "stage": stage, "route": update.get("route"),
                           "status": update.get("status"),
                           "seconds": (update.get("timings") or {}).get(stage)})

        t0 = time.perf_counter()
        timeout = self.config.limits.doc_timeout_s
        ctx = None
        try:
            ctx = await self._context()
            work = process_document(document, ctx, on_stage)
            outcome = await (asyncio.wait_for(work, timeout) if timeout else work)
        except TimeoutError:
            outcome = failed_outcome(document, f"timed out after {timeout:g} s", time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 — the document fails, the worker goes on
            outcome = failed_outcome(document, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
        usage = ctx.hub.meter.as_dict() if ctx is not None else {}
        return {"outcome": outcome_to_dict(outcome), "events": events, "usage": usage, "worker": self.name,
                "node": self.node, "roles": ctx.roles.name if ctx is not None else ""}

    async def close(self) -> None:
        """Close the worker's cache and clients."""
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
            self._ctx = None


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # noqa: BLE001 — outside Ray (tests call DocWorker directly)
        return "127.0.0.1"
