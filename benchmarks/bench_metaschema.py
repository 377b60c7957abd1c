"""CPU of `validate_extraction` over the recorded extractions, with the metaschema fast path and without.

    .venv/bin/python benchmarks/bench_metaschema.py [--rounds 3]

The 11 recorded extractions of tests/data/recorded (their texts from ../shared/data) are validated as
`gem run` validates a model's extraction; "without" replaces `tools_runtime.metaschema.known_valid`
by a function that proves nothing, so every schema takes the stock Draft 2020-12 metaschema check.
Compiled validators are cleared before each pass. Prints ms of process CPU per extraction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tools_runtime.metaschema as metaschema  # noqa: E402
import tools_runtime.validation as validation  # noqa: E402
from gem_agents.stages.extract import validate_extraction  # noqa: E402
from tools_runtime.records import Document  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"


def recorded() -> list[tuple[dict[str, Any], Document]]:
    """(extraction, document) of every recorded document whose text is in the corpus."""
    texts = {r["id"]: r for r in map(json.loads, CORPUS.read_text(encoding="utf-8").splitlines()) if r}
    out = []
    for p in sorted((REPO / "tests" / "data" / "recorded" / "docs").glob("*.json")):
        d = json.loads(p.read_text(encoding="utf-8"))
        if d.get("extraction") and d["doc_id"] in texts:
            r = texts[d["doc_id"]]
            out.append((d["extraction"], Document(id=r["id"], text=r["text"], meta={"title": r.get("title", "")})))
    return out


def main() -> None:
    """Alternate passes with and without the fast path; print CPU per extraction."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    rounds = ap.parse_args().rounds
    docs = recorded()
    proven = metaschema.known_valid

    async def one_pass() -> int:
        usable = 0
        for data, doc in docs:
            usable += (await validate_extraction(json.loads(json.dumps(data)), doc))[0] is not None
        return usable

    for _ in range(rounds):
        for name, check in (("fast path", proven), ("stock check", lambda schema: False)):
            metaschema.known_valid = validation.known_valid = check  # env_validate imports it per call
            validation._compile.cache_clear()
            t0 = time.process_time()
            usable = asyncio.run(one_pass())
            ms = (time.process_time() - t0) / len(docs) * 1e3
            print(f"{name:<12} {ms:6.1f} ms CPU per extraction ({usable}/{len(docs)} usable)", flush=True)


if __name__ == "__main__":
    main()
