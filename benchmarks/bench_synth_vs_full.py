"""Verified rate of `pipeline: synthesizer` next to the full pipeline's, on the same texts.

    .venv/bin/python benchmarks/bench_synth_vs_full.py [--input PATH] [--spoil 0.3] [--seed 0]

1. The full pipeline runs offline (scripted roles) on the texts (default: ../shared's dev corpus
   when present, else the bundled samples) and its verified trajectories are exported as
   synthesizer pairs.
2. A fake synthesizer endpoint plays a student model: for each text it answers the teacher's block
   (the verified trajectory), spoiled with probability --spoil by one of several seeded defects
   (a tool result the backend contradicts, a missing tool result, a renamed tool, a reordered
   graph, a cut-off block); texts the full pipeline did not verify get a refusal.
3. `pipeline: synthesizer` runs on the same texts against that endpoint.

Printed: the verified rate of each pipeline (verified documents / documents past the filter), how
many spoiled answers the replay verification caught (it must be all of them) and how many clean
answers it rejected (it must be none), and the failure codes. No model is involved: this measures
the machinery (one call per text, parse, replay), not a trained synthesizer's quality.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.config import load_config  # noqa: E402
from gem_agents.export.fmt_synthesizer import export_pairs  # noqa: E402
from gem_agents.ingest import read_documents  # noqa: E402
from gem_agents.run.context import open_run  # noqa: E402
from gem_agents.run.engine import run_documents  # noqa: E402
from gem_agents.run.store import RunStore  # noqa: E402
from gem_agents.testing.fake_openai import FakeOpenAIServer, text  # noqa: E402


def spoil(block: str, rng: random.Random) -> tuple[str, str]:
    """One seeded defect: (spoiled block, defect name)."""
    lines = block.split("\n")
    tools = [i for i, line in enumerate(lines) if line.startswith("tool ") and ": {" in line]
    kinds = ["cut_off", "drop_result", "reorder_graph"] + (["contradict", "rename"] if tools else [])
    kind = rng.choice(kinds)
    if kind == "cut_off":
        return block[: max(10, int(len(block) * rng.uniform(0.2, 0.9)))], kind
    if kind == "drop_result":
        i = rng.choice([i for i, line in enumerate(lines) if line.startswith("tool ")])
        return "\n".join(lines[:i] + lines[i + 1:]), kind
    if kind == "reorder_graph":
        g = lines.index("## graph") + 1
        stages = lines[g].split("->")
        if len(stages) < 2:
            return block[: len(block) // 2], "cut_off"
        lines[g] = "->".join(reversed(stages))
        return "\n".join(lines), kind
    i = rng.choice(tools)
    head, payload = lines[i].split(": ", 1)
    if kind == "rename":
        parts = head.split(" ")
        lines[i] = f"tool {parts[1]} not_{parts[2] if len(parts) > 2 else 'a_tool'}: {payload}"
        return "\n".join(lines), kind
    data = json.loads(payload)
    key = next((k for k, v in data.items() if isinstance(v, str | int | float) and not isinstance(v, bool)), None)
    if key is None:
        return block[: len(block) // 2], "cut_off"
    data[key] = f"{data[key]}-X"
    lines[i] = f"{head}: {json.dumps(data)}"
    return "\n".join(lines), kind


def rate(docs: list[dict]) -> tuple[int, int]:
    sent = [d for d in docs if (d["relevance"] or {}).get("multi_step")]
    return sum(d["status"] == "kept" for d in sent), len(sent)


async def run(cfg, docs, out: Path) -> float:
    t0 = time.perf_counter()
    async with open_run(cfg, out) as ctx:
        await run_documents(ctx, docs)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
    ap.add_argument("--input", type=Path, default=shared if shared.exists() else REPO / "gem_agents" / "samples")
    ap.add_argument("--spoil", type=float, default=0.3, help="probability that an answer is spoiled")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = load_config(REPO / "configs" / "offline.yaml")
    docs, _ = read_documents(args.input, cfg.input, max_segments=cfg.limits.max_segments)
    texts = {d.id: d.text for d in docs}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        full_s = asyncio.run(run(cfg, docs, root / "full"))
        pairs = export_pairs(root / "full", root / "pairs", texts, validation_fraction=0.2)
        teacher: dict[str, str] = {}
        for split in ("train", "validation"):
            for line in (root / "pairs" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
                p = json.loads(line)
                teacher.setdefault(p["text"], p["target"])
        rng = random.Random(args.seed)
        plan = {}
        for source in sorted(teacher):
            plan[source] = spoil(teacher[source], rng) if rng.random() < args.spoil else (teacher[source], "")

        def responder(body):
            source = body["messages"][-1]["content"]
            if source not in plan:
                return text("This text does not describe a procedure I can turn into a conversation.")
            return text(plan[source][0])

        with FakeOpenAIServer(responder) as srv:
            synth_cfg = cfg.model_copy(update={"pipeline": "synthesizer", "roles": cfg.roles.model_copy(update={
                "synthesizer": cfg.roles.synthesizer.model_copy(update={
                    "provider": "openai", "model": "fake-student", "base_url": srv.base_url, "max_retries": 0})})})
            synth_s = asyncio.run(run(synth_cfg, docs, root / "synth"))
            calls = srv.count
        stores = {name: RunStore(root / name, readonly=True) for name in ("full", "synth")}
        full_docs, synth_docs = stores["full"].documents(), stores["synth"].documents()
        synth_trajs = list(stores["synth"].trajectories())
        for s in stores.values():
            s.close()

    status = {texts[d["doc_id"]]: d for d in synth_docs}
    caught = sum(1 for src, (_, k) in plan.items() if k and status[src]["status"] != "kept")
    spoiled = sum(1 for _, k in plan.values() if k)
    false_rejects = sum(1 for src, (_, k) in plan.items() if not k and status[src]["status"] != "kept")
    codes: dict[str, int] = {}
    # Answers that failed, by each failure code they show (one count per answer and code).
    for t in synth_trajs:
        for code in sorted(set(t.verdict.codes() if t.verdict else [])):
            codes[code] = codes.get(code, 0) + 1
    for d in synth_docs:
        for code in sorted({r.split("one-shot ", 1)[1].split(":")[0] for r in d["reasons"] if "one-shot " in r}):
            codes[code] = codes.get(code, 0) + 1
    fk, fn = rate(full_docs)
    sk, sn = rate(synth_docs)
    print(f"input: {args.input} ({len(docs)} documents), spoil={args.spoil}, seed={args.seed}")
    print(f"full pipeline (offline):  verified {fk}/{fn} documents past the filter = {fk / max(fn, 1):.1%}"
          f"  [{full_s:.1f} s]")
    print(f"synthesizer (fake model): verified {sk}/{sn} documents past the filter = {sk / max(sn, 1):.1%}"
          f"  [{synth_s:.1f} s, {calls} model calls]")
    print(f"pairs exported: {pairs['train']} train / {pairs['validation']} validation "
          f"({pairs['documents']} documents), dropped {pairs['dropped']}")
    kinds: dict[str, int] = {}
    for _, k in plan.values():
        if k:
            kinds[k] = kinds.get(k, 0) + 1
    print(f"spoiled answers caught by replay verification: {caught}/{spoiled} {kinds}")
    print(f"clean teacher answers rejected: {false_rejects}/{len(plan) - spoiled}")
    print("failed answers by failure code: " + ", ".join(f"{c} ×{n}" for c, n in sorted(codes.items())))


if __name__ == "__main__":
    main()
