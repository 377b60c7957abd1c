"""docs/cli.md is generated from the CLI's --help: this fails when a command changed and the file did not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current() -> None:
    """`scripts/gen_cli_docs.py --check` passes: docs/cli.md equals what the code would write."""
    # A fresh interpreter: the generator must switch Typer's rich help off before typer is imported.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_cli_docs.py"), "--check"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for command in ("gem run", "gem export", "gem debug", "gem tools validate", "gem graph check"):
        assert f"`{command}`" in text
