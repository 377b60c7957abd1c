"""The published environment and task schemas: committed files match the code, specs round-trip."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from tools_runtime.records import Workflow
from tools_runtime.spec_schema import SCHEMAS, environment_schema, task_schema, write_schemas
from tools_runtime.tasks import Action, Info, Task
from tools_runtime.workflow_io import load_workflow

REPO = Path(__file__).resolve().parents[2]
FORMATS = REPO / "docs" / "formats"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_files_equal_the_code(name):
    committed = json.loads((FORMATS / name).read_text(encoding="utf-8"))
    assert committed == SCHEMAS[name](), "regenerate with: python -m tools_runtime.spec_schema docs/formats"


def test_write_schemas_writes_both(tmp_path):
    paths = write_schemas(tmp_path)
    assert sorted(p.name for p in paths) == sorted(SCHEMAS)
    assert json.loads(paths[0].read_text()) == SCHEMAS[paths[0].name]()


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@pytest.mark.parametrize("schema", [environment_schema(), task_schema()], ids=["environment", "task"])
def test_schemas_fit_a_grammar_no_refs_and_bounded(schema):
    Draft202012Validator.check_schema(schema)
    nodes = list(_walk(schema))
    assert not any("$ref" in n or "$defs" in n for n in nodes)
    for n in nodes:
        if n.get("type") == "string" and "enum" not in n and "const" not in n:
            assert "maxLength" in n, n
        if n.get("type") == "array":
            assert "maxItems" in n, n


@pytest.mark.parametrize("path", sorted((REPO / "examples" / "environments").glob("*.json")), ids=lambda p: p.stem)
def test_environment_round_trips_through_its_schema(path):
    wf = load_workflow(path)
    data = json.loads(wf.model_dump_json())
    assert list(Draft202012Validator(environment_schema()).iter_errors(data)) == []
    assert Workflow.model_validate(data) == wf
    assert wf.effects and wf.entities and wf.initial_state and wf.policy


def test_task_round_trips_and_the_schema_rejects_a_broken_one():
    task = Task(id="t1", env_id="e", instruction="Return my lamp.", cites=[1, 3],
                known_info=[Info(key="order_id", value="ORD-1", source={"kind": "text", "quote": "ORD-1", "span": [4, 9]})],
                gold_actions=[Action(tool="request_return", arguments={"order_id": "ORD-1"})])
    data = json.loads(task.model_dump_json())
    validator = Draft202012Validator(task_schema())
    assert list(validator.iter_errors(data)) == []
    assert Task.model_validate(data) == task
    assert list(validator.iter_errors({**data, "reward_basis": ["vibes"]}))
    assert list(validator.iter_errors({**data, "surprise": 1}))
