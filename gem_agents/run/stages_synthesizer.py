"""The stage functions of the `synthesizer` pipeline: filter → one-shot call → replay verification.

The same relevance filter as the full pipeline, then one call to the `synthesizer` role per text
(its answer parsed into tools + graph + state + dialogue), then the dialogue replay-verified on a
backend at the state the model wrote (`gem_agents.synthesizer.oneshot`). There is no refinement:
the synthesizer model was trained on refined trajectories and writes the hard one directly.

Each raw answer is kept in RUN_DIR/synthesizer/ before it is verified, so a run killed between the
two stages verifies the same answer on resume (and a person can read what the model wrote).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from gem_agents.io import write_text as atomic_write_text
from gem_agents.stages.relevance import judge_relevance
from gem_agents.synthesizer.oneshot import OneShotOutcome, synthesize, verify_text
from graphs.pipeline import PipelineStages
from tools_runtime.records import Document, Relevance, Trajectory, Workflow

if TYPE_CHECKING:
    from gem_agents.run.context import RunContext

ANSWERS_DIR = "synthesizer"


def answer_path(run_dir: Path, doc_id: str) -> Path:
    """Where a document's raw one-shot answer is kept (a readable, collision-free file name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", doc_id)[:80]
    return run_dir / ANSWERS_DIR / f"{safe}-{hashlib.sha256(doc_id.encode()).hexdigest()[:10]}.txt"


def make_stages(ctx: RunContext) -> PipelineStages:
    """The synthesizer pipeline's stages for one run."""
    from gem_agents.run.context import PipelineUnavailable

    cfg = ctx.config
    client = ctx.hub.client("synthesizer")
    if client is None:
        raise PipelineUnavailable("pipeline 'synthesizer' needs roles.synthesizer to name a model "
                                  "(provider openai, vllm or local): it sends each text to that model once")
    filter_client = ctx.hub.client("filter")
    pending: dict[str, OneShotOutcome] = {}

    async def filter_stage(doc: Document) -> Relevance:
        return await judge_relevance(doc, filter_client, use_prefilter=cfg.prefilter or filter_client is None,
                                     reask_rounds=cfg.limits.reask_rounds)

    async def oneshot_stage(doc: Document, rel: Relevance) -> tuple[Workflow | None, list[str]]:
        outcome = await synthesize(doc, client)
        if outcome.raw:
            atomic_write_text(answer_path(ctx.run_dir, doc.id), outcome.raw)
        if outcome.workflow is None:
            verdict = outcome.trajectory.verdict
            return None, [f"one-shot {f.code}: {f.reason}" for f in (verdict.failures if verdict else [])]
        pending[outcome.workflow.id] = outcome
        return outcome.workflow, []

    async def verify_stage(workflow: Workflow) -> tuple[list[Trajectory], list[str]]:
        outcome = pending.pop(workflow.id, None)
        if outcome is None:  # resumed after a kill: verify the answer kept on disk
            path = answer_path(ctx.run_dir, workflow.doc_id)
            if not path.exists():
                return [], [f"the one-shot answer of {workflow.doc_id} was lost ({path} is missing)"]
            outcome = verify_text(path.read_text(encoding="utf-8"), doc_id=workflow.doc_id, title=workflow.title,
                                  model=client.model)
        return [outcome.trajectory], []

    return PipelineStages(filter=filter_stage, extract=oneshot_stage, simulate=verify_stage, refine=None)
