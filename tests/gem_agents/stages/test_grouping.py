"""Environment grouping: the pages of one product area merged into one environment, end to end."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.config import REPO_CONFIGS
from gem_agents.stages.grouping import group_documents, parts_of, product_area
from tools_runtime.records import Document

# Two pages of one (made-up) product area, in the help corpus's style, and one page of no area.
SCREEN = """# Share your screen
You can let other people view and control your desktop from another computer.
1. Open the Activities overview and start typing Sharing.
2. Click on Sharing to open the panel.
3. Switch the Remote Desktop switch to on.
4. Set the Remote Control switch to on to let others move your mouse."""
SHELL = """# Enable secure shell login
Secure shell lets you log in to this computer from another one.
1. Open the Activities overview and start typing Sharing.
2. Click on Sharing to open the panel.
3. Switch the Secure Shell switch to on."""
OTHER = """# Turn on night light
1. Open the Activities overview and start typing Displays.
2. Click on Displays to open the panel.
3. Switch the Night Light switch to on."""


def test_product_areas_and_group_documents():
    assert product_area("gnome-help:printing-setup-default-printer") == "gnome-help:printing"
    assert product_area("tldr:cp") == "tldr"
    assert product_area("c4_demo:86") is None
    docs = [Document(id="gnome-help:sharing-screen", text=SCREEN), Document(id="c4_demo:1", text="x"),
            Document(id="gnome-help:sharing-shell", text=SHELL), Document(id="gnome-help:display-night", text=OTHER)]
    out = group_documents(docs)
    assert [d.id for d in out] == ["group:gnome-help:sharing", "c4_demo:1", "gnome-help:display-night"]
    parts = parts_of(out[0])
    assert [p.id for p in parts] == ["gnome-help:sharing-screen", "gnome-help:sharing-shell"]
    # Each page's text sits at its offset in the group document's text.
    for p in parts:
        at = int(p.meta["offset"])
        assert out[0].text[at:at + len(p.text)] == p.text


def test_gem_run_grouped_merges_the_pages_and_refines_across_them(tmp_path):
    from gem_agents.run.store import RunStore

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in [
        ("gnome-help:sharing-screen", SCREEN), ("gnome-help:sharing-shell", SHELL),
        ("gnome-help:display-night", OTHER)]) + "\n")
    grouped = tmp_path / "grouped.jsonl"
    res = CliRunner().invoke(app, ["group", str(src), "-o", str(grouped)])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["id"] for x in grouped.read_text().splitlines()] == ["group:gnome-help:sharing",
                                                                             "gnome-help:display-night"]
    run_dir = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(REPO_CONFIGS / "offline_grouped.yaml"), "--input", str(grouped),
                                   "--out", str(run_dir), "--json", "--no-report"])
    assert res.exit_code == 0, res.output
    prov = json.loads((run_dir / "groups" / "group_gnome-help_sharing.json").read_text())
    assert prov["pages"] == ["gnome-help:sharing-screen", "gnome-help:sharing-shell"]
    sources = prov["tool_sources"]
    assert {"set_remote_desktop", "set_secure_shell"} <= set(sources)
    assert sources["set_secure_shell"] == "gnome-help:sharing-shell"
    assert sources["set_remote_desktop"] == "gnome-help:sharing-screen"
    store = RunStore(run_dir, readonly=True)
    try:
        tasks = list(store.tasks())
        refined = list(store.trajectories(kind="refined", verified_only=True))
    finally:
        store.close()
    group_tasks = [t for t in tasks if t.env_id == "group:gnome-help:sharing"]
    # Each page's tasks moved onto the merged environment, each still from its page.
    assert {t.meta["source_doc"] for t in group_tasks} == set(prov["pages"])
    # A refined task that combines the procedures of both pages, verified.
    across = [t for t in refined if t.scenario.task.env_id == "group:gnome-help:sharing"
              and len({sources.get(a.tool) for a in t.scenario.task.gold_actions} - {None}) == 2]
    assert across and all(t.verdict.passed for t in across)


def test_group_by_product_puts_every_gnome_help_page_in_one_verified_environment(tmp_path):
    from gem_agents.run.store import RunStore

    docs = [("gnome-help:sharing-screen", SCREEN), ("c4_demo:1", "x"), ("gnome-help:sharing-shell", SHELL),
            ("gnome-help:display-night", OTHER)]
    out = group_documents([Document(id=i, text=t) for i, t in docs], by="product")
    assert [d.id for d in out] == ["group:gnome-help", "c4_demo:1"]
    assert [p.id for p in parts_of(out[0])] == ["gnome-help:sharing-screen", "gnome-help:sharing-shell",
                                                "gnome-help:display-night"]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in docs if i != "c4_demo:1") + "\n")
    grouped = tmp_path / "grouped.jsonl"
    res = CliRunner().invoke(app, ["group", str(src), "-o", str(grouped), "--by", "product"])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["id"] for x in grouped.read_text().splitlines()] == ["group:gnome-help"]
    run_dir = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(REPO_CONFIGS / "offline_grouped.yaml"), "--input", str(grouped),
                                   "--out", str(run_dir), "--json", "--no-report"])
    assert res.exit_code == 0, res.output
    prov = json.loads((run_dir / "groups" / "group_gnome-help.json").read_text())
    assert prov["pages"] == [i for i, _ in docs if i != "c4_demo:1"]
    sources = prov["tool_sources"]
    assert sources["set_night_light"] == "gnome-help:display-night"
    store = RunStore(run_dir, readonly=True)
    try:
        refined = list(store.trajectories(kind="refined", verified_only=True))
    finally:
        store.close()
    # A verified refined task combining procedures of pages from different areas (sharing and display).
    across = [t for t in refined if {sources.get(a.tool) for a in t.scenario.task.gold_actions}
              >= {"gnome-help:display-night", "gnome-help:sharing-screen"}
              or {sources.get(a.tool) for a in t.scenario.task.gold_actions}
              >= {"gnome-help:display-night", "gnome-help:sharing-shell"}]
    assert across and all(t.verdict.passed for t in across)


def test_group_by_rejects_an_unknown_key():
    import pytest

    with pytest.raises(ValueError):
        group_documents([], by="page")
