"""Helpers shared by tests: load examples, run scripted rollouts synchronously."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gem_agents.policies.scripted_assistant import scripted_assistant
from gem_agents.user.scripted import scripted_user
from graphs.roles import Roles
from graphs.rollouts import run_dialogue
from tools_runtime.records import Scenario, Trajectory, Workflow
from tools_runtime.scenario import build_scenario
from tools_runtime.workflow_io import load_workflow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"
SCRIPTED = Roles(user=scripted_user, assistant=scripted_assistant)


def example(name: str) -> Workflow:
    """One bundled example workflow."""
    return load_workflow(EXAMPLES / f"{name}.json")


def example_names() -> list[str]:
    """Names of every bundled example workflow."""
    return sorted(p.stem for p in EXAMPLES.glob("*.json"))


def rollout(scenario: Scenario, roles: Roles = SCRIPTED, **kwargs) -> Trajectory:
    """Run one dialogue to the end."""
    return asyncio.run(run_dialogue(scenario, roles, **kwargs))


def scripted(name: str, seed: int = 0) -> tuple[Scenario, Trajectory]:
    """Scenario and scripted trajectory of an example."""
    sc = build_scenario(example(name), seed)
    return sc, rollout(sc)
