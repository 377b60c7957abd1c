"""The `synthesizer` pipeline's own stages: one call per text (`oneshot`), then replay verification.

After the shared relevance filter, one call to the `synthesizer` role per text (its answer parsed
into tools + graph + state + dialogue), then the dialogue replay-verified on a backend at the
state the model wrote (`gem_agents.synthesizer.oneshot`). There is no refinement: the synthesizer
model was trained on refined trajectories and writes the hard one directly.

Each raw answer is kept in RUN_DIR/synthesizer/ before it is verified, so a run killed between the
two stages verifies the same answer on resume (and a person can read what the model wrote).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from gem_agents.config import RunConfig
from gem_agents.io import write_text
from gem_agents.registry import register
from gem_agents.stages.base import Stage, StageEnv
from gem_agents.synthesizer.oneshot import OneShotOutcome, synthesize, verify_text
from tools_runtime.records import Document, Relevance, Trajectory, Workflow

if TYPE_CHECKING:
    from gem_agents.models.client import ModelClient

ANSWERS_DIR = "synthesizer"
PENDING = "oneshot.pending"  # StageEnv.shared key: answers written by `oneshot`, not yet verified


def answer_path(run_dir: Path, doc_id: str) -> Path:
    """Where a document's raw one-shot answer is kept (a readable, collision-free file name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", doc_id)[:80]
    return run_dir / ANSWERS_DIR / f"{safe}-{hashlib.sha256(doc_id.encode()).hexdigest()[:10]}.txt"


def needs_model(cfg: RunConfig) -> list[str]:
    """The one-shot stage sends each text to roles.synthesizer: it must name a model."""
    if cfg.roles.synthesizer.provider != "scripted":
        return []
    return ["pipeline 'synthesizer' needs roles.synthesizer to name a model (provider openai, vllm or local): "
            "it sends each text to that model once"]


def _pending(env: StageEnv) -> dict[str, OneShotOutcome]:
    return env.shared.setdefault(PENDING, {})


def _run_dir(env: StageEnv) -> Path:
    if env.run_dir is None:
        raise RuntimeError("the one-shot stages keep each answer in the run directory: give StageEnv a run_dir")
    return env.run_dir


def _client(env: StageEnv) -> ModelClient:
    client = env.client("synthesizer")
    if client is None:
        raise RuntimeError(needs_model(env.config)[0])
    return client


async def run_oneshot(env: StageEnv, doc: Document, relevance: Relevance) -> tuple[Workflow | None, list[str]]:
    """One call to the synthesizer model; its raw answer is kept on disk before it is verified."""
    outcome = await synthesize(doc, _client(env))
    if outcome.raw:
        write_text(answer_path(_run_dir(env), doc.id), outcome.raw)
    if outcome.workflow is None:
        verdict = outcome.trajectory.verdict
        return None, [f"one-shot {f.code}: {f.reason}" for f in (verdict.failures if verdict else [])]
    _pending(env)[outcome.workflow.id] = outcome
    return outcome.workflow, []


async def run_verify_oneshot(env: StageEnv, workflow: Workflow) -> tuple[list[Trajectory], list[str]]:
    """The one-shot dialogue replay-verified (from the answer kept on disk after a resume)."""
    outcome = _pending(env).pop(workflow.id, None)
    if outcome is None:  # resumed after a kill: verify the answer kept on disk
        path = answer_path(_run_dir(env), workflow.doc_id)
        if not path.exists():
            return [], [f"the one-shot answer of {workflow.doc_id} was lost ({path} is missing)"]
        outcome = verify_text(path.read_text(encoding="utf-8"), doc_id=workflow.doc_id, title=workflow.title,
                              model=_client(env).model)
    return [outcome.trajectory], []


ONESHOT = register("stage", "oneshot", Stage(
    name="oneshot", run=run_oneshot, roles=("synthesizer",), preflight=needs_model,
    summary="one call per text: tools, execution graph, state and a whole dialogue, kept on disk"))
VERIFY_ONESHOT = register("stage", "verify_oneshot", Stage(
    name="verify_oneshot", run=run_verify_oneshot, roles=("synthesizer",), preflight=needs_model,
    summary="the one-shot dialogue replayed on a backend at the state the model wrote, and verified"))
