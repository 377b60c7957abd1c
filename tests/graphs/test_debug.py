"""`gem debug`: the step debugger on the real dialogue graph, driven by --script and by a pseudo-terminal.

The story every test tells: break before a tool call, inspect the backend, edit it so the pending
call fails, see that failure in the verdict, rewind to the checkpoint before the edit, finish, and
get a verified dialogue.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from graphs.stepper import DialogueStepper, StepperError
from tests.helpers import EXAMPLES, SCRIPTED, example
from tools_runtime.records import Trajectory
from tools_runtime.scenario import build_scenario
from tools_runtime.verification.verify import verify

WORKFLOW = str(EXAMPLES / "shop_return.json")
GEM = [sys.executable, "-c", "from gem_agents.cli import main; main()"]
ENV = {**os.environ, "TERM": "dumb", "COLUMNS": "160", "NO_COLOR": "1"}
# Two continues with `--break tools`: before `login`, then before `search_orders`, which needs the
# session the edit takes away.
BREAK_AND_EDIT = ["continue", "continue", "state session.logged_in", "set session.logged_in false", "finish",
                  "history"]


def gem_debug(tmp_path: Path, lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    """Run `gem debug` on the example with a script of commands."""
    script = tmp_path / "session.gdb"
    script.write_text("# a reproduction\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return subprocess.run([*GEM, "debug", WORKFLOW, "--break", "tools", "--script", str(script), *extra],
                          capture_output=True, text=True, env=ENV, timeout=120)


def checkpoint_before_edit(output: str) -> int:
    """From a printed `history` table: the number of the checkpoint just before the `update` one."""
    rows = re.findall(r"│\s*(\d+)\s*│\s*(-?\d+)\s*│\s*(\S+)\s*│\s*(\w+)\s*│", output)
    updates = [int(n) for n, _, _, source in rows if source == "update"]
    assert updates, f"no update checkpoint in the history:\n{output[-3000:]}"
    return updates[-1] - 1


def test_script_break_edit_fail_rewind_finish_verified(tmp_path):
    first = gem_debug(tmp_path, [*BREAK_AND_EDIT, "quit"])
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "before tools" in out and "pending tool calls" in out
    assert "search_orders" in out and "set backend session.logged_in: true → false" in out
    assert "FAILED" in out and "tool_result_mismatch" in out
    assert "VERIFIED" not in out
    n = checkpoint_before_edit(out)

    saved = tmp_path / "fixed.json"
    second = gem_debug(tmp_path, [*BREAK_AND_EDIT, f"rewind {n}", "state session.logged_in", "finish",
                                  f"save {saved}", "quit"], "--checkpoints", str(tmp_path / "ck.sqlite"))
    assert second.returncode == 0, second.stdout + second.stderr
    after_rewind = second.stdout.split(f"rewind {n}", 1)[1]
    assert "rewound to checkpoint" in after_rewind
    assert "true" in after_rewind.split("finish", 1)[0]  # the session is back as it was before the edit
    assert "VERIFIED" in after_rewind and "FAILED" not in after_rewind
    traj = Trajectory.model_validate_json(saved.read_text())
    assert traj.verdict and traj.verdict.passed
    sc = build_scenario(example("shop_return"), 0)
    assert verify(traj.messages, sc)[0].passed

    # The SQLite store keeps the thread: reopening it resumes at the end, with both branches saved.
    third = gem_debug(tmp_path, ["history", "quit"], "--checkpoints", str(tmp_path / "ck.sqlite"))
    assert third.returncode == 0, third.stderr
    assert "resumed thread shop_return:s0" in third.stdout and "fork" in third.stdout


def test_script_errors_name_the_line_and_reject_bad_edits(tmp_path):
    bad_type = gem_debug(tmp_path, ["continue", "set session.logged_in \"yes\""])
    assert bad_type.returncode == 2
    assert "session.gdb:3:" in bad_type.stderr and "holds a boolean; got a string" in bad_type.stderr
    missing = gem_debug(tmp_path, ["set collections.nosuch.X-1.status \"x\""])
    assert missing.returncode == 2 and "no 'collections.nosuch'" in missing.stderr
    unknown = gem_debug(tmp_path, ["jump 3"])
    assert unknown.returncode == 2 and "unknown command 'jump'" in unknown.stderr
    bad_break = subprocess.run([*GEM, "debug", WORKFLOW, "--break", "tools,planner"], capture_output=True,
                               text=True, env=ENV, timeout=60)
    assert bad_break.returncode == 2 and "planner" in bad_break.stderr


@pytest.mark.slow
def test_pseudo_terminal_session(tmp_path):
    child = pexpect.spawn(GEM[0], [*GEM[1:], "debug", WORKFLOW, "--break", "tools"], env=ENV,
                          encoding="utf-8", timeout=60, dimensions=(60, 160))
    try:
        prompt = r"\(gem-debug\) "
        child.expect(prompt)
        for cmd in ("continue", "continue"):
            child.sendline(cmd)
            child.expect("before tools")
            child.expect(prompt)
        child.sendline("state session")
        child.expect('"logged_in": true')
        child.expect(prompt)
        child.sendline("set session.logged_in false")
        child.expect("true → false")
        child.expect(prompt)
        child.sendline("finish")
        child.expect("FAILED")
        child.expect("tool_result_mismatch")
        child.expect(prompt)
        child.sendline("history")
        child.expect(prompt)
        n = checkpoint_before_edit(child.before)
        child.sendline(f"rewind {n}")
        child.expect("rewound to checkpoint")
        child.expect(prompt)
        child.sendline("nonsense")
        child.expect("unknown command")  # interactive mode reports and carries on
        child.expect(prompt)
        child.sendline("finish")
        child.expect("VERIFIED")
        child.expect(prompt)
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_editing_the_pending_call_reaches_the_verdict():
    sc = build_scenario(example("shop_return"), 0)

    async def run():
        st = DialogueStepper(sc, SCRIPTED, breaks=("tools",))
        await st.start()
        pause = await st.cont()
        assert pause.next == "tools" and (await st.state("message.tool_calls.0.function.name")) == "login"
        edit = await st.set("message.tool_calls.0.function.arguments.username", 7)
        assert edit.target == "message" and any("username" in w for w in edit.warnings)
        assert json.loads((await st.pause()).values["messages"][-1]["tool_calls"][0]["function"]["arguments"]) \
            == {"username": 7, "password": sc.plan[0].arguments["password"]}
        with pytest.raises(StepperError, match="role of a message"):
            await st.set("message.role", "user")
        with pytest.raises(StepperError, match="there is no pending|no 'nope'"):
            await st.set("message.nope.deeper", 1)
        end = await st.finish()
        assert end.done and "invalid_arguments" in [f["code"] for f in end.values["verdict"]["failures"]]
        # Rewind to the pause before the edit and finish: verified, and history shows the fork.
        entries = await st.history()
        edit_at = next(e for e in entries if e.source == "update")
        assert entries[edit_at.index - 1].next == "tools"
        await st.rewind(edit_at.index - 1)
        assert (await st.finish()).values["verdict"]["passed"]
        assert any(e.source == "fork" for e in await st.history())

    asyncio.run(run())


def test_model_policy_through_the_fake_openai_server(tmp_path):
    """`--policy model`: ChatOpenAI roles against a local fake endpoint, stepped the same way."""
    from gem_agents.testing.fake_openai import FakeOpenAIServer
    from gem_agents.testing.role_responder import RoleResponder

    sc = build_scenario(example("shop_return"), 0)
    with FakeOpenAIServer(RoleResponder([sc])) as srv:
        cfg = tmp_path / "model.yaml"
        role = f"{{provider: openai, model: fake-model, base_url: '{srv.base_url}'}}"
        cfg.write_text(f"roles:\n  user: {role}\n  assistant: {role}\n", encoding="utf-8")
        res = gem_debug(tmp_path, ["continue", "state session.logged_in", "finish", "quit"],
                        "--policy", "model", "--config", str(cfg))
        calls = srv.count
    assert res.returncode == 0, res.stdout + res.stderr
    assert "policy model" in res.stdout and "before tools" in res.stdout and "VERIFIED" in res.stdout
    assert calls > 0
