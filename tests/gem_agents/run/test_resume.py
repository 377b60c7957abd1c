"""Kill `gem run` with SIGKILL at random moments, run it again: every document ends exactly once."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.run.store import RunStore
from tools_runtime.records import Trajectory

REPO = Path(__file__).resolve().parents[3]
COPIES = 3
KILLS = 4


def make_input(path: Path) -> list[str]:
    """The bundled samples, several copies under distinct ids, so a run lasts long enough to be cut."""
    ids = []
    with path.open("w", encoding="utf-8") as fh:
        for k in range(COPIES):
            for f in sorted(SAMPLES.glob("*.md")):
                doc_id = f"{f.stem}-{k}"
                ids.append(doc_id)
                fh.write(json.dumps({"id": doc_id, "text": f.read_text(encoding="utf-8")}) + "\n")
    return ids


def write_config(path: Path) -> None:
    path.write_text("rollouts: 2\nrefine_rounds: 1\nconcurrency: {documents: 2, rollouts: 4}\n")


def code_copy(dest: Path) -> Path:
    """A frozen copy of the packages: every `gem run` of the test imports the same code, even when the working
    tree is edited while the test runs (the reference and the resumed runs must differ only by the kills)."""
    for pkg in ("tools_runtime", "graphs", "gem_agents", "configs"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def gem_run(cfg: Path, inp: Path, out: Path, code: Path = REPO) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from gem_agents.cli import main; main()", "run", str(cfg), "--input", str(inp),
           "--out", str(out), "--quiet", "--no-report"]
    return subprocess.Popen(cmd, cwd=code, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(code)})


def snapshot(out: Path) -> tuple[dict[str, tuple[str, str]], dict[str, dict]]:
    """(doc id → (status, stage), trajectory id → record) as stored, checking integrity on the way."""
    db = sqlite3.connect(out / "run.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    doc_rows = db.execute("SELECT doc_id, status, stage FROM documents").fetchall()
    traj_rows = db.execute("SELECT id, doc_id, record FROM trajectories").fetchall()
    db.close()
    ids = [r[0] for r in doc_rows]
    assert len(ids) == len(set(ids)), "a document was stored twice"
    docs = {r[0]: (r[1], r[2]) for r in doc_rows}
    trajs = {}
    for tid, doc_id, rec in traj_rows:
        assert doc_id in docs, f"trajectory {tid} without its document"
        t = Trajectory.model_validate_json(rec)  # a torn record would not parse
        trajs[tid] = t.model_dump(mode="json")
    return docs, trajs


def stored_count(out: Path) -> int:
    """Documents finished so far (0 before the store exists)."""
    if not (out / "run.sqlite").exists():
        return 0
    db = sqlite3.connect(f"file:{out / 'run.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not written yet
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_exactly_once(tmp_path):
    inp = tmp_path / "docs.jsonl"
    ids = make_input(inp)
    cfg = tmp_path / "run.yaml"
    write_config(cfg)
    code = code_copy(tmp_path / "code")

    ref = tmp_path / "reference"
    p = gem_run(cfg, inp, ref, code)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    ref_docs, ref_trajs = snapshot(ref)
    assert set(ref_docs) == set(ids)

    out = tmp_path / "killed"
    rng = random.Random(20261126)
    cuts = []
    # One kill early (start-up, first checkpoints), then kills once the store holds a random count.
    p = gem_run(cfg, inp, out, code)
    time.sleep(rng.uniform(0.2, 1.5))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    for _ in range(KILLS):
        done = stored_count(out)
        if done >= len(ids) - 1:
            break
        target = rng.randint(done + 1, min(len(ids) - 1, done + 4))
        p = gem_run(cfg, inp, out, code)
        while p.poll() is None and stored_count(out) < target:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere inside the next documents' stages
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            cuts.append(len(snapshot(out)[0]))
    p = gem_run(cfg, inp, out, code)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    docs, trajs = snapshot(out)
    assert docs == ref_docs
    assert trajs == ref_trajs
    # The kills did cut runs short: some snapshot held part of the documents.
    assert len(cuts) >= 2 and all(n < len(ids) for n in cuts[:2]), cuts
    store = RunStore(out, readonly=True)
    assert store.finished_ids() == set(ids)
    store.close()
