"""Throughput against a vLLM-like endpoint: verified trajectories per hour, and what the engine costs.

    .venv/bin/python benchmarks/bench_throughput.py [--quick] [--json] [--conc 16,64,256,512]
        [--time-scale 0.1] [--warmup 10] [--window 20] [--profile-c 64] [--ray-workers 1,2]

The endpoint is `gem_agents.testing.fake_vllm` in a process of its own: one modeled vLLM server
(Llama-3.1-8B on one H100: continuous batching, chunked prefill, per-token speed falling with the
sequences in flight), answering every role of the full pipeline — relevance, extraction, tasks,
user, assistant — from the recorded replies of tests/data/recorded (11 GNOME Help pages, 3
negatives; their texts come from ../shared/data). `--time-scale` multiplies every modeled duration
(0.1: a ten times faster endpoint, roughly a head node's eight servers behind one balancer).

1. Calibration: `gem run` on one copy of the recorded documents, to the end: model calls,
   tokens and verified trajectories (calls and tokens per verified trajectory), per-stage time.
2. For each C: `gem run` (every role on the endpoint, documents = rollouts = endpoint concurrency
   = C) on many copies of the documents, measured over a window after a warm-up — model calls/s,
   the engine process's CPU per call, mean stage times; then the bare client (ModelClient over
   ChatOpenAI, C workers, nothing else) replaying the very requests the engine sent in its window,
   at the same C, through the same endpoint: the limit. ratio = engine / bare.
   Verified trajectories per hour = engine calls/s × 3600 / calls per verified trajectory.
   Prefix caching is off in the endpoint for these points, so the replay is not favoured by cache
   hits the engine could not have had (the calibration reports the hit rate with it on).
3. Where the engine's CPU goes: cProfile of the engine in-process at `--profile-c`, top functions
   and time per package.
4. `--ray-workers 1,2`: calls/s of `gem run --engine ray` with that many local workers (same total C).
5. `--steady C:COPIES`: `gem run` on COPIES copies to the end; verified trajectories per hour counted.
6. `--tau2 PATH/bin/tau2`: τ²-bench's own runner (install it from its source in a venv of its own; it is
   never a dependency of this project) and `gem eval` on τ²'s mock tasks, same endpoint, same C, every
   simulated user stopping after 3 turns: simulations per hour side by side.

`--json` prints one object: {"points": [{"c", "engine", "bare", "ratio", ...}], "verified_per_hour",
"tokens_per_verified", ...}. Figures vary with the machine's load, which is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

RECORDED = REPO / "tests" / "data" / "recorded" / "docs"
CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
GEM = [sys.executable, "-c", "from gem_agents.cli import main; main()"]
TICK = os.sysconf("SC_CLK_TCK")
CLIENT = {"http_client": "direct"}  # the roles' http_client (--client), the same for the engine and the bare client


# ---------------------------------------------------------------------------------------------------------
# plumbing


def load() -> str:
    """The 1-minute load average and the core count, as printed beside every figure."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children)."""
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK


def http_json(url: str, body: dict | None = None) -> dict[str, Any]:
    """GET (or POST `body` to) a URL of the fake endpoint."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


class Endpoint:
    """The fake vLLM server as a subprocess."""

    def __init__(self, time_scale: float, prefix_caching: bool, extra: list[str] | None = None):
        source = extra if extra else ["--recorded", str(RECORDED)]
        self.time_scale = time_scale
        args = [sys.executable, "-m", "gem_agents.testing.fake_vllm", "--port", "0", *source,
                "--time-scale", str(time_scale)] + ([] if prefix_caching else ["--no-prefix-caching"])
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env={**os.environ, "PYTHONPATH": str(REPO)})
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("serving on "):
            self.proc.kill()
            raise SystemExit(f"fake_vllm did not start: {line!r}")
        self.base_url = line.split()[-1]
        self.root = self.base_url.rsplit("/v1", 1)[0]

    def stats(self) -> dict[str, Any]:
        """The server's counters."""
        return http_json(self.root + "/stats")

    def log_to(self, path: Path | None) -> None:
        """Start (or stop, with None) logging the bodies of the requests completed from now on."""
        # On completion, not on arrival: the replay then holds the mix of calls the engine's window counted
        # (at C >= 256 the calls a window starts are mostly not those it completes, ~25 s of queue apart).
        http_json(self.root + "/log", {"path": str(path) if path else None, "on": "done"})

    def close(self) -> None:
        """Stop the server."""
        self.proc.terminate()
        self.proc.wait(timeout=10)


