"""`gem filter`: stage 1 over a JSONL file, a folder of text files or one text file.

Also home to the helpers `gem extract` shares: reading the input with problems reported by
file:line, running one async worker per document with bounded concurrency while writing results
in input order, atomic output (temp file + rename), and the closing summary.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import typer
from rich.markup import escape
from rich.table import Table

from gem_agents.cli.common import console, load_run_config, open_hub, print_json, read_corpus, stage_for
from gem_agents.cli.progress import make_progress
from gem_agents.config import RunConfig
from gem_agents.ingest import IngestProblem
from gem_agents.io import atomic_writer, redact
from gem_agents.models.client import ModelCallError
from gem_agents.models.hub import ModelHub
from gem_agents.stages.base import StageEnv
from tools_runtime.records import Document, Relevance

MAX_PROBLEMS_SHOWN = 20


# ---------------------------------------------------------------------------------------------------------
# shared helpers


def load_input(path: Path, cfg: RunConfig, *, quiet: bool = False) -> tuple[list[Document], list[IngestProblem]]:
    """Documents from `path`; problems are printed as file:line; exit 2 when nothing can be read."""

    def show(problems: list[IngestProblem]) -> None:
        for problem in problems[:MAX_PROBLEMS_SHOWN]:
            # soft_wrap: one problem per line, so `file:line` stays greppable and clickable.
            console.print(f"[yellow]skipped[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
        if len(problems) > MAX_PROBLEMS_SHOWN:
            console.print(f"[yellow]… and {len(problems) - MAX_PROBLEMS_SHOWN} more input problems[/]")

    return read_corpus(path, cfg, show)


def run_documents(docs: list[Document], worker: Callable[[Document], Awaitable[dict[str, Any]]], out: Path,
                  *, concurrency: int, label: str, quiet: bool) -> list[dict[str, Any]]:
    """Run `worker` on every document (at most `concurrency` at once); write records in input order."""
    records: list[dict[str, Any] | None] = [None] * len(docs)

    async def main(fh: IO[str]) -> None:
        sem = asyncio.Semaphore(max(1, concurrency))
        next_out = 0
        with make_progress(quiet) as progress:
            task = progress.add_task(label, total=len(docs))

            async def one(i: int, doc: Document) -> None:
                nonlocal next_out
                async with sem:
                    records[i] = await worker(doc)
                progress.advance(task)
                # Flush every finished record that has no unfinished one before it.
                while next_out < len(docs) and records[next_out] is not None:
                    fh.write(redact(json.dumps(records[next_out], ensure_ascii=False)) + "\n")
                    next_out += 1

            await asyncio.gather(*(one(i, d) for i, d in enumerate(docs)))

    with atomic_writer(out) as fh:
        asyncio.run(main(fh))
    return [r for r in records if r is not None]


def reason_key(reason: str) -> str:
    """A short grouping key for a rejection reason (its text before details)."""
    key = reason.split(":")[0].split("(")[0].strip()
    return key[:70] or "unknown"


def print_summary(title: str, total: int, kept: int, reasons: Counter[str], problems: int, out: Path,
                  as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """The closing summary: kept, rejected by reason, input problems (stderr; JSON on stdout with --json)."""
    if as_json:
        print_json({"documents": total, "kept": kept, "rejected": total - kept, "reasons": dict(reasons),
                    "input_problems": problems, "out": str(out), **(extra or {})})
        return
    table = Table(title=title, title_justify="left", show_header=True)
    table.add_column("outcome")
    table.add_column("documents", justify="right")
    table.add_row("[green]kept[/]", str(kept))
    for reason, n in reasons.most_common():
        table.add_row(f"[red]rejected[/] {escape(reason)}", str(n))
    if problems:
        table.add_row("[yellow]input problems (skipped)[/]", str(problems))
    console.print(table)
    console.print(f"wrote {total} records to {escape(str(out))}", highlight=False, soft_wrap=True)


def model_hub(cfg: RunConfig, out: Path, cache: Path | None, offline: bool, roles: tuple[str, ...],
              source: str = "config") -> ModelHub | None:
    """The hub for model `roles` (None with --offline); the call cache sits beside the output by default."""
    if offline:
        return None
    return open_hub(cfg, source, roles, cache or out.parent / ".gem_cache.sqlite")


def relevance_record(doc_id: str, rel: Relevance) -> dict[str, Any]:
    """One `gem filter` output line."""
    return {"id": doc_id, "multi_step": rel.multi_step, "summary": rel.summary, "domain": rel.domain,
            "platform": rel.platform, "task": rel.task, "decided_by": rel.decided_by}


# ---------------------------------------------------------------------------------------------------------
# the command


FILTER_HELP = "\n\n".join([
    "Stage 1: decide for each document whether it holds a multi-step procedure.",
    "The deterministic pre-filter rejects obvious non-procedures without a model call; the rest go to the "
    "filter model (roles.filter in --config) or, with --offline or no filter model configured, are decided "
    "by the pre-filter alone.",
    "Writes one JSON line per document (segments of long documents count as documents): {\"id\", "
    "\"multi_step\", \"summary\", \"domain\", \"platform\", \"task\", \"decided_by\"}; decided_by is "
    "prefilter, model, model_reask (parsed after a re-ask), unparsable or error. Exit 0 when the input was "
    "usable, 2 when it is missing or unreadable or the config is invalid.",
])


def filter_cmd(
    input: Path = typer.Argument(..., help="Documents: JSONL ({id, text, ...}), a folder of .txt/.md, or one file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL, one relevance record per document."),
    config: Path | None = typer.Option(None, "--config", help="Run config YAML (roles.filter picks the model)."),
    offline: bool = typer.Option(False, "--offline", help="Only the deterministic pre-filter, no model calls."),
    cache: Path | None = typer.Option(None, "--cache", help="Model call cache (default: .gem_cache.sqlite "
                                                             "beside --out)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Stage 1: decide for each document whether it holds a multi-step procedure (see FILTER_HELP)."""
    cfg = load_run_config(config)
    docs, problems = load_input(input, cfg, quiet=quiet)
    stage = stage_for("filter", cfg)  # the same stage object as `gem run`'s filter node
    hub = model_hub(cfg, out, cache, offline, stage.roles, str(config))
    env = StageEnv(config=cfg, hub=hub)

    async def worker(doc: Document) -> dict[str, Any]:
        try:
            rel = await stage.run(env, doc)
        except ModelCallError as exc:
            return {**relevance_record(doc.id, Relevance(multi_step=False, decided_by="error")), "error": str(exc)}
        return relevance_record(doc.id, rel)

    try:
        records = run_documents(docs, worker, out, concurrency=cfg.concurrency.documents, label="filter",
                                quiet=quiet or as_json)
    finally:
        if hub is not None:
            hub.close()
    kept = sum(1 for r in records if r["multi_step"])
    reasons: Counter[str] = Counter(f"not multi-step ({r['decided_by']})" for r in records if not r["multi_step"])
    print_summary("gem filter", len(records), kept, reasons, len(problems), out, as_json)


def register(app: typer.Typer) -> None:
    """Add `gem filter` to the app."""
    app.command("filter", help=FILTER_HELP)(filter_cmd)


__all__ = ["atomic_writer", "filter_cmd", "load_input", "print_summary", "register", "run_documents"]
