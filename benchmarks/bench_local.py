"""The embedded local model (provider `local`, prebuilt llama.cpp or llama-cpp-python) on this machine's CPU.

    .venv/bin/python benchmarks/bench_local.py (--model-package NAME | --model-path FILE)
        [--docs 20] [--n-ctx 8192] [--threads N] [--roles filter,extract,user]
        [--max-tokens 768] [--json]

1. Raw speed: prompt-processing and generation tokens/s on a fixed ~300-token prompt (128 tokens
   generated, greedy), with the provider's threads (1 for generation, up to 4 for the prompt unless
   --threads is given); `uptime`'s load average is printed with it, since other work on the cores
   changes the figures several-fold.
2. The pipeline on the first N documents with label_hint == "procedural" of the dev corpus (first
   segment of each, as `gem run` ingests it): the filter (JSON-schema constrained) — % valid answers
   and % judged multi-step; the extractor (constrained, one repair round) — % valid extractions
   (parsed, tool schemas valid, graph valid, scripted reference rollout verifies); then one
   rollout per extracted workflow with the roles in --roles played by the model and the rest
   scripted — % verified trajectories. Wall time of each stage.

Nothing here is a test: figures vary with the machine and with what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.config import InputConfig, RoleConfig, RunConfig  # noqa: E402
from gem_agents.ingest import make_documents  # noqa: E402
from gem_agents.models.hub import ModelHub  # noqa: E402
from gem_agents.providers.local_provider import load_engine  # noqa: E402
from gem_agents.roles_factory import make_roles  # noqa: E402
from gem_agents.stages.extract import extract_workflow  # noqa: E402
from gem_agents.stages.relevance import judge_relevance  # noqa: E402
from graphs.rollouts import run_dialogue  # noqa: E402
from tools_runtime.scenario import ScenarioError, build_scenario  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
SPEED_PROMPT = ("Explain, step by step, how to change the Wi-Fi password on a home router through its web "
                "interface. " * 12).strip()


def raw_speed(cfg: RoleConfig) -> dict[str, float]:
    """Prompt and generation tokens/s of the loaded engine on a fixed prompt."""
    engine = load_engine(cfg)
    backend = engine.backend
    tokens = backend.tokenize(engine.render([{"role": "user", "content": SPEED_PROMPT}], None))
    start = time.perf_counter()
    backend.generate(tokens, max_tokens=1, temperature=0, seed=0, schema=None)  # prompt (+1 token)
    prompt_s = time.perf_counter() - start
    start = time.perf_counter()
    # Same prompt again: the prefix is reused, so this is (almost only) generation time.
    _text, gen = backend.generate(tokens, max_tokens=128, temperature=0, seed=0, schema=None)
    total_s = time.perf_counter() - start
    return {"runtime": backend.name, "prompt_tokens": len(tokens), "prompt_tok_s": round(len(tokens) / prompt_s, 1),
            "gen_tokens": gen, "gen_tok_s": round(gen / total_s, 1),
            "load_average": os.getloadavg()[0]}


def procedural_docs(corpus: Path, n: int) -> list:
    """The first segment of the first n label_hint == procedural documents."""
    docs = []
    for line in corpus.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("label_hint") != "procedural":
            continue
        segs, _ = make_documents(row["id"], row["text"], source=row.get("source", ""),
                                 segment_chars=InputConfig().segment_chars)
        docs.append(segs[0])
        if len(docs) == n:
            break
    return docs


async def run_pipeline(docs: list, cfg: RunConfig, max_user_turns: int) -> dict:
    """Filter, extract and one rollout per document, sequentially (one CPU engine)."""
    hub = ModelHub(cfg, None, use_cache=False)
    roles = make_roles(hub)
    out = {"docs": len(docs), "filter_valid": 0, "filter_multi_step": 0, "extract_valid": 0, "rollouts": 0,
           "verified": 0, "filter_s": 0.0, "extract_s": 0.0, "simulate_s": 0.0, "failures": {}}
    for doc in docs:
        t = time.perf_counter()
        if hub.client("filter") is not None:
            rel = await judge_relevance(doc, hub.client("filter"), use_prefilter=False, reask_rounds=0)
            out["filter_valid"] += rel.decided_by != "unparsable"
            out["filter_multi_step"] += rel.multi_step
        else:
            rel = None
        out["filter_s"] += time.perf_counter() - t
        t = time.perf_counter()
        res = await extract_workflow(doc, hub.client("extract"), relevance=rel, repair_rounds=1)
        out["extract_s"] += time.perf_counter() - t
        if res.workflow is None:
            key = (res.rejected or ["?"])[0][:70]
            out["failures"][key] = out["failures"].get(key, 0) + 1
            print(f"[{time.strftime('%H:%M:%S')}] {doc.id}: rejected: {key}", file=sys.stderr, flush=True)
            continue
        out["extract_valid"] += 1
        try:
            sc = build_scenario(res.workflow, 0)
        except ScenarioError:
            continue
        t = time.perf_counter()
        traj = await run_dialogue(sc, roles, max_user_turns=max_user_turns)
        out["simulate_s"] += time.perf_counter() - t
        out["rollouts"] += 1
        out["verified"] += bool(traj.verdict and traj.verdict.passed)
        print(f"[{time.strftime('%H:%M:%S')}] {doc.id}: extracted, verified={bool(traj.verdict and traj.verdict.passed)}",
              file=sys.stderr, flush=True)
    totals = hub.meter.totals()
    out["tokens_in"], out["tokens_out"] = totals["input_tokens"], totals["output_tokens"]
    for k in ("filter_s", "extract_s", "simulate_s"):
        out[k] = round(out[k], 1)
    return out


def main() -> None:
    """Print the local model's speed and pipeline figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-package")
    src.add_argument("--model-path")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--docs", type=int, default=20)
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=None, help="generation threads (default 1)")
    ap.add_argument("--max-tokens", type=int, default=768)
    ap.add_argument("--max-user-turns", type=int, default=8)
    ap.add_argument("--roles", default="filter,extract", help="roles played by the model (extract always is)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    role = RoleConfig(provider="local", model_package=args.model_package, model_path=args.model_path,
                      n_ctx=args.n_ctx, n_threads=args.threads, temperature=0,
                      structured_output="json_schema",
                      max_tokens=args.max_tokens, max_retries=0, concurrency=1)
    t = time.perf_counter()
    load_engine(role)
    load_s = round(time.perf_counter() - t, 1)
    result = {"model": args.model_package or args.model_path, "threads": args.threads, "load_s": load_s,
              **raw_speed(role)}
    if args.docs > 0:
        if not args.corpus.exists():
            sys.exit(f"{args.corpus}: corpus not found (../shared is needed beside the checkout)")
        roles = {r.strip() for r in args.roles.split(",") if r.strip()} | {"extract"}
        cfg = RunConfig.model_validate({"roles": {r: role.model_dump() for r in roles}})
        t = time.perf_counter()
        result.update(asyncio.run(run_pipeline(procedural_docs(args.corpus, args.docs), cfg, args.max_user_turns)))
        result["roles"] = sorted(roles)
        result["pipeline_s"] = round(time.perf_counter() - t, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for k, v in result.items():
        print(f"{k:20} {v}")


if __name__ == "__main__":
    main()
