"""The chat-model roles' prompts: what the user model is told about its facts."""

from __future__ import annotations

import random

from gem_agents.policies.chat import fact_goal, user_prompt
from gem_agents.user.dialogue_text import render_value
from tests.helpers import example
from tools_runtime.refine_ops import chain_goals
from tools_runtime.scenario import build_scenario


def test_fact_goal_reads_the_suffix():
    assert fact_goal("order_id") is None
    assert fact_goal("order_id@2") == 2 and fact_goal("order_id@3.2") == 3


def test_chained_goals_group_facts_by_request():
    sc = build_scenario(example("shop_return"), seed=0)
    plain = user_prompt(sc)
    assert "For request" not in plain
    chained = chain_goals(sc, random.Random(0))
    later = [k for k in chained.known_info if fact_goal(k) is not None]
    assert later, "chaining a goal should add facts for a later request"
    prompt = user_prompt(chained)
    for key in later:
        header = f"For request {fact_goal(key) + 1}:"
        assert header in prompt
        # Each later fact is listed under its own request's header, never shown with its suffix.
        section = prompt.split(header, 1)[1].split("For request", 1)[0]
        assert render_value(chained.known_info[key]) in section
    assert "@" not in prompt.split("What you know", 1)[1].split("Rules:", 1)[0]


def test_trials_of_one_task_never_share_a_cached_answer() -> None:
    """Two seeds of one scenario (gem eval's trials) each reach the model; the same seed again is a cache hit."""
    import asyncio

    from gem_agents.config import RoleConfig
    from gem_agents.models.cache import CallCache
    from gem_agents.models.client import ModelClient
    from gem_agents.policies.chat import chat_assistant
    from graphs.roles import RoleView

    calls: list[int] = []

    async def complete(messages, spec):  # noqa: ANN001, ANN202 — the Completer shape
        calls.append(len(messages))
        return {"role": "assistant", "content": f"answer {len(calls)}"}, {"prompt_tokens": 1, "completion_tokens": 1}

    cfg = RoleConfig(provider="openai", model="m", base_url="http://127.0.0.1:1/v1", temperature=0.7)
    policy = chat_assistant(ModelClient("assistant", cfg, complete, cache=CallCache(None)))
    sc = build_scenario(example("shop_return"), 0)
    opening = [{"role": "user", "content": "Hello, I need help with a return."}]

    def ask(seed: int) -> str:
        view = RoleView(role="assistant", scenario=sc.model_copy(update={"seed": seed}), messages=list(opening))
        return asyncio.run(policy(view))["content"]

    first, second, again = ask(0), ask(1), ask(0)
    assert len(calls) == 2 and first != second and again == first
