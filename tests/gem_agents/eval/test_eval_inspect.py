"""The inspect_ai task adapter, played by inspect's mock model (no network, no real model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai", reason="the optional `inspect` extra")

from inspect_ai import eval as inspect_eval  # noqa: E402
from inspect_ai.model import ModelOutput, get_model  # noqa: E402

from gem_agents.eval.inspect_task import gem_task  # noqa: E402
from tools_runtime.tasks import Task  # noqa: E402

TASKS = Path(__file__).resolve().parents[3] / "examples" / "environments" / "print_booklet.tasks.jsonl"


def _player(gold, skip_last: bool):
    """A mock model that calls the gold actions (optionally not the last) one per turn, then answers."""
    calls = gold[:-1] if skip_last else gold

    def out(messages, tools, tool_choice, config):
        done = sum(1 for m in messages if m.role == "tool")
        if done < len(calls):
            a = calls[done]
            return ModelOutput.for_tool_call("mockllm/model", a.tool, dict(a.arguments), tool_call_id=f"c{done}")
        return ModelOutput.from_content("mockllm/model", "All done: it is printing.")
    return out


@pytest.fixture(autouse=True)
def _offline_token_counts(monkeypatch):
    """inspect counts tokens with tiktoken, which downloads its encoding: count characters instead."""
    from inspect_ai.model._providers.mockllm import MockLLM

    async def by_chars(self, text: str) -> int:
        return max(1, len(text) // 4)

    monkeypatch.setattr(MockLLM, "count_text_tokens", by_chars)


@pytest.mark.parametrize("skip_last", [False, True])
def test_inspect_task_scores_with_our_verifier(skip_last, tmp_path):
    task = Task.model_validate_json(TASKS.read_text().splitlines()[0])
    model = get_model("mockllm/model", custom_outputs=_player(task.gold_actions, skip_last))
    logs = inspect_eval(gem_task(TASKS, epochs=2, limit=1), model=model, log_dir=str(tmp_path),
                        display="none")
    log = logs[0]
    assert log.status == "success", log.error
    sample = log.samples[0]
    score = next(iter(sample.scores.values()))
    assert score.value == (0.0 if skip_last else 1.0), score.explanation
    assert score.metadata["components"]["state"] is (not skip_last)
    assert log.eval.config.epochs_reducer == ["pass_k_2"] and log.results.scores[0].reducer == "pass_k_2"
    metrics = {m.name: m.value for s in log.results.scores for m in s.metrics.values()}
    assert metrics["accuracy"] == (0.0 if skip_last else 1.0), json.dumps(metrics)
