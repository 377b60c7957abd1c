"""`gem run CONFIG --input FILE --out RUN_DIR`: the whole pipeline over documents, resumable; `gem report`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from gem_agents.cli.common import console, fail, load_run_config, print_json, read_corpus
from gem_agents.cli.run_events import RunMonitor
from gem_agents.config import RunConfig
from gem_agents.ingest import IngestProblem
from gem_agents.io import check_output
from gem_agents.run.context import PipelineUnavailable, open_run, pipeline_problems
from gem_agents.run.engine import RunSummary, run_documents
from gem_agents.run.lock import RunDirBusy, run_dir_lock
from gem_agents.run.store import RunStore
from tools_runtime.records import Document

RUN_HELP = "\n\n".join([
    "Run the pipeline on every document: filter → extract → simulate N rollouts (verified) → refine "
    "(simulated and verified again) → store. Results go to RUN_DIR/run.sqlite; RUN_DIR/report.html is "
    "written at the end; `gem export RUN_DIR` writes training files.",
    "Resumable: kill it at any moment and run the same command again — every document ends exactly once "
    "and finished work is not redone (model calls already answered come from the call cache).",
    "Exit 0 when the run finished (documents may be rejected or failed: see the report), 2 for a bad "
    "config, input or run directory.",
])


def _config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    # Keys the old config lacks were added to RunConfig since; only keys both know can differ.
    keys = sorted(set(old) & set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def config_changes(run_dir: Path, cfg: RunConfig) -> list[str]:
    """Key paths where `cfg` differs from the config the run directory was started with ([] when new)."""
    if not (run_dir / "run.sqlite").exists():
        return []
    store = RunStore(run_dir, readonly=True)
    try:
        old = store.get_meta("config")
    finally:
        store.close()
    return [] if old is None else _config_diff(old, cfg.model_dump(mode="json"))


def check_run_dir_config(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse to resume a run directory that was started with a different config (results would mix)."""
    diff = config_changes(run_dir, cfg)
    if diff:
        fail(f"{run_dir} was started with a different config (differs at: {', '.join(diff[:8])}); "
             "use a new --out, or the original config to resume", 2)


def read_input(path: Path, cfg: RunConfig, quiet: bool) -> tuple[list[Document], list[IngestProblem]]:
    """All documents of the input (segmented), and the input's problems (reported, not fatal)."""

    def show(problems: list[IngestProblem]) -> None:
        if quiet:
            return
        for p in problems[:20]:
            console.print(f"[yellow]{p.model_dump_json()}[/]", highlight=False)
        if len(problems) > 20:
            console.print(f"[yellow]… and {len(problems) - 20} more input problems[/]")

    return read_corpus(path, cfg, show)


async def _run_local(cfg: RunConfig, docs: list[Document], out: Path, cache: Path | None,
                     monitor: RunMonitor, problems: list[IngestProblem]) -> RunSummary:
    async with open_run(cfg, out, cache_path=cache) as ctx:
        assert ctx.store is not None
        if ctx.store.get_meta("config") is None:
            ctx.store.set_meta("config", cfg.model_dump(mode="json"))
        ctx.store.set_meta("input_problems", [p.model_dump(mode="json") for p in problems])
        ctx.store.set_meta("roles", ctx.roles.name)
        return await run_documents(ctx, docs, on_event=monitor, total=len(docs))


def _run_ray(cfg: RunConfig, docs: list[Document], out: Path, cache: Path | None, monitor: RunMonitor,
             address: str | None, problems: list[IngestProblem] | None = None) -> RunSummary:
    try:
        from gem_agents.run import ray_engine
    except ImportError as exc:
        fail(f"--engine ray is not available: {exc} (install the 'ray' extra: pip install 'gem-agents[ray]')", 2)
    return ray_engine.run(cfg, docs, out, address=address, cache_path=cache, on_event=monitor, problems=problems)


