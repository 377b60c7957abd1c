"""Pipeline stages 1 (relevance filter) and 2 (workflow and tool extraction).

`prefilter` (cheap rules) → `relevance` (stage 1, a model or the pre-filter alone) → `extract`
(stage 2, a model with bounded repair rounds) or `offline_extractor` (stage 2 by rules).
`tagged` parses the tagged answers both model stages ask for.
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
