"""The static run report: its figures, the SVG graph renderer, and a headless Chromium render."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gem_agents.cli.cmd_demo import SAMPLES
from gem_agents.config import RunConfig
from gem_agents.ingest import read_documents
from gem_agents.report import report_data, write_report
from gem_agents.report.svg_graph import render_graph_svg
from gem_agents.run.context import open_run
from gem_agents.run.engine import run_documents
from gem_agents.run.store import RunStore

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    docs, _ = read_documents(SAMPLES)

    async def go():
        async with open_run(RunConfig(), out) as ctx:
            await run_documents(ctx, docs)
            # Token use as a model-backed run would have stored it.
            ctx.store.set_meta("usage", {"assistant": {"calls": 7, "cached_calls": 2, "input_tokens": 1234,
                                                       "output_tokens": 321, "saved_tokens": 99}})

    asyncio.run(go())
    return out


def test_report_figures_match_the_store(run_dir):
    data = report_data(run_dir)
    store = RunStore(run_dir, readonly=True)
    docs = store.documents()
    trajs = list(store.trajectories())
    store.close()
    assert data["documents"] == len(docs) == 5
    stages = {s["stage"]: s for s in data["stages"]}
    assert stages["filter"]["in"] == 5 and stages["filter"]["out"] == 4
    assert stages["export"]["out"] == sum(1 for d in docs if d["status"] == "kept")
    reasons = {r["reason"]: r["count"] for r in data["reasons"]}
    assert reasons.get("not multi-step") == 1
    kinds = RunStore(run_dir, readonly=True).trajectory_kinds()
    verified_by = {k: sum(1 for t in trajs if t.verdict.passed and kinds[t.id] == k) for k in ("original", "refined")}
    assert data["stats_before"]["n"] == verified_by["original"] > 0
    assert data["stats_after"]["n"] == verified_by["refined"]
    assert stages["refine"]["out"] == verified_by["refined"]
    assert stages["simulate"]["in"] == sum(1 for t in trajs if kinds[t.id] == "original")
    assert stages["simulate"]["out"] == stages["refine"]["in"] == verified_by["original"]
    assert data["usage_totals"]["input_tokens"] == 1234
    chat = data["chats"][0]
    kinds = {t["kind"] for t in chat["turns"]}
    assert {"user", "assistant", "call", "result"} <= kinds
    assert any(t.get("diff") for t in chat["turns"] if t["kind"] == "result")


def test_svg_graph_draws_nodes_edges_and_call_status():
    svg = render_graph_svg("(login)->(search, get_cart)->(update)", {"login": "ok", "update": "error"})
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="edge"') == 4
    assert svg.count("<rect") == 4
    assert "node-ok" in svg and "node-error" in svg and svg.count("node-none") == 2
    # columns by generation: search and get_cart share an x
    xs = dict(re.findall(r"<title>(\w+): \w+</title><rect x=\"([\d.]+)\"", svg))
    assert xs["search"] == xs["get_cart"] != xs["login"]
    bad = render_graph_svg("(a)->(", {})
    assert "cannot draw" in bad


def test_report_is_static_and_self_contained(run_dir):
    html = write_report(run_dir).read_text()
    assert "<script" not in html
    assert not re.search(r'(src|href)="https?://', html)
    assert "<svg" in html


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium on this machine (the Makefile's test setup installs Debian's "
                "`chromium` when it runs as root)")


@pytest.mark.browser
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    browser = _chromium()
    report = write_report(run_dir)
    try:
        res = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                              report.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium could not run here: {exc}")
    if res.returncode != 0 or "<html" not in res.stdout:
        pytest.skip(f"chromium could not render here (exit {res.returncode}): {res.stderr[-300:]}")
    dom = res.stdout
    data = report_data(run_dir)

    def shown(element_id: str) -> str:
        m = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
        assert m, f"#{element_id} missing from the rendered page"
        return m.group(1).strip()

    assert shown("docs-total") == "5"
    assert shown("docs-kept") == str(data["status"].get("kept", 0))
    assert shown("docs-rejected") == str(data["status"].get("rejected", 0))
    for s in data["stages"]:
        assert shown(f"stage-{s['stage']}-in") == str(s["in"])
        assert shown(f"stage-{s['stage']}-out") == str(s["out"])
    assert dom.count("<svg") >= 1 and "tool call" in dom
    assert ">1234<" in dom
