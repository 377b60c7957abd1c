"""`gem group IN.jsonl -o OUT.jsonl`: the help pages of one product area as one group document.

The output is the input for `pipeline: grouped` (configs/offline_grouped.yaml): each group document holds its
pages in `meta.parts`; the grouped pipeline extracts every page and merges the environments
(gem_agents/stages/grouping.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer

from gem_agents.cli.common import console, fail

GROUP_HELP = ("Group the documents of one product area (gnome-help page prefixes, tldr) or, with `--by product`, "
              "of one product (all gnome-help pages, tldr) into one document each, for `pipeline: grouped`; "
              "other documents are copied as they are.")


def group_cmd(
    inp: Path = typer.Argument(..., help="input JSONL (id, text, …)"),
    out: Path = typer.Option(..., "-o", "--out", help="output JSONL of group documents"),
    min_size: int = typer.Option(2, "--min-size", min=1, help="fewest pages that make a group"),
    by: str = typer.Option("area", "--by", help="group by `area` (gnome-help page prefix, tldr) or `product` "
                           "(all gnome-help pages one desktop, tldr)"),
) -> None:
    """Write one document per product area (and every other document unchanged)."""
    from gem_agents.config import InputConfig
    from gem_agents.ingest import read_documents
    from gem_agents.stages.grouping import group_documents, parts_of

    if by not in ("area", "product"):
        fail(f"--by {by}: expected area or product", 2)
    if not inp.exists():
        fail(f"no such file: {inp}", 2)
    # Whole pages: a group document keeps each page's text as the page, never its segments.
    docs, problems = read_documents(inp, InputConfig(segment_chars=10_000_000))
    grouped = group_documents(docs, min_size=min_size, by=by)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for doc in grouped:
            fh.write(json.dumps({"id": doc.id, "text": doc.text, "source": doc.source, **doc.meta},
                                ensure_ascii=False) + "\n")
    sizes = Counter(len(parts_of(d)) for d in grouped)
    console.print(f"{len(docs)} documents → {len(grouped)} ({sum(v for k, v in sizes.items() if k)} groups of "
                  + ", ".join(f"{k} pages ×{v}" for k, v in sorted(sizes.items()) if k)
                  + f"); {len(problems)} input problems", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `gem group`."""
    app.command("group", help=GROUP_HELP)(group_cmd)
