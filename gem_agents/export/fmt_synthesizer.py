"""Synthesizer training pairs: source text → the verified, refined trajectory as one target string.

`gem export RUN_DIR --format synthesizer --out DIR` writes `DIR/train.jsonl` and
`DIR/validation.jsonl`, one pair per line:

    {"doc_id": ..., "trajectory_id": ..., "kind": "refined", "text": SOURCE TEXT,
     "target": BLOCK, "messages": [system instruction, user text, assistant block]}

Only verified trajectories become pairs; per document the refined ones are used, or its verified
originals when refinement produced none. Each target is parsed back and replay-verified before it
is written (a target the one-shot verifier would reject never becomes training data). The split is
by document — every segment of a source document lands on the same side — so no text of the
validation set is seen in training.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gem_agents.export.records import atomic_write_text
from gem_agents.io import check_output
from gem_agents.registry import register
from gem_agents.run.store import STORE_NAME, RunStore
from gem_agents.synthesizer.format import FormatError, from_trajectory, parse, render
from gem_agents.synthesizer.oneshot import oneshot_prompt, verify_text
from tools_runtime.records import Trajectory

VALIDATION_FRACTION = 0.1
SPLIT_SALT = "gem-synth"


def group_of(doc_id: str) -> str:
    """The source document of a (segment) id: `guide#s2` → `guide`."""
    base, sep, tail = doc_id.rpartition("#s")
    return base if sep and tail.isdigit() else doc_id


def split_groups(groups: list[str], fraction: float = VALIDATION_FRACTION, salt: str = SPLIT_SALT) -> set[str]:
    """The groups that go to validation: a stable hash order, `fraction` of them (one at least when 2+)."""
    unique = sorted(set(groups), key=lambda g: hashlib.sha256(f"{salt}:{g}".encode()).hexdigest())
    if len(unique) < 2 or fraction <= 0:
        return set()
    k = max(1, round(len(unique) * fraction))
    return set(unique[:min(k, len(unique) - 1)])


def source_texts(run_dir: Path) -> dict[str, str]:
    """Each document's text, as the run store kept it when the document finished."""
    store = RunStore(run_dir, readonly=True)
    try:
        return {d["doc_id"]: d["text"] for d in store.documents() if d.get("text")}
    finally:
        store.close()


def verified_rows(run_dir: Path, *, include_offline: bool = True) -> list[tuple[str, str, Trajectory]]:
    """(doc_id, kind, trajectory) of every verified trajectory, in store order (offline ones on request)."""
    path = run_dir / STORE_NAME
    if not path.exists():
        raise ValueError(f"{run_dir}: not a run directory (no {STORE_NAME})")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT doc_id, kind, record FROM trajectories WHERE passed = 1 ORDER BY rowid").fetchall()
    finally:
        db.close()
    out = [(doc_id, kind, Trajectory.model_validate_json(rec)) for doc_id, kind, rec in rows]
    return [r for r in out if include_offline or not r[2].provenance.offline]


def pair_record(doc_id: str, kind: str, traj: Trajectory, text: str, target: str) -> dict[str, Any]:
    """One training pair as written (TRL reads `messages`; `text`/`target` serve plain prompts)."""
    return {"doc_id": doc_id, "trajectory_id": traj.id, "kind": kind, "text": text, "target": target,
            "messages": [{"role": "system", "content": oneshot_prompt()}, {"role": "user", "content": text},
                         {"role": "assistant", "content": target}]}


def build_pairs(rows: list[tuple[str, str, Trajectory]], texts: Mapping[str, str]
                ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Pairs from verified rows (refined preferred per document) and the reasons rows were dropped."""
    has_refined = {doc_id for doc_id, kind, _ in rows if kind == "refined"}
    pairs: list[dict[str, Any]] = []
    dropped: dict[str, int] = {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    for doc_id, kind, traj in rows:
        if kind != "refined" and doc_id in has_refined:
            continue  # the document has a refined trajectory: the harder one is the target
        text = texts.get(doc_id)
        if text is None:
            drop("no source text")
            continue
        try:
            st = from_trajectory(traj)
            target = render(st)
            if parse(target) != st:
                drop("target does not round-trip")
                continue
        except FormatError as exc:
            drop(f"not expressible: {exc.message}")
            continue
        outcome = verify_text(target, doc_id=doc_id)
        if not outcome.passed:
            codes = ",".join(sorted({f.code for f in outcome.trajectory.verdict.failures}))  # type: ignore[union-attr]
            drop(f"one-shot replay fails ({codes})")
            continue
        pairs.append(pair_record(doc_id, kind, traj, text, target))
    return pairs, dropped


def export_pairs(run_dir: Path, out: Path, texts: Mapping[str, str] | None = None, *,
                 validation_fraction: float = VALIDATION_FRACTION, include_offline: bool = True) -> dict[str, Any]:
    """Write `out/train.jsonl` and `out/validation.jsonl`; `texts` overrides where source texts come from."""
    run_dir, out = Path(run_dir), Path(out)
    if out.suffix in (".jsonl", ".json"):
        raise ValueError(f"{out}: the synthesizer export writes a folder (train.jsonl, validation.jsonl); "
                         "pass a folder path")
    rows = verified_rows(run_dir, include_offline=include_offline)
    if texts is None:
        texts = source_texts(run_dir)
    if rows and not texts:
        raise ValueError(f"{run_dir}: the run records no document texts (written by an older gem run), so "
                         "no (text → trajectory) pair can be built; pass the texts: "
                         "gem_agents.export.fmt_synthesizer.export_pairs(run_dir, out, texts={doc_id: text})")
    pairs, dropped = build_pairs(rows, texts)
    validation = split_groups([group_of(p["doc_id"]) for p in pairs], validation_fraction)
    files: dict[str, list[str]] = {"train": [], "validation": []}
    for p in pairs:
        split = "validation" if group_of(p["doc_id"]) in validation else "train"
        files[split].append(json.dumps(p, ensure_ascii=False))
    check_output(out, folder=True)
    for split, lines in files.items():
        atomic_write_text(out / f"{split}.jsonl", "".join(line + "\n" for line in lines))
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    return {"format": "synthesizer", "out": str(out), "trajectories": len(pairs),
            "train": len(files["train"]), "validation": len(files["validation"]),
            "documents": len({p["doc_id"] for p in pairs}), "validation_documents": sorted(validation),
            "by_kind": kinds, "dropped": dropped}


@register("export_format", "synthesizer")
def export(run_dir: Path, out: Path, *, include_offline: bool = False) -> dict[str, Any]:
    """Training pairs of a run's verified trajectories, split train/validation by document."""
    return export_pairs(run_dir, out, include_offline=include_offline)
