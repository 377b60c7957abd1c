"""House rules that no single feature test would notice breaking: they fail `make test` instead."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("tools_runtime", "graphs", "gem_agents")
README_LIMIT = 10 * 1024

_CLOCKS = {"time", "perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "process_time"}
_TIMING_NAME = re.compile(r"elapsed|duration|wall_?time|took|latency", re.IGNORECASE)
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)

# Tests allowed to assert a wall-clock bound: none. Assert on what the code did instead (a recorded wait,
# a counter, a fake clock); a loaded machine makes timing asserts flake.
KNOWN_TIMING_ASSERTS: set[str] = set()


def _is_clock_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr in _CLOCKS and isinstance(func.value, ast.Name) and func.value.id == "time"
    return isinstance(func, ast.Name) and func.id in _CLOCKS - {"time"}


def _mentions_time(node: ast.AST, timing_names: set[str]) -> bool:
    for sub in ast.walk(node):
        if _is_clock_call(sub):
            return True
        if isinstance(sub, ast.Name) and (sub.id in timing_names or _TIMING_NAME.search(sub.id)):
            return True
    return False


def _test_functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods of module-level classes (nested helpers belong to them)."""
    bodies = [tree.body] + [node.body for node in tree.body if isinstance(node, ast.ClassDef)]
    return [node for body in bodies for node in body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def timing_asserts(source: str) -> list[tuple[str, int]]:
    """(function name, line) of every assert that orders a wall-clock measurement against a bound."""
    found: list[tuple[str, int]] = []
    for func in _test_functions(ast.parse(source)):
        timing_names: set[str] = set()
        for node in ast.walk(func):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                if _mentions_time(node.value, timing_names):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    timing_names |= {t.id for t in targets if isinstance(t, ast.Name)}
        for node in ast.walk(func):
            if not isinstance(node, ast.Assert):
                continue
            for cmp in ast.walk(node.test):
                if (isinstance(cmp, ast.Compare) and any(isinstance(op, _ORDERING) for op in cmp.ops)
                        and _mentions_time(cmp, timing_names)):
                    found.append((func.name, node.lineno))
                    break
    return found


def test_timing_detector_catches_the_usual_shapes() -> None:
    """The detector itself: each way of asserting a time bound is caught, a plain count is not."""
    caught = timing_asserts(
        "import time\n"
        "def test_a():\n    start = time.perf_counter()\n    run()\n    assert time.perf_counter() - start < 1.0\n"
        "def test_b():\n    t0 = time.monotonic()\n    run()\n    took = time.monotonic() - t0\n    assert took <= 2\n"
        "def test_c(elapsed):\n    assert 0.1 < elapsed\n"
        "def test_d():\n    assert len(run()) < 3\n"
    )
    assert [name for name, _ in caught] == ["test_a", "test_b", "test_c"]


def test_no_test_asserts_a_wall_clock_limit() -> None:
    """A test states what the code did, never how fast this machine did it (it flakes under load)."""
    found = set()
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        rel = path.relative_to(REPO).as_posix()
        for name, _line in timing_asserts(path.read_text(encoding="utf-8")):
            found.add(f"{rel}::{name}")
    assert found - KNOWN_TIMING_ASSERTS == set(), "new wall-clock assertions (assert on behaviour instead)"
    assert KNOWN_TIMING_ASSERTS - found == set(), "fixed: remove these from KNOWN_TIMING_ASSERTS"


def test_readme_stays_short() -> None:
    """README.md is a front page (what, two commands, a tour, where to read on); the rest is in docs/."""
    size = len((REPO / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes, over {README_LIMIT}: move detail to docs/"


def test_code_cites_only_docs_in_this_repository() -> None:
    """Modules cite `docs/design.md §N`, never DESIGN or field notes, which live outside the repository."""
    pattern = re.compile(r"DESIGN §|field notes §")
    offenders = [
        f"{path.relative_to(REPO).as_posix()}:{number}"
        for root in ROOTS
        for path in sorted((REPO / root).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_design_citations_name_a_section_that_exists() -> None:
    """Every `docs/design.md §N` in the code names a numbered heading of docs/design.md."""
    design = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#+ (\d+(?:\.\d+)*)\.? ", design, re.M))
    cited = {
        (f"{path.relative_to(REPO).as_posix()}:{number}", section)
        for root in ROOTS
        for path in sorted((REPO / root).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for section in re.findall(r"docs/design\.md §(\d+(?:\.\d+)*)", line)
    }
    assert cited, "no module cites docs/design.md (the pattern above no longer matches how they cite it)"
    assert [(where, section) for where, section in sorted(cited) if section not in sections] == []


# Docs being written on a branch not merged yet; links to them may dangle until it merges.
PENDING_DOCS: set[str] = set()
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _doc_files() -> list[Path]:
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return docs + [p for root in ROOTS for p in sorted((REPO / root).rglob("README.md"))]


def test_doc_links_resolve() -> None:
    """Every relative link in README.md, docs/ and the package READMEs names a file (and heading) that exists."""
    broken = []
    for doc in _doc_files():
        for target in _LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / path_part).resolve() if path_part else doc
            rel = dest.relative_to(REPO).as_posix() if dest.is_relative_to(REPO) else str(dest)
            if not dest.exists():
                if rel not in PENDING_DOCS:
                    broken.append(f"{doc.relative_to(REPO)}: {target}")
                continue
            if anchor and dest.suffix == ".md":
                headings = {_slug(m) for m in re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)}
                if anchor not in headings:
                    broken.append(f"{doc.relative_to(REPO)}: {target} (no such heading)")
    assert broken == []
