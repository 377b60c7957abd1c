"""Shared fixtures: where ../shared is, and skips when it is absent (a user's fresh clone)."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path

import pytest

# Rich sizes tables and wraps text to the terminal; tests read CLI output, so give every run (a
# terminal, a pipe, CI) the same width.
os.environ["COLUMNS"] = "160"

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GEM_SHARED_DIR", REPO.parent / "shared"))
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder; tests that need it skip with a reason when it is missing."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"../shared is absent ({SHARED}); real-data tests need it beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def bfcl_dir(shared_dir: Path) -> Path:
    """The BFCL multi-turn material under ../shared."""
    return shared_dir / "data" / "bench" / "bfcl" / "data"


@pytest.fixture(scope="session")
def corpus_path(shared_dir: Path) -> Path:
    """The real-text dev corpus."""
    return shared_dir / "data" / "texts" / "corpus_dev.jsonl"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to open a URL or a socket."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network touched: {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
