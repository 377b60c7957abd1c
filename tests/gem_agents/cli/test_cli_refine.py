"""`gem refine`: refined.jsonl holds only verified trajectories; rejects and the stats table are written."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gem_agents.cli import app

REPO = Path(__file__).resolve().parents[3]
WF = REPO / "examples" / "workflows" / "shop_return.json"
runner = CliRunner()


def simulate(tmp_path: Path, n: int = 2) -> Path:
    res = runner.invoke(app, ["simulate", str(WF), "--rollouts", str(n), "--out", str(tmp_path / "sim"), "-q"])
    assert res.exit_code == 0, res.output
    return tmp_path / "sim" / "trajectories.jsonl"


def refiner_config(tmp_path: Path, base_url: str) -> Path:
    """A run config whose refine role is a model at `base_url` (no cache, no retries)."""
    cfg = tmp_path / "cfg.yaml"
    role = {"provider": "openai", "base_url": base_url, "model": "fake-refiner",
            "structured_output": "tagged", "max_retries": 0}
    cfg.write_text(yaml.safe_dump({"cache": False, "roles": {"refine": role}}), encoding="utf-8")
    return cfg


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_refine_writes_verified_harder_trajectories(tmp_path):
    src = simulate(tmp_path)
    out = tmp_path / "ref"
    res = runner.invoke(app, ["refine", str(src), "--workflows", str(WF), "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    rows = read_jsonl(out / "refined.jsonl")
    assert len(rows) == summary["refined"] == summary["verified_exported"] == 2
    assert all(r["verdict"]["passed"] and r["provenance"]["stage"] == "refine" for r in rows)
    before, after = summary["stats"]["before"], summary["stats"]["after"]
    for field in ("messages", "user_turns", "tool_types", "tool_calls", "errors_recovered"):
        assert after[field] > before[field], field
    report = json.loads((out / "report.json").read_text())
    assert report["stats"] == summary["stats"] and len(report["per_trajectory"]) == 2
    assert all(p["after"]["tool_calls"] > p["before"]["tool_calls"] for p in report["per_trajectory"])
    # The refined file re-verifies on its own (each line carries its refined scenario).
    check = runner.invoke(app, ["verify", str(out / "refined.jsonl"), "--workflow", str(WF), "--json"])
    assert check.exit_code == 0, check.output


def test_bad_lines_and_unverified_inputs_are_rejected_with_reasons(tmp_path):
    src = simulate(tmp_path, 1)
    good = read_jsonl(src)[0]
    failed = dict(good, id="failed-one", verdict={"passed": False, "failures": []})
    no_scenario = {k: v for k, v in good.items() if k != "scenario"} | {"id": "rebuilt"}
    src.write_text("\n".join([json.dumps(good), "{not json", json.dumps(failed), json.dumps(no_scenario)]) + "\n",
                   encoding="utf-8")
    out = tmp_path / "ref"
    res = runner.invoke(app, ["refine", str(src), "--workflows", str(WF), "--out", str(out), "--ops",
                              "chain_goals,plan_errors", "-q"])
    assert res.exit_code == 0, res.output
    refined = read_jsonl(out / "refined.jsonl")
    assert [r["id"] for r in refined] == ["shop_return:s0:refined", "shop_return:s0:refined"]
    rejected = {r["line"]: r for r in read_jsonl(out / "rejected.jsonl")}
    assert sorted(rejected) == [2, 3]
    assert f"{src}:2" in rejected[2]["reasons"][0]
    assert rejected[3]["reasons"] == ["the input trajectory did not verify"]
    assert all(set(r["scenario"]["refinements"][0].split(":")[:1]) <= {"chain_goals", "plan_errors"} for r in refined)


def flat(text: str) -> str:
    return "".join(text.split())  # rich wraps long lines anywhere, paths included


def test_usage_errors_exit_2(tmp_path):
    res = runner.invoke(app, ["refine", str(tmp_path / "missing.jsonl"), "--workflows", str(WF),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "missing.jsonl:nosuchfile" in flat(res.output)
    src = simulate(tmp_path, 1)
    res = runner.invoke(app, ["refine", str(src), "--workflows", str(WF), "--out", str(tmp_path / "o"),
                              "--ops", "chain_goals,shuffle"])
    assert res.exit_code == 2 and "shuffle" in flat(res.output)
    res = runner.invoke(app, ["refine", str(src), "--workflows", str(tmp_path / "nope.json"),
                              "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "nope.json" in flat(res.output)


def test_refine_with_a_model_refiner_from_the_config(tmp_path):
    from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, text

    src = simulate(tmp_path, 1)
    proposal = {"ops": [{"op": "chain_goals", "count": 2}, {"op": "plan_errors", "kinds": ["transient"]}]}
    with FakeOpenAIServer(ScriptedResponder([text(json.dumps(proposal))])) as srv:
        cfg = refiner_config(tmp_path, srv.base_url)
        res = runner.invoke(app, ["refine", str(src), "--workflows", str(WF), "--out", str(tmp_path / "ref"),
                                  "--config", str(cfg), "--json", "-q"])
        assert srv.count == 1
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["ops"] == {"chain_goals": 1, "plan_errors": 1} and summary["refined"] == 1
    row = read_jsonl(tmp_path / "ref" / "refined.jsonl")[0]
    assert row["provenance"]["model"] == "fake-refiner" and len(row["scenario"]["goals"]) == 3


def test_an_endpoint_that_gives_up_rejects_only_its_trajectories(tmp_path):
    from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, http_error, text

    src = simulate(tmp_path, 2)
    proposal = {"ops": [{"op": "chain_goals", "count": 1}]}
    # One refiner call fails for good (500, no retries), the other gets a proposal.
    replies = [http_error(500, "upstream exploded"), text(json.dumps(proposal))]
    with FakeOpenAIServer(ScriptedResponder(replies)) as srv:
        cfg = refiner_config(tmp_path, srv.base_url)
        res = runner.invoke(app, ["refine", str(src), "--workflows", str(WF), "--out", str(tmp_path / "ref"),
                                  "--config", str(cfg), "--json", "-q", "--concurrency", "1"])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["refined"] == 1 and summary["rejected"] == 1
    rejected = read_jsonl(tmp_path / "ref" / "rejected.jsonl")
    assert "model call failed" in rejected[0]["reasons"][0]
    assert len(read_jsonl(tmp_path / "ref" / "refined.jsonl")) == 1


def test_ops_bound_what_the_model_refiner_may_apply(tmp_path):
    from gem_agents.testing.fake_openai import FakeOpenAIServer, ScriptedResponder, text

    src = simulate(tmp_path, 1)
    proposal = {"ops": [{"op": "chain_goals", "count": 2}, {"op": "plan_errors", "kinds": ["transient"]}]}
    with FakeOpenAIServer(ScriptedResponder([text(json.dumps(proposal))])) as srv:
        cfg = refiner_config(tmp_path, srv.base_url)
        res = runner.invoke(app, ["refine", str(src), "--workflows", str(WF), "--out", str(tmp_path / "ref"),
                                  "--config", str(cfg), "--ops", "plan_errors", "--json", "-q"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["ops"] == {"plan_errors": 1}
    row = read_jsonl(tmp_path / "ref" / "refined.jsonl")[0]
    assert len(row["scenario"]["goals"]) == 1  # chain_goals was not allowed
