"""tests/ mirrors the package layout: a test module sits beside the import root or subpackage it tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
ROOTS = ("tools_runtime", "graphs", "gem_agents")
# Whole-repository checks (guardrails, Makefile, docs, hostile input through every command) test no
# single package, so they have a folder of their own.
PROJECT = "project"
# Not test folders: fixture files and the demo plugin that tests install.
NOT_TESTS = ("data", "plugins")


def misplaced(test_files: list[str], is_package: set[str]) -> list[str]:
    """Test modules (paths relative to tests/) outside a folder that mirrors a package, or the project folder."""
    bad = []
    for rel in test_files:
        parts = rel.split("/")
        folders = parts[:-1]
        if folders == [PROJECT]:
            continue
        if not folders or folders[0] not in ROOTS or "/".join(folders) not in is_package:
            bad.append(rel)
    return bad


def _packages() -> set[str]:
    """Every package folder under the import roots, as `root/sub/...` paths."""
    found = set()
    for root in ROOTS:
        for init in (REPO / root).rglob("__init__.py"):
            found.add(init.parent.relative_to(REPO).as_posix())
    return found


def _test_files() -> list[str]:
    """Every test module under tests/ but the fixture folders, relative to tests/."""
    return sorted(
        p.relative_to(TESTS).as_posix()
        for p in TESTS.rglob("test_*.py")
        if p.relative_to(TESTS).parts[0] not in NOT_TESTS
    )


def test_every_test_module_mirrors_a_package() -> None:
    """tests/<root>/ or tests/gem_agents/<subpackage>/ (a real one), or tests/project/; never flat in tests/."""
    files = _test_files()
    assert len(files) > 50, "the rglob found the test modules"
    assert misplaced(files, _packages()) == []


def test_the_layout_check_catches_misplaced_modules() -> None:
    """A flat module, an unknown root and a subpackage that does not exist are all reported."""
    packages = {"gem_agents", "gem_agents/cli", "graphs", "tools_runtime"}
    files = [
        "test_flat.py",
        "gem_agents/cli/test_ok.py",
        "gem_agents/test_ok.py",
        "graphs/test_ok.py",
        "project/test_ok.py",
        "gem_agents/nosuch/test_bad.py",
        "misc/test_bad.py",
        "project/deeper/test_bad.py",
    ]
    assert misplaced(files, packages) == [
        "test_flat.py",
        "gem_agents/nosuch/test_bad.py",
        "misc/test_bad.py",
        "project/deeper/test_bad.py",
    ]


def test_every_test_folder_is_a_package() -> None:
    """tests/ is a package (`from tests.helpers import ...`), so every folder holding test modules is one too."""
    folders = {(TESTS / rel).parent for rel in _test_files()}
    missing = sorted(f.relative_to(REPO).as_posix() for f in folders if not (f / "__init__.py").is_file())
    assert missing == []
