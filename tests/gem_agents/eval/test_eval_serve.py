"""`gem serve`: an environment over MCP, driven by the SDK's own stdio client."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="the `serve` extra (mcp) is installed by `make test`")

from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from tools_runtime.tasks import Task  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
TASKS = REPO / "examples" / "environments" / "print_booklet.tasks.jsonl"


def _server() -> StdioServerParameters:
    # The `gem` console script of the interpreter running the tests.
    gem = Path(sys.executable).parent / "gem"
    return StdioServerParameters(command=str(gem), args=["serve", str(TASKS), "--stdio"], cwd=str(REPO))


def test_gold_actions_over_mcp_verify_and_a_skipped_write_does_not():
    task = Task.model_validate_json(TASKS.read_text().splitlines()[0])

    async def main() -> tuple[list[str], dict, dict, bool]:
        async with Client(_server()) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            for a in task.gold_actions:
                res = await client.call_tool(a.tool, a.arguments)
                assert not res.is_error, res.content[0].text
            good = json.loads((await client.call_tool("verify", {"final_message": "All set."})).content[0].text)
            reset = json.loads((await client.call_tool("reset", {"seed": 1})).content[0].text)
            assert reset["seed"] == 1
            for a in task.gold_actions[:-1]:
                await client.call_tool(a.tool, a.arguments)
            bad = json.loads((await client.call_tool("verify", {})).content[0].text)
            unknown = await client.call_tool("no_such_tool", {})
            return names, good, bad, bool(unknown.is_error)

    names, good, bad, unknown_is_error = asyncio.run(main())
    assert {"reset", "verify"} <= set(names) and {a.tool for a in task.gold_actions} <= set(names)
    assert good["passed"] and good["components"]["state"]["passed"], good
    assert not bad["passed"] and bad["blame"] == "assistant"
    assert unknown_is_error