def _run_engine(engine: str, cfg: RunConfig, docs: list[Document], out: Path, cache: Path | None,
                monitor: RunMonitor, address: str | None, problems: list[IngestProblem]) -> RunSummary:
    if engine == "ray":
        return _run_ray(cfg, docs, out, cache, monitor, address, problems)
    return asyncio.run(_run_local(cfg, docs, out, cache, monitor, problems))


def run_cmd(
    config: Path = typer.Argument(..., help="Run config YAML (see configs/)."),
    input: Path = typer.Option(..., "--input", "-i", help="Documents: JSONL ({id, text}), a folder of .txt/.md, "
                                                          "or one file."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created; reused to resume)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    json_log: Path | None = typer.Option(None, "--json-log", help="Append every event as a JSON line here."),
    engine: str = typer.Option("local", "--engine", help="local | ray"),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (--engine ray)."),
    cache: Path | None = typer.Option(None, "--cache", help="Model call cache (default RUN_DIR/model_cache.sqlite);"
                                                             " share one between runs to spend nothing twice."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write RUN_DIR/report.html at the end."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
) -> None:
    """Run the whole pipeline (see RUN_HELP)."""
    if engine not in ("local", "ray"):
        fail("--engine must be 'local' or 'ray'", 2)
    cfg = load_run_config(config)
    from gem_agents.run.preflight import endpoint_problems

    # The same checks, worded the same, as each stage's own command makes (e.g. refine_ops vs `gem refine --ops`).
    unusable = endpoint_problems(cfg, str(config)) + [f"{config}: {p}" for p in pipeline_problems(cfg)]
    if unusable:
        fail("\n".join(unusable), 2)
    docs, problems = read_input(input, cfg, quiet or as_json)
    if out.exists() and not out.is_dir():
        fail(f"{out}: exists and is not a directory", 2)
    if json_log is not None:
        check_output(json_log)
    try:
        # The lock first: a second `gem run` on a fresh folder must not read a store being created.
        with run_dir_lock(out):
            check_run_dir_config(out, cfg)
            with RunMonitor(len(docs), quiet=quiet or as_json, json_log=json_log,
                            refine=cfg.refine_rounds > 0) as monitor:
                summary = _run_engine(engine, cfg, docs, out, cache, monitor, address, problems)
    except RunDirBusy as exc:
        fail(str(exc), 2)
    except PipelineUnavailable as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        fail("interrupted; finished documents are stored — run the same command again to resume", 130)
    report_path = None
    if report:
        from gem_agents.report import write_report

        report_path = write_report(out)
    store = RunStore(out, readonly=True)
    try:
        counts = store.counts()
    finally:
        store.close()
    result = {"run_dir": str(out), "store": str(out / "run.sqlite"), "report": str(report_path) if report_path
              else None, "this_run": summary.as_dict(), "totals": counts, "input_problems": len(problems)}
    if as_json:
        print_json(result)
        return
    docs_by = counts["documents"]
    trajs = counts["trajectories"]
    verified = sum(v["verified"] for v in trajs.values())
    console.print(f"[bold]gem run[/]: {len(docs)} documents ({summary.skipped} already done, {summary.processed} "
                  f"processed now) — kept {docs_by.get('kept', 0)}, rejected {docs_by.get('rejected', 0)}, "
                  f"failed {docs_by.get('failed', 0)}; {verified} verified trajectories")
    console.print(f"results: {out / 'run.sqlite'}")
    if report_path:
        console.print(f"report:  {report_path}")
    console.print(f"export:  gem export {out} --format openai --out {out / 'export' / 'openai.jsonl'}")


def report_cmd(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Write (or rewrite) RUN_DIR/report.html from the stored records."""
    from gem_agents.report import write_report

    try:
        path = write_report(run_dir)
    except FileNotFoundError as exc:
        fail(str(exc), 2)
    console.print(f"report: {path}")


def register(app: typer.Typer) -> None:
    """Add `gem run` and `gem report`."""
    app.command("run", help=RUN_HELP)(run_cmd)
    app.command("report")(report_cmd)
