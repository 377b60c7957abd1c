"""Write docs/cli.md from the `gem` CLI's own --help text, so the reference cannot drift from the code.

    python scripts/gen_cli_docs.py           # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check   # exit 1 (and say so) when docs/cli.md is stale

The help is rendered by plain click (Typer's rich panels switched off) at a fixed width, so the
file is the same on every machine and terminal.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Must be set before typer is imported: Typer reads it once, at import time.
os.environ["TYPER_USE_RICH"] = "0"

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "cli.md"
WIDTH = 100

HEADER = """# `gem` command reference

Generated from the CLI's own `--help` by `scripts/gen_cli_docs.py`; do not edit by hand.
After changing a command or an option, run `python scripts/gen_cli_docs.py` and commit the result
(`tests/project/test_cli_docs.py` fails while this file is stale).

Exit codes, for every command: 0 success; 1 the input was read but did not pass (a trajectory that
does not verify, a tool file with errors); 2 the input or the config is unusable and nothing was
started (see [bad-input.md](bad-input.md)).
"""


def _help(command, path: list[str], parent):
    # Typer vendors its own click, so the context comes from the command's own class.
    ctx = command.context_class(command, info_name=path[-1], parent=parent, terminal_width=WIDTH,
                                max_content_width=WIDTH)
    return ctx.get_help(), ctx


def _walk(command, path: list[str], parent, out: list[str]) -> None:
    text, ctx = _help(command, path, parent)
    level = "#" * min(len(path) + 1, 4)
    out.append(f"{level} `{' '.join(path)}`\n\n```text\n{text.rstrip()}\n```\n")
    if hasattr(command, "list_commands"):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                _walk(sub, [*path, name], ctx, out)


def render() -> str:
    """The whole of docs/cli.md, as the current code would write it."""
    import typer

    sys.path.insert(0, str(REPO))
    from gem_agents.cli import app

    root = typer.main.get_command(app)
    parts: list[str] = [HEADER]
    _walk(root, ["gem"], None, parts)
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Write docs/cli.md, or with --check report whether it is stale."""
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(REPO)} is stale: run `python scripts/gen_cli_docs.py`", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)} ({len(text)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
