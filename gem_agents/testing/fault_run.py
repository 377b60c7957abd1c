"""A reproducible run under injected faults: a small corpus, model-played roles on the fake server.

Tests (tests/gem_agents/testing/test_faults.py, tests/gem_agents/run/test_ray_engine.py) and benchmarks/bench_faults.py share it:
the bundled sample texts copied with distinct titles make a corpus; a first scripted run gives
the workflows the pipeline extracts from it; their scenarios let `RoleResponder` play the user and
the assistant behind a `FakeOpenAIServer` that injects faults; `check_run` then lists every way the
faulty run broke its promises (a document lost, stored twice, or ended without a reason).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from gem_agents.run.store import RunStore
from tools_runtime.records import Scenario, Workflow
from tools_runtime.scenario import build_scenario

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
BASE_CONFIG: dict[str, Any] = {"seed": 0, "rollouts": 1, "refine_rounds": 0}


def variant_corpus(path: str | Path, copies: int = 4) -> list[str]:
    """Write `copies` variants of every sample text (titles made distinct) as JSONL; returns the ids."""
    rows = []
    for sample in sorted(SAMPLES.glob("*.md")):
        lines = sample.read_text(encoding="utf-8").split("\n")
        for k in range(1, copies + 1):
            # A distinct title gives each copy its own workflow, which is how RoleResponder tells them apart.
            head = [f"{lines[0]} (team {k})"] if lines and lines[0].startswith("# ") else lines[:1]
            rows.append({"id": f"{sample.stem}-{k}", "text": "\n".join(head + lines[1:])})
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return [r["id"] for r in rows]


def write_config(path: str | Path, base_url: str | None = None, *, max_retries: int = 3, timeout_s: float = 0.5,
                 **overrides: Any) -> Path:
    """A run config: scripted roles, or (with `base_url`) user and assistant played through that endpoint."""
    cfg: dict[str, Any] = {**BASE_CONFIG, **overrides}
    if base_url is not None:
        role = {"provider": "openai", "model": "fake-model", "base_url": base_url, "max_retries": max_retries,
                "timeout_s": timeout_s}
        cfg["roles"] = {"user": role, "assistant": dict(role)}
    Path(path).write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return Path(path)


def gem(*args: str) -> tuple[int, dict[str, Any] | None, str]:
    """Run the `gem` CLI in-process; (exit code, the --json object if one was printed, stderr)."""
    from gem_agents.cli import app

    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    out = result.stdout.strip().splitlines()
    try:
        obj = json.loads(out[-1]) if out else None
    except ValueError:
        obj = None
    return result.exit_code, obj, result.stderr


def run(config: Path, corpus: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any] | None, str]:
    """`gem run CONFIG --input CORPUS --out OUT --json -q --no-report [extra…]`."""
    return gem("run", str(config), "--input", str(corpus), "--out", str(out), "--json", "-q", "--no-report",
               *extra)


def reference_scenarios(run_dir: str | Path, seed: int = 0) -> list[Scenario]:
    """The scenarios (rollout 0) a finished run simulated: one per task it wrote, else one per workflow."""
    from tools_runtime.tasks import scenario_from_task

    store = RunStore(run_dir, readonly=True)
    try:
        workflows = {d["doc_id"]: Workflow.model_validate(d["workflow"]) for d in store.documents() if d["workflow"]}
        tasks = list(store.tasks())
    finally:
        store.close()
    by_id = {wf.id: wf for wf in workflows.values()}
    out = [scenario_from_task(by_id[t.env_id], t, seed) for t in tasks if t.env_id in by_id]
    with_tasks = {t.env_id for t in tasks}
    return out + [build_scenario(wf, seed) for wf in workflows.values() if wf.id not in with_tasks]


def run_records(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """A run's stored documents and trajectories, read once."""
    store = RunStore(run_dir, readonly=True)
    try:
        return store.documents(), list(store.trajectories())
    finally:
        store.close()


def check_run(run_dir: str | Path, ids: list[str]) -> list[str]:
    """Every broken promise of a run over `ids`: lost or duplicated documents, endings without a reason."""
    docs, trajectories = run_records(run_dir)
    problems = []
    stored = Counter(d["doc_id"] for d in docs)
    problems += [f"{i}: lost (no record)" for i in ids if i not in stored]
    problems += [f"{i}: stored {n} times" for i, n in stored.items() if n > 1]
    problems += [f"{i}: stored but not in the input" for i in stored if i not in ids]
    for d in docs:
        if d["status"] not in ("kept", "rejected", "failed"):
            problems.append(f"{d['doc_id']}: unknown status {d['status']!r}")
        elif d["status"] == "rejected" and not d["reasons"]:
            problems.append(f"{d['doc_id']}: rejected without a reason")
        elif d["status"] == "failed" and not d["error"]:
            problems.append(f"{d['doc_id']}: failed without an error")
    for t in trajectories:
        if t.verdict is None:
            problems.append(f"{t.id}: no verdict")
        elif not t.verdict.passed and not any(f.reason for f in t.verdict.failures):
            problems.append(f"{t.id}: failed without a reason")
    return problems


def run_counts(run_dir: str | Path) -> dict[str, Any]:
    """Documents by status, trajectories by verdict, and the most common reasons (for reports)."""
    docs, trajectories = run_records(run_dir)
    reasons: Counter[str] = Counter()
    for d in docs:
        for r in d["reasons"] if d["status"] == "rejected" else [d["error"] or ""] if d["status"] == "failed" else []:
            reasons[r.split(":")[0][:60]] += 1
    codes: Counter[str] = Counter(f.code for t in trajectories if t.verdict for f in t.verdict.failures)
    return {"documents": dict(Counter(d["status"] for d in docs)),
            "trajectories": {"verified": sum(1 for t in trajectories if t.verdict and t.verdict.passed),
                             "failed": sum(1 for t in trajectories if not (t.verdict and t.verdict.passed))},
            "reasons": dict(reasons.most_common(8)), "failure_codes": dict(codes.most_common(8))}
