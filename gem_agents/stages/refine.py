"""Stage 4: complexity refinement — re-plan a harder scenario, simulate it again, keep it only if verified."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gem_agents.models.client import ModelClient
from graphs.roles import Roles
from tools_runtime.records import Scenario, Trajectory


class RefineResult(BaseModel):
    """A refinement's outcome: the refined scenario and its verified trajectory, or the reasons it was dropped."""

    scenario: Scenario | None = None
    trajectory: Trajectory | None = None
    rejected: list[str] = Field(default_factory=list)
    ops: list[str] = Field(default_factory=list)


async def refine(scenario: Scenario, roles: Roles, *, rounds: int = 1, ops: list[str] | None = None,
                 seed: int = 0, client: ModelClient | None = None) -> RefineResult:
    """Refine `scenario` (offline operators, or a model when `client` is given), re-simulate, verify."""
    return RefineResult(rejected=["refinement is not implemented yet"])
