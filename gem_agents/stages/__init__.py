"""The pipeline's stages, one registered `Stage` object each (`base.py`; how to add one: README.md).

`relevance` (stage `filter`: `prefilter` rules, then a model) → `extract` (a model with bounded
repair rounds, or `offline_extractor` by rules) → `tasks` → `simulate` (rollouts, `judge`) →
`refine`; `pipelines` says which stage fills which node of the pipeline graph. `tagged` parses the
tagged answers the model stages ask for.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tools_runtime.records import Workflow


class ExtractionResult(BaseModel):
    """What stage 2 produced for one document: a workflow, or the reasons it was rejected.

    `rounds` counts model calls (0 for the offline extractor); `decided_by` is `model`, `offline`,
    or `filter` when stage 1 already ruled the document out.
    """

    workflow: Workflow | None = None
    rejected: list[str] = Field(default_factory=list)
    rounds: int = 0
    decided_by: str = "offline"

    @property
    def ok(self) -> bool:
        """True when a workflow came out."""
        return self.workflow is not None


__all__ = ["ExtractionResult"]
