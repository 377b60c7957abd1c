"""`gem extract`: stage 1 then stage 2 over documents, one workflow (or rejection) per document."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer

from gem_agents.cli.cmd_filter import (
    load_input,
    model_hub,
    print_summary,
    reason_key,
    run_documents,
)
from gem_agents.cli.common import load_run_config, stage_for
from gem_agents.models.client import ModelCallError
from gem_agents.stages import ExtractionResult
from gem_agents.stages.base import StageEnv
from tools_runtime.records import Document, Relevance


def _given_relevance(doc: Document) -> Relevance | None:
    """A stage-1 answer carried on the input line (`gem filter` output joined with the text)."""
    flag = doc.meta.get("multi_step")
    if not isinstance(flag, bool):
        return None
    fields = {k: str(doc.meta.get(k) or "") for k in ("summary", "domain", "platform", "task")}
    return Relevance(multi_step=flag, decided_by="input", **fields)


def workflow_record(doc_id: str, result: ExtractionResult) -> dict[str, Any]:
    """One `gem extract` output line."""
    if result.workflow is not None:
        wf = result.workflow.model_dump(mode="json", exclude_none=True)
        return {"id": doc_id, "workflow": wf, "decided_by": result.decided_by, "rounds": result.rounds}
    return {"id": doc_id, "rejected": result.rejected, "decided_by": result.decided_by, "rounds": result.rounds}


EXTRACT_HELP = "\n\n".join([
    "Stage 2: extract steps, an execution graph and tools from each document.",
    "Stage 1 runs first: the pre-filter, then the filter model when roles.filter names one (with --offline, "
    "the pre-filter alone). An input line that already carries a boolean \"multi_step\" (a `gem filter` "
    "record joined with its text) counts as decided and is not filtered again; --no-filter extracts from "
    "every document.",
    "Each kept document goes to the extract model (roles.extract, repaired at most limits.repair_rounds "
    "times) or, with --offline or no extract model configured, to the rule-based extractor. A workflow is "
    "kept only when it validates and a scenario can be built from it (and, with --verify, its scripted "
    "reference rollout verifies; a grounded environment from the rule-based extractor is checked through "
    "its tasks instead, as in `gem run`).",
    "Writes one JSON line per document (segments of long documents count as documents): "
    "{\"id\", \"workflow\": {\"steps\", \"execution_graph\", \"tools\", ...}} or "
    "{\"id\", \"rejected\": \\[reasons]}. Exit 0 when the input was usable, 2 when it is missing or "
    "unreadable or the config is invalid.",
])


def extract_cmd(
    input: Path = typer.Argument(..., help="Documents: JSONL ({id, text, ...}), a folder of .txt/.md, or one file."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL, one workflow or rejection per document."),
    config: Path | None = typer.Option(None, "--config", help="Run config YAML (roles.filter and roles.extract "
                                                               "pick the models)."),
    offline: bool = typer.Option(False, "--offline", help="Only the deterministic pre-filter and rule-based "
                                                          "extractor, no model calls."),
    run_filter: bool = typer.Option(True, "--filter/--no-filter", help="Run stage 1 first (default) or extract "
                                                                       "from every document."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Also require the scripted reference "
                                                                   "rollout of each workflow to verify."),
    cache: Path | None = typer.Option(None, "--cache", help="Model call cache (default: .gem_cache.sqlite "
                                                             "beside --out)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Stage 2: extract steps, an execution graph and tools from each document (see EXTRACT_HELP)."""
    cfg = load_run_config(config)
    docs, problems = load_input(input, cfg, quiet=quiet)
    # The same stage objects as `gem run`'s filter and extract nodes.
    filter_stage, extract_stage = stage_for("filter", cfg), stage_for("extract", cfg)
    hub = model_hub(cfg, out, cache, offline, (*filter_stage.roles, *extract_stage.roles), str(config))
    env = StageEnv(config=cfg, hub=hub)

    async def worker(doc: Document) -> dict[str, Any]:
        rel = _given_relevance(doc)
        if rel is None and run_filter:
            try:
                rel = await filter_stage.run(env, doc)
            except ModelCallError as exc:
                return workflow_record(doc.id, ExtractionResult(rejected=[f"model call failed: {exc}"],
                                                                decided_by="error"))
        if rel is not None and not rel.multi_step:
            why = f"not multi-step (decided by {rel.decided_by})"
            return workflow_record(doc.id, ExtractionResult(rejected=[why], decided_by="filter"))
        return workflow_record(doc.id, await extract_stage.run(env, doc, rel, verify=verify))

    try:
        records = run_documents(docs, worker, out, concurrency=cfg.concurrency.documents, label="extract",
                                quiet=quiet or as_json)
    finally:
        if hub is not None:
            hub.close()
    kept = sum(1 for r in records if "workflow" in r)
    reasons: Counter[str] = Counter(reason_key(r["rejected"][0]) if r["rejected"] else "unknown"
                                    for r in records if "rejected" in r)
    print_summary("gem extract", len(records), kept, reasons, len(problems), out, as_json)


def register(app: typer.Typer) -> None:
    """Add `gem extract` to the app."""
    app.command("extract", help=EXTRACT_HELP)(extract_cmd)


__all__ = ["extract_cmd", "register", "workflow_record"]
