"""`gem demo` (what `make run` calls): the embedded default config on the sample texts in the package."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import typer

from gem_agents.cli.cmd_run import config_changes, read_input
from gem_agents.cli.common import console, fail
from gem_agents.cli.run_events import RunMonitor
from gem_agents.config import REPO_CONFIGS, ConfigError, RunConfig, load_config
from gem_agents.export import export_run
from gem_agents.report import write_report
from gem_agents.run.context import open_run
from gem_agents.run.engine import run_documents
from gem_agents.run.lock import RunDirBusy, run_dir_lock
from gem_agents.run.store import RunStore

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def default_config(name: str = "default") -> RunConfig:
    """configs/NAME.yaml when the checkout has it, else the built-in defaults (the offline setting)."""
    path = REPO_CONFIGS / f"{name}.yaml"
    return load_config(path) if path.exists() else RunConfig()


def describe_mode(cfg: RunConfig) -> str:
    """One line naming who plays each role: the embedded model's roles, or `offline` when none has a model."""
    roles = {name: getattr(cfg.roles, name) for name in type(cfg.roles).model_fields}
    played = {name: r for name, r in roles.items() if r.provider != "scripted"}
    if not played:
        return "offline (every role scripted, no model)"
    by_model: dict[str, list[str]] = {}
    for name, r in played.items():
        label = f"{r.provider}:{r.model or r.setting('model_package') or r.setting('model_path')}"
        # draft and revise: the model corrects the rule-based draft (stages/draft_revise.py)
        by_model.setdefault(label, []).append(f"{name} (revising the rule draft)" if r.draft == "offline" else name)
    return "; ".join(f"{label} plays {', '.join(names)}" for label, names in by_model.items()) + \
        " (the other roles scripted)"


def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run directory."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete the run directory first (otherwise it resumes, or starts over when the default config changed)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    offline: bool = typer.Option(False, "--offline", help="Use configs/offline.yaml: every role scripted, no model."),
) -> None:
    """Run the pipeline with the embedded default config (the embedded model) on the bundled sample texts."""
    try:
        cfg = default_config("offline" if offline else "default")
    except ConfigError as exc:
        fail(str(exc), 2)
    if not quiet:
        console.print(f"[bold]gem demo[/]: {describe_mode(cfg)}", highlight=False)
    if out.exists() and (fresh or config_changes(out, cfg)):
        shutil.rmtree(out)  # a demo run is disposable: a changed default starts it over
    docs, problems = read_input(SAMPLES, cfg, quiet)

    async def go() -> None:
        async with open_run(cfg, out) as ctx:
            assert ctx.store is not None
            if ctx.store.get_meta("config") is None:
                ctx.store.set_meta("config", cfg.model_dump(mode="json"))
            ctx.store.set_meta("input_problems", [p.model_dump(mode="json") for p in problems])
            with RunMonitor(len(docs), quiet=quiet, refine=cfg.refine_rounds > 0) as monitor:
                await run_documents(ctx, docs, on_event=monitor, total=len(docs))
            if monitor.model_calls:  # what the in-process model did, per role (docs/providers.md)
                activity[:] = [{"role": r, **v} for r, v in monitor.model_calls.items()]
                ctx.store.set_meta("model_activity", activity)

    activity: list[dict] = []
    try:
        with run_dir_lock(out):
            asyncio.run(go())
    except RunDirBusy as exc:
        fail(str(exc), 2)
    report = write_report(out)
    exported = export_run(out, "openai", out / "export" / "openai.jsonl", include_offline=True)  # demo is offline
    store = RunStore(out, readonly=True)
    try:
        counts = store.counts()
    finally:
        store.close()
    d = counts["documents"]
    console.print(f"[bold]gem demo[/] ({describe_mode(cfg)}): {len(docs)} sample texts from {SAMPLES} — kept {d.get('kept', 0)}, "
                  f"rejected {d.get('rejected', 0)}, failed {d.get('failed', 0)}")
    for row in activity:
        console.print(f"model as {row['role']}: {int(row['calls'])} calls, {int(row['prompt_tokens'])} prompt + "
                      f"{int(row['completion_tokens'])} generated tokens, {row['seconds']:.0f} s", highlight=False)
    console.print(f"results: {out / 'run.sqlite'}")
    console.print(f"report:  {report}")
    console.print(f"export:  {exported['out']} ({exported['trajectories']} verified trajectories)")


def register(app: typer.Typer) -> None:
    """Add `gem demo`."""
    app.command("demo")(demo_cmd)
