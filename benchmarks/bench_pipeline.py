"""Pipeline run throughput against a slow endpoint, and the memory of a 1,000-document run.

    .venv/bin/python benchmarks/bench_pipeline.py [--latency 0.2] [--conc 1,16,64,256] [--docs 1000]

1. Requests per second vs concurrency. The fake OpenAI-compatible server (in a process of its
   own, as a real endpoint would be) answers every request after `--latency` seconds; each document makes exactly one model call (the filter role, with
   the pre-filter off, answering "not multi-step"). With C requests in flight the ideal rate is
   C / latency; the script prints the achieved rate and the ratio, for the bare model client
   (ModelClient.chat under asyncio.gather) and for the whole engine (pipeline graph, checkpoints,
   store commits), so the engine's own cost is visible.
2. Memory of a run of `--docs` documents, fully offline (every role scripted: filter, extraction,
   two verified rollouts, refinement), in a fresh subprocess: RSS after imports, peak RSS, RSS
   at the end, the run directory's size, and documents per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.config import RunConfig  # noqa: E402
from gem_agents.models.hub import ModelHub  # noqa: E402
from gem_agents.run.context import open_run  # noqa: E402
from gem_agents.run.engine import run_documents  # noqa: E402
from gem_agents.testing.fake_openai import FakeOpenAIServer, Faults, text  # noqa: E402
from tools_runtime.records import Document  # noqa: E402

SAMPLES = REPO / "gem_agents" / "samples"
NOT_MULTI = json.dumps({"multi_step": False, "summary": "", "domain": "", "platform": "", "task": ""})


def responder(body: dict) -> object:
    """Every request: a stage-1 answer saying no (so each document costs exactly one call)."""
    return text(NOT_MULTI)


def filter_config(base_url: str, conc: int) -> RunConfig:
    role = {"provider": "openai", "model": "fake-model", "base_url": base_url, "concurrency": conc,
            "max_retries": 0, "timeout_s": 120, "structured_output": "json_schema"}
    return RunConfig.model_validate({"prefilter": False, "cache": False, "rollouts": 1, "refine_rounds": 0,
                                     "roles": {"filter": role},
                                     "concurrency": {"documents": conc, "rollouts": conc}})


def docs_for(n: int, tag: str) -> list[Document]:
    return [Document(id=f"{tag}-{i}", text=f"Document {tag} {i}: a short note about nothing in particular.")
            for i in range(n)]


async def client_rate(cfg: RunConfig, n: int) -> float:
    hub = ModelHub(cfg, use_cache=False)
    client = hub.client("filter")
    assert client is not None
    t0 = time.perf_counter()
    await asyncio.gather(*(client.chat([{"role": "user", "content": f"doc {i}"}], stage="filter")
                           for i in range(n)))
    dt = time.perf_counter() - t0
    hub.close()
    return n / dt


async def engine_rate(cfg: RunConfig, n: int, tag: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        async with open_run(cfg, Path(tmp) / "run") as ctx:
            t0 = time.perf_counter()
            summary = await run_documents(ctx, docs_for(n, tag))
            dt = time.perf_counter() - t0
            calls = ctx.hub.meter.totals()["calls"]
    assert summary.processed == n
    return n / dt, calls


@contextmanager
def fake_server(latency: float, separate: bool) -> Iterator[str]:
    """The fake endpoint's base URL: in a process of its own (like a real server) or in this one."""
    if not separate:
        with FakeOpenAIServer(responder, faults=Faults(latency_s=latency)) as srv:
            yield srv.base_url
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "replies.jsonl"
        script.write_text(json.dumps({"content": NOT_MULTI}) + "\n")
        proc = subprocess.Popen([sys.executable, "-m", "gem_agents.testing.fake_openai", "--port", str(port),
                                 "--script", str(script), "--cycle", "--latency", str(latency)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/models", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def throughput(latency: float, concs: list[int], per_c: int, separate: bool) -> None:
    where = "its own process" if separate else "this process"
    print(f"1. requests/s vs concurrency — fake server ({where}) latency {latency * 1000:.0f} ms, "
          f"{per_c}×C requests per point (min 32)")
    print(f"{'C':>5} {'ideal C/lat':>12} {'client req/s':>13} {'ratio':>6} {'engine req/s':>13} {'ratio':>6}")
    with fake_server(latency, separate) as base_url:
        for c in concs:
            n = max(32, per_c * c)
            cfg = filter_config(base_url, c)
            ideal = c / latency
            rc = asyncio.run(client_rate(cfg, n))
            re_, calls = asyncio.run(engine_rate(cfg, n, f"c{c}"))
            assert calls == n, (calls, n)  # one endpoint call per document, none cached
            print(f"{c:>5} {ideal:>12.1f} {rc:>13.1f} {rc / ideal:>6.2f} {re_:>13.1f} {re_ / ideal:>6.2f}",
                  flush=True)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(n: int) -> None:
    """Run `n` offline documents in this process and print one JSON line of figures."""
    texts = sorted(SAMPLES.glob("*.md"))
    docs = [Document(id=f"{p.stem}-{i}", text=p.read_text(encoding="utf-8"), source=p.name)
            for i in range(n) for p in [texts[i % len(texts)]]]
    base = rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        async def go():
            async with open_run(RunConfig(), Path(tmp) / "run") as ctx:
                t0 = time.perf_counter()
                s = await run_documents(ctx, docs)
                return s, time.perf_counter() - t0, ctx.store.counts()

        summary, dt, counts = asyncio.run(go())
        db_mb = sum(f.stat().st_size for f in (Path(tmp) / "run").iterdir()) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"docs": n, "processed": summary.processed, "seconds": round(dt, 1),
                      "docs_per_s": round(n / dt, 2), "rss_before_mb": round(base, 1), "peak_rss_mb": round(peak, 1),
                      "rss_after_mb": round(rss_mb(), 1), "run_dir_mb": round(db_mb, 1), "counts": counts}))


def memory(n: int) -> None:
    print(f"\n2. memory of a {n}-document offline run (fresh process, every role scripted)")
    res = subprocess.run([sys.executable, __file__, "--memory-child", str(n)], capture_output=True, text=True,
                         cwd=REPO)
    if res.returncode != 0:
        print(res.stderr[-2000:])
        raise SystemExit(1)
    fig = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"   documents {fig['processed']} in {fig['seconds']} s ({fig['docs_per_s']} docs/s)")
    print(f"   RSS after imports {fig['rss_before_mb']} MB → peak {fig['peak_rss_mb']} MB "
          f"(end {fig['rss_after_mb']} MB); run directory {fig['run_dir_mb']} MB")
    print(f"   stored: {fig['counts']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--conc", default="1,16,64,256")
    ap.add_argument("--per-c", type=int, default=4, help="requests per point = per_c × C")
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--in-process-server", action="store_true", help="serve from a thread of this process")
    ap.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    if not args.skip_throughput:
        throughput(args.latency, [int(c) for c in args.conc.split(",")], args.per_c, not args.in_process_server)
    if not args.skip_memory:
        memory(args.docs)


if __name__ == "__main__":
    main()