def corpus(path: Path, copies: int) -> int:
    """The recorded documents' corpus lines, `copies` times with distinct ids; returns the line count."""
    ids = {json.loads(p.read_text(encoding="utf-8"))["doc_id"] for p in RECORDED.glob("*.json")}
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["id"] in ids]
    with path.open("w", encoding="utf-8") as fh:
        for k in range(copies):
            for r in rows:
                fh.write(json.dumps({**r, "id": f"{r['id']}~{k}"}) + "\n")
    return copies * len(rows)


def run_config(path: Path, base_url: str, c: int) -> Path:
    """Every model role on the endpoint; documents, rollouts and the endpoint's limit all C."""
    role = {"provider": "openai", "base_url": base_url, "model": "recorded-replies", "max_retries": 0,
            "concurrency": c, "timeout_s": 900, **CLIENT}
    cfg = {"pipeline": "full", "seed": 0, "rollouts": 1, "tasks_per_env": 2, "refine_rounds": 0,
           "prefilter": False, "cache": False, "concurrency": {"documents": c, "rollouts": c},
           "roles": {"filter": role, "extract": role, "task": role, "user": role, "assistant": role,
                     "tool_env": {"provider": "scripted"}, "refine": {"provider": "scripted"}}}
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def gem_run(cfg: Path, src: Path, out: Path, log: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """`gem run` as a user runs it, in its own process."""
    return subprocess.Popen([*GEM, "run", str(cfg), "--input", str(src), "--out", str(out), "--json", "-q",
                             "--no-report", "--json-log", str(log), *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def events(log: Path) -> list[dict[str, Any]]:
    """The JSON-lines events of a run (a killed run's last line may be cut)."""
    out = []
    for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def stage_means(evs: list[dict[str, Any]], t0: float = 0.0, t1: float = math.inf) -> dict[str, float]:
    """Mean seconds per stage over the `stage` events logged between t0 and t1 (wall clock)."""
    acc: dict[str, list[float]] = {}
    for e in evs:
        if e.get("event") == "stage" and e.get("seconds") is not None and t0 <= e["t"] <= t1:
            acc.setdefault(e["stage"], []).append(float(e["seconds"]))
    return {k: round(sum(v) / len(v), 3) for k, v in acc.items()}


def wait_started(ep: Endpoint, proc: subprocess.Popen, before: int, timeout: float = 240,
                 log: Path | None = None) -> None:
    """Until the process has made its first model calls (with a run log: until a stage or document ended)."""
    t_end = time.monotonic() + timeout

    def started() -> bool:
        if log is not None:
            return any(e.get("event") in ("stage", "doc") for e in events(log))
        return ep.stats()["completed"] > before

    while not started():
        if proc.poll() is not None:
            raise SystemExit(f"the measured process exited early: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        if time.monotonic() > t_end:
            raise SystemExit("the measured process made no model call in time")
        time.sleep(0.2)


def window(ep: Endpoint, pid: int, warmup: float, seconds: float) -> dict[str, Any]:
    """Calls/s, tokens/s and the process's CPU per call over `seconds` after `warmup`."""
    time.sleep(warmup)
    s0, c0, t0, w0 = ep.stats(), cpu_s(pid), time.monotonic(), time.time()
    srv0 = cpu_s(ep.proc.pid)
    time.sleep(seconds)
    s1, c1, t1, w1 = ep.stats(), cpu_s(pid), time.monotonic(), time.time()
    srv1 = cpu_s(ep.proc.pid)
    calls = s1["completed"] - s0["completed"]
    dt = t1 - t0
    return {"calls": calls, "calls_s": round(calls / dt, 2), "seconds": round(dt, 2),
            "cpu_us_per_call": round((c1 - c0) / max(1, calls) * 1e6), "cpu_share": round((c1 - c0) / dt, 2),
            "server_cpu_share": round((srv1 - srv0) / dt, 2),
            # the share of the window the modeled GPU was computing: near 1, the endpoint is the limit
            "gpu_busy_share": round((s1["busy_s"] - s0["busy_s"]) * ep.time_scale / dt, 2),
            "tokens_s": round((s1["prompt_tokens"] + s1["output_tokens"] - s0["prompt_tokens"]
                               - s0["output_tokens"]) / dt),
            "mean_latency_s": round((s1["latency_s"] - s0["latency_s"]) / max(1, calls), 3),
            "wall": (w0, w1), "load": load()}


def stop(proc: subprocess.Popen) -> None:
    """Interrupt a measured process (Ctrl-C: Ray shuts its local cluster down), then kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------------------
# 1. calibration


def calibrate(tmp: Path, time_scale: float) -> dict[str, Any]:
    """One copy of the documents to the end, prefix caching on: calls, tokens, verified, stage times."""
    ep = Endpoint(time_scale, prefix_caching=True)
    try:
        src = tmp / "cal.jsonl"
        docs = corpus(src, 1)
        cfg = run_config(tmp / "cal.yaml", ep.base_url, 16)
        t0 = time.perf_counter()
        proc = gem_run(cfg, src, tmp / "cal_run", tmp / "cal.log")
        out, err = proc.communicate(timeout=1800)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"calibration run failed ({proc.returncode}): {err[-2000:]}")
        st = ep.stats()
    finally:
        ep.close()
    summary = json.loads(out.strip().splitlines()[-1])
    verified = summary["totals"]["trajectories"]["original"]["verified"]
    failed = summary["totals"]["trajectories"]["original"]["failed"]
    if st["responder_misses"] or st["responder_errors"]:
        raise SystemExit(f"the recorded replies did not cover the run: {st['responder_misses']} misses")
    tokens = st["prompt_tokens"] + st["output_tokens"]
    return {"documents": docs, "segments": summary["this_run"]["processed"], "status": summary["this_run"]["status"],
            "calls": st["completed"], "verified": verified, "failed_trajectories": failed,
            "prompt_tokens": st["prompt_tokens"], "output_tokens": st["output_tokens"],
            "prefix_cache_hit": round(st["cached_tokens"] / max(1, st["prompt_tokens"]), 3),
            "calls_per_verified": round(st["completed"] / max(1, verified), 2),
            "tokens_per_verified": round(tokens / max(1, verified)),
            "seconds": round(seconds, 1), "stage_s": stage_means(events(tmp / "cal.log")), "load": load()}


# ---------------------------------------------------------------------------------------------------------
# 2. engine vs bare at each C


def engine_point(ep: Endpoint, tmp: Path, c: int, warmup: float, seconds: float, log_path: Path,
                 extra: tuple[str, ...] = (), env: dict | None = None) -> dict[str, Any]:
    """`gem run` at C over many documents; the requests of its window are logged for the replay."""
    src = tmp / f"docs_c{c}.jsonl"
    corpus(src, max(4, math.ceil((3 * c + 60 * 40) / 14)))
    cfg = run_config(tmp / f"c{c}.yaml", ep.base_url, c)
    log = tmp / f"c{c}_{len(extra)}.log"
    before = ep.stats()["completed"]
    proc = gem_run(cfg, src, tmp / f"run_c{c}_{len(extra)}_{time.time_ns()}", log, *extra, env=env)
    try:
        wait_started(ep, proc, before, log=log)
        time.sleep(warmup)
        ep.log_to(log_path)
        res = window(ep, proc.pid, 0.0, seconds)
        ep.log_to(None)
    finally:
        stop(proc)
    w0, w1 = res.pop("wall")
    res["stage_s"] = stage_means(events(log), w0 - 60, w1)
    res["documents_done"] = sum(1 for e in events(log) if e.get("event") == "doc")
    return res


def bare_point(ep: Endpoint, requests: Path, c: int, warmup: float, seconds: float) -> dict[str, Any]:
    """The bare client at C replaying `requests` (cycled) through the endpoint."""
    before = ep.stats()["completed"]
    proc = subprocess.Popen([sys.executable, __file__, "--bare-child", str(requests), "--c", str(c),
                             "--base-url", ep.base_url, "--client", CLIENT["http_client"]], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_started(ep, proc, before)
        res = window(ep, proc.pid, warmup, seconds)
    finally:
        stop(proc)
    res.pop("wall")
    return res


def bare_child(requests: Path, c: int, base_url: str) -> None:
    """C workers sending the logged requests through ModelClient until killed."""
    from gem_agents.config import RunConfig
    from gem_agents.models.hub import ModelHub

    bodies = [json.loads(line) for line in requests.read_text(encoding="utf-8").splitlines() if line.strip()]
    role = {"provider": "openai", "base_url": base_url, "model": "recorded-replies", "max_retries": 0,
            "concurrency": c, "timeout_s": 900, **CLIENT}
    cfg = RunConfig.model_validate({"cache": False, "roles": {"assistant": role}})

    async def go() -> None:
        client = ModelHub(cfg, use_cache=False).client("assistant")
        assert client is not None
        it = iter(range(10**12))

        async def worker() -> None:
            for i in it:
                b = bodies[i % len(bodies)]
                fmt = (b.get("response_format") or {}).get("json_schema") or {}
                await client.chat(b["messages"], tools=b.get("tools"), tool_choice=b.get("tool_choice"),
                                  json_schema=fmt.get("schema"), schema_name=fmt.get("name") or "output")

        await asyncio.gather(*(worker() for _ in range(c)))

    asyncio.run(go())


# ---------------------------------------------------------------------------------------------------------
# 3. the profile


PACKAGES = ("langgraph", "langchain_core", "langchain_openai", "openai", "httpx", "httpcore", "h11", "anyio",
            "pydantic", "pydantic_core", "asyncio", "sqlite3", "json", "gem_agents", "graphs", "tools_runtime",
            "jsonschema", "referencing", "regex", "ssl", "selectors", "typing", "copy", "uuid", "ormsgpack")


def package_of(filename: str) -> str:
    """The package a profiled function belongs to (site-packages name, our layers, or the stdlib module)."""
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins"
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    for layer in ("gem_agents", "graphs", "tools_runtime"):
        if layer in parts:
            return layer
    return "stdlib:" + Path(filename).stem


def profile_child(c: int, base_url: str, warmup: float, seconds: float) -> None:
    """The engine in this process at C, profiled for `seconds` after `warmup`; prints one JSON object."""
    from gem_agents.config import RunConfig
    from gem_agents.ingest import IngestProblem, iter_documents
    from gem_agents.run.context import open_run
    from gem_agents.run.engine import run_documents

    with tempfile.TemporaryDirectory(prefix="bench-tp-prof-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "docs.jsonl"
        corpus(src, max(4, math.ceil((3 * c + 60 * 40) / 14)))
        cfg = RunConfig.model_validate(yaml.safe_load(run_config(tmp / "c.yaml", base_url, c).read_text()))
        docs = [d for d in iter_documents(src, cfg.input) if not isinstance(d, IngestProblem)]
        prof = cProfile.Profile(time.process_time)  # CPU time: a loaded machine must not inflate it
        out: dict[str, Any] = {}

        async def go() -> None:
            async with open_run(cfg, tmp / "run") as ctx:
                task = asyncio.create_task(run_documents(ctx, docs))
                await asyncio.sleep(warmup)
                calls0, cpu0, t0 = ctx.hub.meter.totals()["calls"], time.process_time(), time.perf_counter()
                prof.enable()
                await asyncio.sleep(seconds)
                prof.disable()
                out["calls"] = ctx.hub.meter.totals()["calls"] - calls0
                out["cpu_s"] = time.process_time() - cpu0
                out["seconds"] = time.perf_counter() - t0
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 — the run is thrown away
                    pass

        asyncio.run(go())
    if os.environ.get("BENCH_PROFILE_OUT"):
        prof.dump_stats(os.environ["BENCH_PROFILE_OUT"])
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())  # tottime
    by_pkg: dict[str, float] = {}
    for (filename, _, _), v in st.stats.items():
        pkg = package_of(filename)
        by_pkg[pkg] = by_pkg.get(pkg, 0.0) + v[2]
    calls = max(1, out["calls"])
    top = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:25]
    cum = sorted(((k, v) for k, v in st.stats.items() if package_of(k[0]) in ("gem_agents", "graphs",
                                                                                "tools_runtime")),
                 key=lambda kv: kv[1][3], reverse=True)[:15]
    print(json.dumps({
        "c": c, "calls": out["calls"], "seconds": round(out["seconds"], 1), "cpu_s": round(out["cpu_s"], 2),
        "cpu_us_per_call_profiled": round(out["cpu_s"] / calls * 1e6),
        "by_package_us_per_call": {k: round(v / calls * 1e6) for k, v in
                                   sorted(by_pkg.items(), key=lambda kv: -kv[1])[:16]},
        "profiled_us_per_call": round(total / calls * 1e6),
        "top_tottime": [{"fn": f"{package_of(k[0])}:{Path(k[0]).name}:{k[1]}:{k[2]}",
                         "us_per_call": round(v[2] / calls * 1e6)} for k, v in top],
        "top_cumtime_ours": [{"fn": f"{package_of(k[0])}:{Path(k[0]).name}:{k[1]}:{k[2]}",
                              "us_per_call": round(v[3] / calls * 1e6)} for k, v in cum],
        "load": load()}))


def cpu_child(c: int, base_url: str, copies: int, requests: Path | None) -> None:
    """CPU seconds per model call of the engine in this process over `copies` copies, run to the end
    (setup and imports excluded), then of the bare client replaying `requests` once; one JSON line."""
    from gem_agents.config import RunConfig
    from gem_agents.ingest import IngestProblem, iter_documents
    from gem_agents.models.hub import ModelHub
    from gem_agents.run.context import open_run
    from gem_agents.run.engine import run_documents

    out: dict[str, Any] = {"c": c, "copies": copies}
    with tempfile.TemporaryDirectory(prefix="bench-tp-cpu-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "docs.jsonl"
        corpus(src, copies)
        cfg = RunConfig.model_validate(yaml.safe_load(run_config(tmp / "c.yaml", base_url, c).read_text()))
        docs = [d for d in iter_documents(src, cfg.input) if not isinstance(d, IngestProblem)]

        async def engine() -> None:
            async with open_run(cfg, tmp / "run") as ctx:
                prof = cProfile.Profile(time.process_time) if os.environ.get("BENCH_PROFILE_OUT") else None
                cpu0, t0 = time.process_time(), time.perf_counter()
                if prof is not None:
                    prof.enable()
                summary = await run_documents(ctx, docs)
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(os.environ["BENCH_PROFILE_OUT"])
                out["engine_cpu_s"] = time.process_time() - cpu0
                out["engine_s"] = time.perf_counter() - t0
                out["engine_calls"] = ctx.hub.meter.totals()["calls"]
                out["status"] = summary.status

        asyncio.run(engine())
    if requests is not None:
        bodies = [json.loads(line) for line in requests.read_text(encoding="utf-8").splitlines() if line.strip()]

        async def bare() -> None:
            hub = ModelHub(cfg, use_cache=False)
            client = hub.client("assistant")
            assert client is not None
            sem = asyncio.Semaphore(c)

            async def one(b: dict[str, Any]) -> None:
                fmt = (b.get("response_format") or {}).get("json_schema") or {}
                async with sem:
                    await client.chat(b["messages"], tools=b.get("tools"), tool_choice=b.get("tool_choice"),
                                      json_schema=fmt.get("schema"), schema_name=fmt.get("name") or "output")

            await one(bodies[0])  # the client's first call builds its HTTP pool: not a per-call cost
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(b) for b in bodies))
            out["bare_cpu_s"] = time.process_time() - cpu0
            out["bare_s"] = time.perf_counter() - t0
            out["bare_calls"] = len(bodies)
            hub.close()

        asyncio.run(bare())
    out["engine_us_per_call"] = round(out["engine_cpu_s"] / max(1, out["engine_calls"]) * 1e6)
    if "bare_calls" in out:
        out["bare_us_per_call"] = round(out["bare_cpu_s"] / max(1, out["bare_calls"]) * 1e6)
    out["load"] = load()
    print(json.dumps(out))


def cpu_cost(ep: Endpoint, c: int, copies: int, requests: Path | None, tree: Path = REPO) -> dict[str, Any]:
    """Run the CPU child against the endpoint, importing the code of source tree `tree`."""
    args = [sys.executable, str(tree / "benchmarks" / Path(__file__).name), "--cpu-child", "--c", str(c),
            "--base-url", ep.base_url, "--copies", str(copies), "--client", CLIENT["http_client"]]
    if requests is not None:
        args += ["--requests", str(requests)]
    res = subprocess.run(args, cwd=tree, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)},
                         timeout=1800)
    if res.returncode != 0:
        raise SystemExit(f"cpu child failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def cpu_compare(spec: str, time_scale: float) -> None:
    """`--cpu C:COPIES[:TREES]`: CPU per model call of each tree's engine on one endpoint, each tree twice,
    interleaved (a, b, a, b) so that a changing load falls on all alike; one JSON line per run."""
    c, copies, *rest = spec.split(":", 2)
    trees = [Path(t) for t in rest[0].split(",")] if rest else [REPO]
    ep = Endpoint(time_scale, prefix_caching=False)
    try:
        for _ in range(2):
            for tree in trees:
                print(json.dumps({"tree": str(tree), **cpu_cost(ep, int(c), int(copies), None, tree)}), flush=True)
    finally:
        ep.close()


def profile(ep: Endpoint, c: int, warmup: float, seconds: float) -> dict[str, Any]:
    """Run the profile child against the endpoint."""
    res = subprocess.run([sys.executable, __file__, "--profile-child", "--c", str(c), "--base-url", ep.base_url,
                          "--client", CLIENT["http_client"],
                          "--warmup", str(warmup), "--window", str(seconds)], cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=900)
    if res.returncode != 0:
        raise SystemExit(f"profile child failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------
# 5. τ²-bench side by side


TAU2_TASKS = REPO.parent / "shared" / "data" / "bench" / "tau2" / "mock" / "tasks.json"


def timed_run(args: list[str], ep: Endpoint, env: dict | None = None, cwd: Path = REPO) -> dict[str, Any]:
    """Run a command to the end; its wall time, CPU (with children), and the endpoint's calls while it ran."""
    before = ep.stats()
    t0 = time.perf_counter()
    # Output to files, not pipes: a chatty runner would fill a pipe nobody reads until it exits.
    out_f, err_f = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(args, cwd=cwd, stdout=out_f, stderr=err_f, text=True, env={**os.environ, **(env or {})})
    first = last = None
    seen = before["completed"]
    while proc.poll() is None:
        now = ep.stats()["completed"]
        if now != seen:
            first = first or time.perf_counter()
            last, seen = time.perf_counter(), now
        time.sleep(0.1)
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    after = ep.stats()
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2),
            "active_s": round((last or t0) - (first or t0), 2), "calls": after["completed"] - before["completed"],
            "stdout": out, "stderr": err[-3000:]}


def tau2_compare(tau2: Path, c: int, trials: int, time_scale: float, tmp: Path) -> dict[str, Any]:
    """τ²'s own runner and `gem eval` on τ²'s mock tasks, one endpoint, the same concurrency."""
    ep = Endpoint(time_scale, prefix_caching=True, extra=["--user-turns", "3"])
    try:
        llm_args = json.dumps({"api_base": ep.base_url, "api_key": "not-needed", "temperature": 0})
        t2 = timed_run([str(tau2), "run", "--domain", "mock", "--agent-llm", "openai/fake-model", "--agent-llm-args",
                        llm_args, "--user-llm", "openai/fake-model", "--user-llm-args", llm_args, "--num-trials",
                        str(trials), "--max-concurrency", str(c), "--save-to", str(tmp / "tau2_results")], ep,
                       env={"TAU2_DATA_DIR": str(Path(tau2).resolve().parents[2] / "tau2src" / "data")
                            if not os.environ.get("TAU2_DATA_DIR") else os.environ["TAU2_DATA_DIR"]},
                       cwd=tmp)
        role = {"provider": "openai", "model": "fake-model", "base_url": ep.base_url, "max_retries": 0,
                "concurrency": c, "timeout_s": 900, **CLIENT}
        cfg = tmp / "eval.yaml"
        cfg.write_text(yaml.safe_dump({"seed": 0, "cache": False, "roles": {"user": role, "assistant": role}}))
        gm = timed_run([*GEM, "eval", str(TAU2_TASKS), "--config", str(cfg), "--trials", str(trials),
                        "--concurrency", str(c), "--out", str(tmp / "gem_eval"), "--json"], ep,
                       env={"PYTHONPATH": str(REPO)})
    finally:
        ep.close()
    tasks = len(json.loads(TAU2_TASKS.read_text(encoding="utf-8")))
    results = tmp / "gem_eval" / "results.jsonl"  # one row per simulated trial
    gem_sims = len(results.read_text(encoding="utf-8").splitlines()) if gm["rc"] == 0 and results.exists() else 0
    t2_sims, t2_infra = tasks * trials, None
    t2_file = tmp / "tau2_results" / "results.json"
    if t2_file.exists():
        sims = json.loads(t2_file.read_text(encoding="utf-8")).get("simulations") or []
        t2_infra = sum(1 for x in sims if x.get("termination_reason") == "infrastructure_error")
        t2_sims = len(sims) - t2_infra
    out = {"c": c, "trials": trials, "time_scale": time_scale, "load": load(), "tau2_infrastructure_errors": t2_infra}
    for name, r, sims in (("tau2", t2, t2_sims), ("gem_eval", gm, gem_sims)):
        out[name] = {"rc": r["rc"], "simulations": sims, "calls": r["calls"], "wall_s": r["wall_s"],
                     "active_s": r["active_s"],
                     "sims_per_hour": round(sims * 3600 / r["active_s"]) if r["active_s"] else 0,
                     "sims_per_hour_wall": round(sims * 3600 / r["wall_s"]) if r["wall_s"] else 0,
                     "calls_s": round(r["calls"] / r["active_s"], 1) if r["active_s"] else 0,
                     "error": r["stderr"][-500:] if r["rc"] else ""}
    return out


# ---------------------------------------------------------------------------------------------------------
# main


def main() -> None:
    """Run the benchmark and print one table (or one JSON object)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short windows (the whole run under 5 minutes)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--conc", default="16,64,256,512")
    ap.add_argument("--client", choices=("direct", "langchain"), default="direct",
                    help="the openai roles' http_client, for the engine and the bare client alike")
    ap.add_argument("--time-scale", type=float, default=0.1)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--window", type=float, default=None)
    ap.add_argument("--profile-c", type=int, default=64, help="0: no profile")
    ap.add_argument("--ray-workers", default="", help="e.g. 1,2: also `gem run --engine ray` at --ray-c")
    ap.add_argument("--ray-c", type=int, default=64)
    ap.add_argument("--steady", default="", help="C:COPIES — also `gem run` COPIES copies of the documents to the end "
                    "(prefix caching off) and count verified trajectories per hour directly")
    ap.add_argument("--cpu", default="", help="C:COPIES[:TREE,TREE...] — only the engine's CPU per model call, "
                    "run to the end, for each source tree (e.g. a `git archive` of another commit), interleaved twice")
    ap.add_argument("--tau2", type=Path, default=None, help="the `tau2` command of a τ²-bench install (its own venv)")
    ap.add_argument("--tau2-c", type=int, default=16)
    ap.add_argument("--tau2-trials", type=int, default=4)
    ap.add_argument("--bare-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cpu-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--copies", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--requests", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--c", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--base-url", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    CLIENT["http_client"] = args.client
    warmup = args.warmup if args.warmup is not None else (4.0 if args.quick else 15.0)
    seconds = args.window if args.window is not None else (8.0 if args.quick else 30.0)
    if args.bare_child:
        bare_child(args.bare_child, args.c, args.base_url)
        return
    if args.cpu_child:
        cpu_child(args.c, args.base_url, args.copies, args.requests)
        return
    if args.profile_child:
        profile_child(args.c, args.base_url, warmup, seconds)
        return
    if not CORPUS.exists():
        raise SystemExit(f"{CORPUS}: not found (the recorded documents' texts live in ../shared/data)")
    if args.cpu:
        cpu_compare(args.cpu, args.time_scale)
        return
    say = (lambda *a, **k: None) if args.json else (lambda *a, **k: print(*a, **k, flush=True))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    result: dict[str, Any] = {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"), "time_scale": args.time_scale,
                              "warmup_s": warmup, "window_s": seconds, "points": []}
    with tempfile.TemporaryDirectory(prefix="bench-tp-") as tmp_name:
        tmp = Path(tmp_name)
        say(f"commit {commit}, fake vLLM (8B on one H100) at time scale {args.time_scale}, {load()}")
        cal = calibrate(tmp, args.time_scale)
        result["calibration"] = cal
        say(f"calibration: {cal['segments']} documents {cal['status']} → {cal['verified']} verified trajectories "
            f"({cal['failed_trajectories']} failed), {cal['calls']} calls, {cal['calls_per_verified']} calls and "
            f"{cal['tokens_per_verified']} tokens per verified trajectory; prefix cache hit {cal['prefix_cache_hit']:.0%}"
            f"; stage s {cal['stage_s']}; {cal['seconds']} s; {cal['load']}")
        ep = Endpoint(args.time_scale, prefix_caching=False)
        try:
            say(f"\n{'C':>5} {'engine/s':>9} {'bare/s':>8} {'ratio':>6} {'eng µs/call':>12} {'bare µs/call':>13} "
                f"{'lat s':>6} {'verified/h':>11}  stage s (filter/extract/tasks/simulate)   load")
            for c in [int(x) for x in args.conc.split(",") if x]:
                reqs = tmp / f"requests_c{c}.jsonl"
                eng = engine_point(ep, tmp, c, warmup, seconds, reqs)
                bare = bare_point(ep, reqs, c, min(warmup, 5.0), seconds)
                ratio = eng["calls_s"] / bare["calls_s"] if bare["calls_s"] else 0.0
                vph = eng["calls_s"] * 3600 / cal["calls_per_verified"]
                result["points"].append({"c": c, "engine": eng["calls_s"], "bare": bare["calls_s"],
                                         "ratio": round(ratio, 2), "verified_per_hour": round(vph),
                                         "engine_detail": eng, "bare_detail": bare})
                st = eng["stage_s"]
                say(f"{c:>5} {eng['calls_s']:>9.1f} {bare['calls_s']:>8.1f} {ratio:>6.2f} "
                    f"{eng['cpu_us_per_call']:>12,} {bare['cpu_us_per_call']:>13,} {eng['mean_latency_s']:>6.2f} "
                    f"{vph:>11,.0f}  {st.get('filter', 0):.2f}/{st.get('extract', 0):.2f}/{st.get('tasks', 0):.2f}/"
                    f"{st.get('simulate', 0):.2f}   GPU busy {eng['gpu_busy_share']:.0%} / {bare['gpu_busy_share']:.0%}"
                    f"   {eng['load']}")
            for n in [int(x) for x in args.ray_workers.split(",") if x]:
                reqs = tmp / f"requests_ray{n}.jsonl"
                # The same total C: each worker runs C / n documents with its own endpoint limit of C / n.
                res = engine_point(ep, tmp, max(1, args.ray_c // n), warmup + 10, seconds, reqs,
                                   ("--engine", "ray"), env={"GEM_RAY_WORKERS": str(n)})
                result.setdefault("ray", []).append({"workers": n, "c": args.ray_c, "calls_s": res["calls_s"],
                                                     "driver_cpu_us_per_call": res["cpu_us_per_call"],
                                                     "load": res["load"]})
                say(f"ray, {n} worker(s), C={args.ray_c} in all: {res['calls_s']:.1f} calls/s, mean latency "
                    f"{res['mean_latency_s']:.2f} s ({res['load']})")
            if args.profile_c:
                prof = profile(ep, args.profile_c, warmup, seconds)
                result["profile"] = prof
                say(f"\nprofile of the engine in-process at C={prof['c']}: {prof['calls']} calls in {prof['seconds']} s, "
                    f"CPU {prof['cpu_us_per_call_profiled']:,} µs per call under cProfile ({prof['load']})")
                say("  per package (µs per call, own time): " + ", ".join(
                    f"{k} {v:,}" for k, v in prof["by_package_us_per_call"].items()))
                say("  top functions by own time (µs per call):")
                for row in prof["top_tottime"][:15]:
                    say(f"    {row['us_per_call']:>7,}  {row['fn']}")
                say("  our functions by cumulative time (µs per call):")
                for row in prof["top_cumtime_ours"][:10]:
                    say(f"    {row['us_per_call']:>7,}  {row['fn']}")
        finally:
            ep.close()
        if args.steady:
            c, copies = (int(x) for x in args.steady.split(":"))
            # Prefix caching off: copies of one text would hit each other's prefixes, which a real corpus does not.
            ep = Endpoint(args.time_scale, prefix_caching=False)
            try:
                src = tmp / "steady.jsonl"
                n = corpus(src, copies)
                r = timed_run([*GEM, "run", str(run_config(tmp / "steady.yaml", ep.base_url, c)), "--input", str(src),
                               "--out", str(tmp / "steady_run"), "--json", "-q", "--no-report"], ep,
                              env={"PYTHONPATH": str(REPO)})
                st = ep.stats()
            finally:
                ep.close()
            summary = json.loads(r["stdout"].strip().splitlines()[-1]) if r["rc"] == 0 else {}
            verified = ((summary.get("totals") or {}).get("trajectories") or {}).get("original", {}).get("verified", 0)
            result["steady"] = {"c": c, "documents": n, "verified": verified, "calls": r["calls"],
                                "active_s": r["active_s"], "wall_s": r["wall_s"],
                                "verified_per_hour": round(verified * 3600 / r["active_s"]) if r["active_s"] else 0,
                                "calls_s": round(r["calls"] / r["active_s"], 1) if r["active_s"] else 0,
                                # the share of the run the modeled GPU was computing (1.0: the endpoint is the limit)
                                "gpu_busy_share": round(st["busy_s"] * args.time_scale / r["active_s"], 2)
                                if r["active_s"] else 0,
                                "prefix_cache_hit": round(st["cached_tokens"] / max(1, st["prompt_tokens"]), 3),
                                "rc": r["rc"], "load": load()}
            sd = result["steady"]
            say(f"\nsteady run to the end: {n} documents at C={c}, prefix caching off: {verified} verified in "
                f"{sd['active_s']} s of calls → {sd['verified_per_hour']:,} verified trajectories/h, {sd['calls_s']} "
                f"calls/s, modeled GPU busy {sd['gpu_busy_share']:.0%} "
                f"({sd['load']})" + (f" — FAILED: {r['stderr'][-500:]}" if r["rc"] else ""))
        if args.tau2:
            t2 = tau2_compare(args.tau2, args.tau2_c, args.tau2_trials, args.time_scale, tmp)
            result["tau2"] = t2
            say(f"\nτ² mock domain, {args.tau2_trials} trials, C={args.tau2_c}, every user stops after 3 turns "
                f"({t2['load']}; τ² infrastructure errors, not counted: {t2['tau2_infrastructure_errors']}):")
            for name in ("tau2", "gem_eval"):
                r = t2[name]
                say(f"  {name:<9} {r['simulations']} simulations, {r['calls']} calls in {r['active_s']} s of calls "
                    f"({r['wall_s']} s with start-up): {r['sims_per_hour']:,} simulations/h "
                    f"({r['sims_per_hour_wall']:,} with start-up), {r['calls_s']} calls/s"
                    + (f" — FAILED rc={r['rc']}: {r['error']}" if r["rc"] else ""))
    pts = result["points"]
    best = max(pts, key=lambda p: p["engine"]) if pts else None
    result["verified_per_hour"] = best["verified_per_hour"] if best else 0
    result["tokens_per_verified"] = result["calibration"]["tokens_per_verified"]
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    if best:
        say(f"\nbest: {best['verified_per_hour']:,} verified trajectories per hour at C={best['c']} "
            f"(time scale {args.time_scale}); {result['tokens_per_verified']:,} tokens per verified trajectory")


if __name__ == "__main__":
    main()
