import json

from tools_runtime.backend import SimBackend
from tools_runtime.executor import execute_call, parse_tool_content, tool_message_content
from tools_runtime.records import PlannedError
from tools_runtime.toolspec import ToolSpec

T = ToolSpec(name="set_volume", parameters={"type": "object", "properties": {
    "level": {"type": "integer", "minimum": 0, "maximum": 100}}, "required": ["level"]})
TOOLS = {T.name: T}


def run(name, args, **kw):
    return execute_call(SimBackend([T]), TOOLS, name, args, **kw)


def test_ok_call_records_result_and_diff():
    rec = run("set_volume", '{"level": 30}')
    assert rec.ok and rec.result["level"] == 30 and rec.state_diff


def test_model_mistakes_become_tool_errors():
    unknown = run("set_colour", {})
    assert unknown.error["code"] == "unknown_tool" and "set_volume" in unknown.error["message"]
    bad_json = run("set_volume", '{"level": 3')
    assert bad_json.error["code"] == "invalid_arguments"
    bad_type = run("set_volume", {"level": "loud"})
    assert bad_type.error["code"] == "invalid_arguments" and bad_type.error["param"] == "level"
    missing = run("set_volume", {})
    assert "level" in missing.error["message"]
    is_err, payload = parse_tool_content(tool_message_content(bad_type))
    assert is_err and payload["error"]["code"] == "invalid_arguments"


def test_injected_error_leaves_state_alone():
    be = SimBackend([T])
    rec = execute_call(be, TOOLS, "set_volume", {"level": 5}, inject=PlannedError(kind="transient", tool="set_volume"))
    assert not rec.ok and rec.injected and rec.error["code"] == "service_unavailable"
    assert be.state["collections"] == {}
    assert json.loads(tool_message_content(rec))["error"]["code"] == "service_unavailable"
