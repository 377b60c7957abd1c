"""report.html: the offline banner comes first, the audit figures and blame counts are shown, and each
trajectory shows its task instruction and system message."""

from __future__ import annotations

import re

from gem_agents.report import report_data, write_report
from tests.gem_agents.test_audit import TASK1, TASK2, build_run


def _body(html: str) -> str:
    return html.split("<body>", 1)[1].lstrip()


def test_offline_run_says_so_on_its_first_line(tmp_path):
    html = write_report(build_run(tmp_path / "off", offline=True)).read_text()
    first = _body(html).splitlines()[0]
    assert first.startswith('<p id="offline"') and "Offline run" in first
    online = write_report(build_run(tmp_path / "on")).read_text()
    assert 'id="offline"' not in online and _body(online).startswith("<h1>")


def test_audit_figures_and_blame_counts_are_shown(tmp_path):
    run = build_run(tmp_path / "run")
    data = report_data(run)
    assert data["audit_headline"]["grounding"] == 0.5 and data["blame"] == {"assistant": 1, "user": 1,
                                                                               "unattributed": 1}
    html = write_report(run).read_text()
    cell = lambda i: re.search(rf'id="{i}">([^<]*)<', html).group(1)  # noqa: E731
    assert cell("audit-grounding") == "0.500"
    assert cell("audit-noop") == "0.500"
    assert cell("audit-compute") == "0.500"
    assert cell("audit-system") == "0.500"
    assert cell("audit-templates") == "0.500"
    assert (cell("blame-assistant"), cell("blame-user"), cell("blame-unattributed")) == ("1", "1", "1")
    assert "tasks valid 2" in html and "rollouts verified 2/5" in html


def test_each_trajectory_shows_its_task_and_system_message(tmp_path):
    html = write_report(build_run(tmp_path / "run")).read_text()
    chats = html.split('<details class="traj"')[1:]
    assert len(chats) == 5
    for chunk in chats[:3]:
        assert f"<b>task</b>: {TASK1.instruction}" in chunk
    for chunk in chats[3:]:
        assert f"<b>task</b>: {TASK2.instruction}" in chunk
    with_system = [c for c in chats if '<span class="who">system</span>Rules: only the owner' in c]
    assert len(with_system) == 4  # d1:r1 opened without one, and says so
    assert sum('class="bad nosystem"' in c for c in chats) == 1
