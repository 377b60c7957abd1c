"""The whole pipeline through the model path on real texts, with recorded replies.

For 11 GNOME Help machine-procedure pages of corpus_dev.jsonl (and 3 negatives), the relevance,
extraction, task, user and assistant roles are played by the fake OpenAI-compatible server from
tests/data/recorded/ — hand-written examples of what a strong model answers (tests only; they say
nothing about any model's quality). `gem run` must take every page to verified, grounded
trajectories whose first message is the policy system prompt, and `gem audit` on the run must show
grounding ≥ 0.6, no-op tools ≤ 0.05, compute results all correct and a system prompt everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gem_agents.audit import group_of
from gem_agents.cli import app
from gem_agents.run.store import RunStore
from gem_agents.testing.fake_openai import FakeOpenAIServer, RecordedResponder, request_role

runner = CliRunner()
RECORDED = Path(__file__).resolve().parents[2] / "data" / "recorded"


def recorded_records() -> list[dict]:
    """Every recorded document."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((RECORDED / "docs").glob("*.json"))]


def run_config(base_url: str) -> dict:
    """Every model role on the fake server; the backend executes tools; one rollout per task."""
    role = {"provider": "openai", "base_url": base_url, "model": "recorded-replies", "max_retries": 0}
    return {"pipeline": "full", "seed": 0, "rollouts": 1, "tasks_per_env": 2, "refine_rounds": 0,
            "prefilter": False, "cache": False,
            "roles": {"filter": role, "extract": role, "task": role, "user": role, "assistant": role,
                      "tool_env": {"provider": "scripted"}, "refine": {"provider": "scripted"}}}


def write_input(corpus_path: Path, ids: set[str], out: Path) -> Path:
    """The recorded documents' lines of the corpus (texts as they are, labels kept)."""
    lines = [line for line in corpus_path.read_text(encoding="utf-8").splitlines()
             if line.strip() and json.loads(line)["id"] in ids]
    assert len(lines) == len(ids)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def e2e(corpus_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("grounded_e2e")
    records = recorded_records()
    src = write_input(corpus_path, {r["doc_id"] for r in records}, root / "docs.jsonl")
    responder = RecordedResponder(records)
    with FakeOpenAIServer(responder) as srv:
        cfg = root / "recorded.yaml"
        cfg.write_text(yaml.safe_dump(run_config(srv.base_url)), encoding="utf-8")
        res = runner.invoke(app, ["run", str(cfg), "--input", str(src), "--out", str(root / "run"), "--quiet",
                                  "--json"])
    return {"root": root, "run": root / "run", "src": src, "result": res, "responder": responder,
            "records": records}


def test_every_machine_procedure_page_ends_in_verified_grounded_trajectories(e2e):
    res = e2e["result"]
    assert res.exit_code == 0, res.output
    assert e2e["responder"].misses == []
    store = RunStore(e2e["run"], readonly=True)
    try:
        docs = {d["doc_id"]: d for d in store.documents()}
        trajs = list(store.trajectories())
    finally:
        store.close()
    machine = [r for r in e2e["records"] if r["relevance"]["multi_step"]]
    assert len(machine) >= 10
    for rec in e2e["records"]:
        segments = [d for doc_id, d in docs.items() if group_of(doc_id) == rec["doc_id"]]
        assert segments, rec["doc_id"]
        for doc in segments:
            if rec["relevance"]["multi_step"]:
                assert doc["status"] == "kept", (rec["doc_id"], doc["stage"], doc["reasons"], doc["error"])
            else:
                assert (doc["status"], doc["stage"]) == ("rejected", "filter"), (doc["doc_id"], doc["error"])
    n_tasks = sum(len(r["tasks"]["tasks"]) for r in machine)
    verified = [t for t in trajs if t.verdict and t.verdict.passed]
    assert len(verified) == n_tasks, [(t.id, t.verdict.codes()) for t in trajs if not t.verdict.passed]
    for t in verified:
        assert not t.provenance.offline and t.provenance.task_id
        first = t.messages[0]
        assert first["role"] == "system"
        policy = t.scenario.workflow.policy
        assert policy and all(rule.text in first["content"] for rule in policy)  # the policy is the system prompt
        assert t.scenario.task is not None and t.scenario.task.instruction


def test_audit_of_the_recorded_run_meets_the_targets(e2e):
    res = runner.invoke(app, ["audit", str(e2e["run"]), "--json", "--labels", str(e2e["src"])])
    assert res.exit_code == 0, res.output
    audit = json.loads(res.stdout)
    assert audit["offline"] is False
    assert audit["grounding"]["value"] >= 0.6, audit["grounding"]
    assert audit["noop_tool_share"]["value"] <= 0.05, audit["noop_tool_share"]
    assert audit["compute_correct"]["calls"] >= 1 and audit["compute_correct"]["value"] == 1.0
    assert audit["system_prompt_share"]["value"] == 1.0
    f = audit["funnel"]
    assert f["documents"] >= len(e2e["records"]) and f["rollouts_verified"] == f["rollouts"] == f["tasks_valid"]
    # Recorded relevance answers agree with the labels by construction: this checks the plumbing only.
    assert audit["relevance"]["precision"] == 1.0 and audit["relevance"]["recall"] == 1.0


def test_export_keeps_the_model_path_trajectories(e2e):
    out = e2e["root"] / "openai.jsonl"
    res = runner.invoke(app, ["export", str(e2e["run"]), "--format", "openai", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["offline_left_out"] == 0 and summary["trajectories"] > 0
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first["messages"][0]["role"] == "system"


def test_recorded_responder_matches_documents_roles_and_turns():
    rec = {"doc_id": "d", "match": "# Pair a headset", "relevance": {"multi_step": True},
           "dialogues": [{"instruction": "Pair your headset", "user": ["Please pair my headset.", "Bye ###STOP###"],
                          "assistant": [{"content": "", "tool_calls": [{"name": "pair", "arguments": {"device": "x"}}]},
                                        {"content": "Paired."}]}]}
    responder = RecordedResponder([rec])
    stage = {"messages": [{"role": "user", "content": "Text:\n# Pair a headset\n1. Open Bluetooth."}],
             "response_format": {"type": "json_schema", "json_schema": {"name": "relevance", "schema": {}}}}
    assert request_role(stage) == "relevance"
    assert json.loads(responder(stage).content) == {"multi_step": True}
    user = {"messages": [{"role": "system", "content": "Your goal: Pair your headset."},
                         {"role": "user", "content": "Hello!"}]}
    assert responder(user).content == "Please pair my headset."
    user["messages"].append({"role": "assistant", "content": "Please pair my headset."})
    assert responder(user).content == "Bye ###STOP###"
    asst = {"tools": [{"type": "function", "function": {"name": "pair"}}],
            "messages": [{"role": "system", "content": "rules"}, {"role": "user", "content": "Please pair my headset."}]}
    assert responder(asst).tool_calls[0].name == "pair"
    asst["messages"] += [{"role": "assistant", "content": ""}, {"role": "tool", "content": "{}"}]
    assert responder(asst).content == "Paired."
    asst["messages"].append({"role": "assistant", "content": "Paired."})
    assert "anything else" in responder(asst).content  # past the script: a closing line, not an error
    other = {"messages": [{"role": "user", "content": "# Something else"}],
             "response_format": {"type": "json_schema", "json_schema": {"name": "workflow", "schema": {}}}}
    with pytest.raises(Exception, match="no recorded document"):
        responder(other)
    assert responder.misses and FakeOpenAIServer  # the miss is recorded for the test to report
