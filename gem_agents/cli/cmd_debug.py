"""`gem debug`: step one dialogue through the real dialogue graph, turn by turn.

Commands (interactive, or one per line from `--script FILE`):
  step | s            run the next node and pause before the one after it
  continue | c        run to the next breakpoint (--break) or to the end
  finish              run to the end, ignoring breakpoints
  state [PATH]        show the backend state, or the value at PATH (`message.…` = pending message)
  set PATH VALUE      edit the backend state or the pending message (validated); VALUE is JSON or text
  history | h         the checkpoints of the current branch
  rewind N            go back to checkpoint N; the next step/continue/set forks from it
  save FILE           write the trajectory so far (JSON)
  help | ?            this list
  quit | q            leave (the checkpoints stay in --checkpoints FILE.sqlite)
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table

from gem_agents.cli.cmd_simulate import _config, _load_workflow
from gem_agents.cli.common import DIALOGUE_ROLES, fail, make_console, open_hub, read_input_text
from gem_agents.cli.render_dialogue import print_messages, records_table, short, verdict_panel
from gem_agents.io import OutputError, redact, write_text
from gem_agents.roles_factory import make_roles
from graphs.stepper import (
    DialogueStepper,
    Pause,
    StepperError,
    open_checkpointer,
    parse_breaks,
    parse_value,
    preview_tool_calls,
)
from tools_runtime.records import ExecRecord, Scenario
from tools_runtime.scenario import ScenarioError, build_scenario

PROMPT = "(gem-debug) "
HELP = __doc__.split("Commands", 1)[1].split("\n", 1)[1].rstrip()
SHOW_AT_MOST = 6  # messages printed after a jump (rewind, resume); every new message is shown otherwise


class ScriptError(Exception):
    """A command of a --script that failed; carries the line number."""


class DebugSession:
    """The command loop around one DialogueStepper, printing to a rich console."""

    def __init__(self, stepper: DialogueStepper, console: Console):
        self.stepper = stepper
        self.console = console
        self.shown = 0
        self.steps_seen = 0

    async def show(self, pause: Pause, *, jumped: bool = False) -> None:
        """What a person needs before the next node: new messages, executed and pending tool calls."""
        values = pause.values
        messages = values.get("messages") or []
        steps = values.get("steps") or []
        if jumped or self.shown > len(messages):
            self.shown = max(0, len(messages) - SHOW_AT_MOST)
            self.steps_seen = len(steps)
        print_messages(self.console, messages, self.shown)
        self.shown = len(messages)
        if len(steps) > self.steps_seen:
            recs = [ExecRecord.model_validate(s) for s in steps[self.steps_seen:]]
            self.console.print(records_table(recs, "executed tool calls"))
        self.steps_seen = len(steps)
        where = f"before [bold]{pause.next}[/]" if pause.next else "[bold]ended[/]"
        self.console.print(Rule(f"checkpoint step {pause.step} · {where}", align="left"))
        if pause.next == "tools":
            recs = preview_tool_calls(self.stepper.scenario, values)
            self.console.print(records_table(recs, "pending tool calls (dry run on a copy of the backend)"))
        if pause.done:
            self.console.print(verdict_panel(values.get("verdict")))

    async def run(self, line: str) -> bool:
        """Carry out one command line; returns False on quit. Raises StepperError on a bad command."""
        words = line.strip().split(maxsplit=2)
        if not words or words[0].startswith("#"):
            return True
        cmd, args = words[0].lower(), words[1:]
        st = self.stepper
        if cmd in ("q", "quit", "exit"):
            return False
        if cmd in ("s", "n", "step", "next"):
            await self.show(await st.step())
        elif cmd in ("c", "continue", "cont"):
            await self.show(await st.cont())
        elif cmd == "finish":
            await self.show(await st.finish())
        elif cmd == "state":
            value = await st.state(" ".join(args))
            if value is None:
                self.console.print("null")
            else:
                self.console.print_json(data=value, default=str)
        elif cmd == "set":
            if len(args) < 2:
                raise StepperError("usage: set PATH VALUE (VALUE is JSON, or plain text)")
            edit = await st.set(args[0], parse_value(args[1]))
            self.console.print(f"[bold]set[/] {edit.target} {escape(edit.path)}: "
                               f"{escape(short(edit.old, 80))} → {escape(short(edit.new, 80))}")
            for w in edit.warnings:
                self.console.print(f"[yellow]warning:[/] {escape(w)}")
            if edit.target == "message":
                self.console.print(f"next: {(await st.pause()).next or 'end'}")
        elif cmd in ("h", "history"):
            await self.history()
        elif cmd == "rewind":
            if not args or not re.fullmatch(r"-?[0-9]{1,9}", args[0]):  # ASCII digits: "²".isdigit() is True
                raise StepperError("usage: rewind N (a checkpoint number from `history`)")
            pause = await st.rewind(int(args[0]))
            self.console.print(f"[bold]rewound[/] to checkpoint {args[0]} (step {pause.step}); "
                               "the next step, continue or set forks from here")
            await self.show(pause, jumped=True)
        elif cmd == "save":
            if not args:
                raise StepperError("usage: save FILE")
            traj = await st.trajectory()
            path = Path(" ".join(args))
            try:
                write_text(path, traj.model_dump_json(indent=2) + "\n")
            except OutputError as exc:  # the session (and its state) survives a bad path
                raise StepperError(f"save: {exc}") from None
            self.console.print(f"saved {len(traj.messages)} messages to {escape(str(path))}")
        elif cmd in ("help", "?"):
            self.console.print(HELP, highlight=False, markup=False)
        else:
            raise StepperError(f"unknown command {cmd!r}; type `help` for the list")
        return True

    async def history(self) -> None:
        """Print the checkpoints of the current branch."""
        entries = await self.stepper.history()
        current = (await self.stepper.pause()).checkpoint_id
        table = Table("#", "step", "next", "source", "messages", "checkpoint", title="history (current branch)",
                      title_justify="left")
        for e in entries:
            mark = " ←" if e.checkpoint_id == current else ""
            table.add_row(str(e.index), str(e.step), e.next or "end", e.source, str(e.messages),
                          e.checkpoint_id[-12:] + mark)
        self.console.print(table)


def _header(console: Console, scenario: Scenario, policy: str, breaks: tuple[str, ...], where: str) -> None:
    goals = "\n".join(f"  {i + 1}. {g.description}" for i, g in enumerate(scenario.goals))
    console.print(Panel(f"workflow [bold]{escape(scenario.workflow.id)}[/] · scenario {escape(scenario.id)} · "
                        f"seed {scenario.seed} · policy {policy}\n"
                        f"graph {escape(scenario.workflow.execution_graph)}\ngoals:\n{escape(goals)}\n"
                        f"breakpoints: {', '.join(breaks) or 'none'} · checkpoints: {escape(where)}",
                        title="gem debug", title_align="left"))


async def _session(stepper: DialogueStepper, console: Console, script: list[str] | None,
                   script_name: str, header: tuple[str, tuple[str, ...], str]) -> None:
    _header(console, stepper.scenario, *header)
    pause, resumed = await stepper.start()
    if resumed:
        console.print(f"resumed thread {stepper.config['configurable']['thread_id']} at step {pause.step}")
    session = DebugSession(stepper, console)
    await session.show(pause, jumped=resumed)
    if script is not None:
        for n, line in enumerate(script, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            console.print(f"{PROMPT}{line.strip()}", highlight=False, markup=False)
            try:
                if not await session.run(line):
                    return
            except StepperError as exc:
                raise ScriptError(f"{script_name}:{n}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 — any failing command names its script line
                raise ScriptError(f"{script_name}:{n}: {type(exc).__name__}: {exc}") from exc
        return
    _enable_line_editing()
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            console.print()
            return
        except KeyboardInterrupt:
            console.print("\n(type quit to leave)")
            continue
        try:
            if not await session.run(line):
                return
        except StepperError as exc:
            console.print(f"[bold red]error:[/] {escape(redact(str(exc)))}")
        except Exception as exc:  # noqa: BLE001 — an interactive session never dies (and loses its state) on one command
            console.print(f"[bold red]error:[/] {escape(redact(f'{type(exc).__name__}: {exc}'))}")


def _enable_line_editing() -> None:
    try:
        import readline  # noqa: F401 — imported for its side effect on input(): history and editing
    except ImportError:
        pass


def debug_cmd(
    workflow: Path = typer.Argument(..., help="Workflow JSON file."),
    seed: int = typer.Option(0, help="Scenario seed."),
    policy: str = typer.Option("scripted", help="scripted | model (roles from --config)."),
    config: Path | None = typer.Option(None, help="Run config YAML (model endpoints, limits)."),
    breaks: str = typer.Option("user,assistant,tools", "--break",
                               help="Nodes `continue` stops before (user, assistant, tools, verify)."),
    checkpoints: Path | None = typer.Option(None, "--checkpoints",
                                            help="SQLite file for the checkpoints (default: in memory); "
                                                 "reopening it resumes the thread."),
    script: Path | None = typer.Option(None, "--script", help="Run the commands in FILE instead of asking."),
    thread: str | None = typer.Option(None, "--thread", help="Thread id in the checkpoint store."),
) -> None:
    """Step through one dialogue: pause before each node, inspect and edit state, rewind, replay."""
    if policy not in ("scripted", "model"):
        fail("--policy must be 'scripted' or 'model'", 2)
    try:
        break_nodes = parse_breaks(breaks)
    except StepperError as exc:
        fail(str(exc), 2)
    lines = None
    if script is not None:
        lines = read_input_text(script).splitlines()
    wf = _load_workflow(workflow)
    cfg = _config(config, policy)
    try:
        scenario = build_scenario(wf, seed)
    except ScenarioError as exc:
        fail(f"{workflow}: cannot build a scenario (seed {seed}): {exc}", 1)
    hub = open_hub(cfg, str(config), DIALOGUE_ROLES, use_cache=False) if policy == "model" else None
    roles = make_roles(hub)
    console = make_console(highlight=False)
    thread_id = thread or f"{wf.id}:s{seed}"

    async def main() -> None:
        async with open_checkpointer(checkpoints) as saver:
            stepper = DialogueStepper(scenario, roles, checkpointer=saver, breaks=break_nodes, thread_id=thread_id,
                                      max_user_turns=cfg.limits.max_user_turns,
                                      max_tool_rounds=cfg.limits.max_tool_rounds)
            await _session(stepper, console, lines, str(script),
                           (policy, break_nodes, str(checkpoints) if checkpoints else "in memory"))

    try:
        asyncio.run(main())
    except ScriptError as exc:
        fail(str(exc), 2)
    finally:
        if hub is not None:
            hub.close()


def register(app: typer.Typer) -> None:
    """Add `debug`."""
    app.command("debug")(debug_cmd)
