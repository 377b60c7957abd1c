"""Rich renderings of dialogue pieces, shared by `gem debug` and `gem replay`."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tools_runtime.records import ExecRecord, Verdict
from tools_runtime.verification.replay import call_name_args, tool_calls_of

ROLE_STYLE = {"user": "cyan", "assistant": "green", "tool": "magenta", "system": "yellow"}


def short(value: Any, n: int = 200) -> str:
    """A value as one line of at most `n` characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def message_panel(msg: dict[str, Any], index: int) -> Panel:
    """One OpenAI-format message as a titled panel; tool calls listed as `name(arguments)`."""
    role = str(msg.get("role") or "?")
    body: list[RenderableType] = []
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content:
        body.append(Text(short(content, 600) if role == "tool" else str(content)))
    for call in tool_calls_of(msg):
        name, args, call_id = call_name_args(call)
        body.append(Text.assemble(("→ call ", "bold"), (name, "bold green"), f"({short(args, 300)})",
                                  (f"  [{call_id}]", "dim")))
    title = f"[{index}] {role}" + (f" · {msg.get('name')}" if role == "tool" and msg.get("name") else "")
    return Panel(Group(*body) if body else Text("(empty)", style="dim"), title=escape(title), title_align="left",
                 border_style=ROLE_STYLE.get(role, "white"), expand=True)


def print_messages(console: Console, messages: list[dict[str, Any]], start: int = 0) -> None:
    """Print messages[start:] as panels."""
    for i in range(max(0, start), len(messages)):
        console.print(message_panel(messages[i], i))


def diff_text(diff: list[dict[str, Any]]) -> str:
    """A state diff as short `op path: old → new` lines."""
    lines = []
    for d in diff[:8]:
        if d.get("op") == "add":
            lines.append(f"+ {d['path']} = {short(d.get('new'), 80)}")
        elif d.get("op") == "remove":
            lines.append(f"- {d['path']} (was {short(d.get('old'), 60)})")
        else:
            lines.append(f"~ {d['path']}: {short(d.get('old'), 40)} → {short(d.get('new'), 40)}")
    if len(diff) > 8:
        lines.append(f"… {len(diff) - 8} more changes")
    return "\n".join(lines) or "(no change)"


def records_table(records: list[ExecRecord], title: str) -> Table:
    """Tool calls with their validation, result and state diff."""
    table = Table(title=title, title_justify="left", expand=True, show_lines=True)
    table.add_column("call", overflow="fold")
    table.add_column("validation", overflow="fold")
    table.add_column("result", overflow="fold")
    table.add_column("state diff", overflow="fold")
    for rec in records:
        err = rec.error or {}
        invalid = err.get("code") in ("invalid_arguments", "unknown_tool")
        validation = f"[red]{escape(short(err.get('message', ''), 160))}[/]" if invalid else "[green]valid[/]"
        if rec.ok:
            result = escape(short(rec.result, 240)) + (" [yellow](model-proposed)[/]" if rec.proposed else "")
        elif invalid:
            result = "[dim]not executed[/]"
        else:
            result = f"[red]error {escape(str(err.get('code', '')))}:[/] {escape(short(err.get('message', ''), 160))}"
            if rec.injected:
                result += " [yellow](injected)[/]"
        table.add_row(escape(f"{rec.name}({short(rec.arguments, 160)})"), validation, result,
                      escape(diff_text(rec.state_diff)))
    return table


def verdict_panel(verdict: Verdict | dict[str, Any] | None) -> Panel:
    """The verifier's verdict with every failure reason."""
    if verdict is None:
        return Panel("not verified yet", title="verdict", border_style="yellow")
    v = verdict if isinstance(verdict, Verdict) else Verdict.model_validate(verdict)
    if v.passed:
        return Panel(Text("VERIFIED: every check passed", style="bold green"), title="verdict", border_style="green")
    lines = [Text(f"FAILED: {len(v.failures)} failure(s)", style="bold red")]
    for f in v.failures:
        at = f" [message {f.index}]" if f.index is not None else ""
        lines.append(Text.assemble((f"• {f.code}", "red"), f"{at}: {f.reason}"))
    return Panel(Group(*lines), title="verdict", border_style="red")


def json_block(value: Any) -> str:
    """Pretty JSON for a state dump."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)
