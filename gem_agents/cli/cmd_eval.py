"""`gem eval`: run the config's assistant on a set of tasks, K trials each, and score it (docs/verification.md)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import typer

from gem_agents.cli.common import DIALOGUE_ROLES, console, fail, load_run_config, open_hub, print_json
from gem_agents.eval.gold_player import gold_player
from gem_agents.eval.runner import EvalInputError, load_items, result_row, run_eval, summarise
from gem_agents.io import atomic_writer, redact, write_jsonl, write_text


def _model_name(role: Any) -> str:
    """The model a role ran: its name, or the embedded model's package or file (the `local` provider has no name)."""
    return role.model or role.setting("model_package") or role.setting("model_path") or ""


def eval_cmd(
    tasks: Path = typer.Argument(..., help="A run directory, a tasks JSONL (or a folder of "
                                          "X.tasks.jsonl + X.json), τ²'s tasks.json or BFCL multi-turn data."),
    config: Path | None = typer.Option(None, help="Run config YAML: its assistant role is evaluated, its user "
                                                  "role simulates the users."),
    trials: int = typer.Option(4, "--trials", "-k", min=1, help="Trials per task (pass^1 and pass^K are reported)."),
    out: Path = typer.Option(..., "--out", help="Output folder: results.jsonl, summary.json, trajectories.jsonl."),
    env: Path | None = typer.Option(None, "--env", help="The environment of a tasks JSONL."),
    domain: str | None = typer.Option(None, help="τ² domain (default: the tasks.json folder's name)."),
    limit: int | None = typer.Option(None, min=1, help="Evaluate only the first N tasks."),
    concurrency: int = typer.Option(8, min=1, help="Dialogues in flight at once."),
    as_json: bool = typer.Option(False, "--json", help="Print summary.json."),
) -> None:
    """Evaluate an assistant on tasks: pass^k, per-component pass rates and blame counts.

    A scripted assistant role plays each task's gold (the ceiling: it must score 1.0); a model
    assistant is evaluated for real. The user simulator is pinned by the config (model, prompt hash,
    seeds) and recorded in summary.json.
    """
    cfg = load_run_config(config)
    try:
        items = load_items(tasks, env=env, domain=domain, limit=limit)
    except EvalInputError as exc:
        fail(str(exc), 2)
    if not any(i.scenario is not None and not i.skip for i in items):
        fail(f"{tasks}: no task can be evaluated ({len(items)} read, all skipped)", 2)
    out.mkdir(parents=True, exist_ok=True)
    models = [r for r in DIALOGUE_ROLES if getattr(cfg.roles, r).provider != "scripted"]
    hub = open_hub(cfg, str(config), models, out / "model_cache.sqlite") if models else None
    from gem_agents.policies.chat import chat_prompts_hash
    from gem_agents.roles_factory import make_roles

    roles = make_roles(hub)
    if cfg.roles.assistant.provider == "scripted":
        roles = type(roles)(**{**roles.__dict__, "assistant": gold_player,
                               "name": roles.name.replace("assistant:scripted", "assistant:gold")})
    user_cfg = cfg.roles.user
    pins: dict[str, Any] = {
        "assistant": {"provider": cfg.roles.assistant.provider, "model": _model_name(cfg.roles.assistant)},
        "user": {"provider": user_cfg.provider, "model": _model_name(user_cfg),
                 "prompts_hash": chat_prompts_hash() if user_cfg.provider != "scripted" else "scripted",
                 "temperature": user_cfg.temperature, "seeds": list(range(trials))},
        "config": str(config) if config else None,
    }
    traj_path = out / "trajectories.jsonl"
    t0 = time.time()
    try:
        with atomic_writer(traj_path) as fh:
            done = asyncio.run(run_eval(items, roles, trials, concurrency=concurrency,
                                        max_user_turns=cfg.limits.max_user_turns,
                                        max_tool_rounds=cfg.limits.max_tool_rounds,
                                        on_done=lambda t: fh.write(redact(t.model_dump_json()) + "\n")))
        tokens = hub.meter.totals() if hub is not None else {}
    finally:
        if hub is not None:
            hub.close()
    rows = [result_row(item, trial, traj) for item, trial, traj in done]
    write_jsonl(out / "results.jsonl", rows)
    skipped = [i for i in items if i.skip or i.scenario is None]
    summary = summarise(rows, trials, skipped=skipped, tokens=tokens, wall_s=time.time() - t0, pins=pins)
    write_text(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    if as_json:
        print_json(summary)
        return
    console.print(f"[bold]{summary['tasks']} tasks × {trials} trials[/]: "
                  + ", ".join(f"pass^{k} {v:.3f}" for k, v in summary["pass_hat_k"].items()) + f" → {out}")
    console.print("components: " + ", ".join(f"{k} {v:.2f}" for k, v in summary["components"].items()))
    if summary["blame"]:
        console.print("blame: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["blame"].items())))
    if skipped:
        console.print(f"[yellow]{len(skipped)} task(s) skipped[/] (see summary.json)")


def register(app: typer.Typer) -> None:
    """Add `gem eval` to the CLI."""
    app.command("eval")(eval_cmd)
