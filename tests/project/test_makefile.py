"""`make test` runs every guardrail: dropping ruff, the import contracts, mypy or pytest from it fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Each guardrail and a pattern its recipe line must match (the tools run from the venv's bin/).
GUARDRAILS = {
    "ruff": re.compile(r"\bruff check \.(\s|$)"),
    "lint-imports": re.compile(r"\blint-imports\b"),
    "mypy": re.compile(r"\bmypy\b"),
    "pytest": re.compile(r"-m pytest\b"),
}


def target_recipe(makefile: str, target: str) -> list[str]:
    """The recipe lines (tab-indented, comments dropped) of `target` in a Makefile's text."""
    lines = makefile.splitlines()
    head = re.compile(rf"^{re.escape(target)}\s*:(?!=)")
    for i, line in enumerate(lines):
        if head.match(line):
            recipe = []
            for body in lines[i + 1:]:
                if not body.startswith("\t"):
                    break
                command = body.strip()
                if command and not command.startswith("#"):
                    recipe.append(command)
            return recipe
    raise AssertionError(f"no `{target}:` target in the Makefile")


def missing_guardrails(recipe: list[str]) -> list[str]:
    """The guardrails no line of `recipe` runs."""
    return [name for name, pattern in GUARDRAILS.items() if not any(pattern.search(line) for line in recipe)]


def test_parser_notices_a_dropped_guardrail() -> None:
    makefile = ("lint:\n\t$(BIN)/mypy\n\ntest: install-dev\n\t$(BIN)/ruff check .\n"
                "\t# $(BIN)/lint-imports\n\t$(BIN)/python -m pytest -q\n\nclean:\n\trm -rf .venv\n")
    assert target_recipe(makefile, "test") == ["$(BIN)/ruff check .", "$(BIN)/python -m pytest -q"]
    assert missing_guardrails(target_recipe(makefile, "test")) == ["lint-imports", "mypy"]


def test_make_test_runs_every_guardrail() -> None:
    recipe = target_recipe((REPO / "Makefile").read_text(encoding="utf-8"), "test")
    assert missing_guardrails(recipe) == [], recipe
    # pytest last: the cheap static checks fail first.
    assert GUARDRAILS["pytest"].search(recipe[-1]), recipe


def test_mypy_checks_at_least_the_two_lower_roots() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert {"tools_runtime", "graphs"} <= set(config["files"])
