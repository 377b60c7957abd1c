"""τ²-bench tasks as scenarios on a small backend of our own (`../shared/data/bench/tau2/<domain>`).

The shared folder holds a domain's data (db.json, tasks.json, policy.md), not its code, so the mock
domain's few tools are implemented here from its data and policy: tasks with a title, a status that is
`pending` or `completed`, only existing users may create tasks, deleting is not offered (the agent
transfers to a human). The database is the backend's one public attribute, so the state hash is the
hash of the database, as τ² compares. A τ² task becomes our Task: its evaluation actions are the gold
actions, `communicate_info` and `nl_assertions` carry over, and its reward basis maps DB → state,
ACTION → actions, COMMUNICATE → communicate, NL_ASSERTION → nl_assertions (ENV_ASSERTION has no
counterpart and is reported as unsupported in `meta`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tools_runtime.exec_graph import format_graph, graph_from_stages
from tools_runtime.executor import ToolEnvironment
from tools_runtime.python_backend import trust_classes
from tools_runtime.records import ArgSource, BackendRef, Goal, PlannedCall, Scenario, Workflow
from tools_runtime.state import state_hash
from tools_runtime.tasks import Action, Task
from tools_runtime.toolspec import ToolSpec

BASIS = {"DB": "state", "ACTION": "actions", "COMMUNICATE": "communicate", "NL_ASSERTION": "nl_assertions"}
DEFAULT_BASIS = ["DB", "COMMUNICATE"]  # τ²'s default when a task names none
STATUSES = ("pending", "completed")


class MockDomain:
    """The τ² mock domain's task manager: public methods are the assistant's tools; `db` is the state."""

    def __init__(self) -> None:
        self.db: dict[str, Any] = {"tasks": {}, "users": {}}

    def _load_scenario(self, config: dict[str, Any]) -> None:
        self.db = copy.deepcopy(config.get("db") or {"tasks": {}, "users": {}})
        for name, args in config.get("init_actions") or []:
            getattr(self, name)(**args)

    def create_task(self, user_id: str, title: str, description: str | None = None) -> dict[str, Any]:
        """Create a pending task for an existing user."""
        if user_id not in self.db["users"]:
            raise ValueError(f"User {user_id} not found")
        if not title:
            raise ValueError("A task must have a title")
        task_id = f"task_{len(self.db['tasks']) + 1}"
        task = {"task_id": task_id, "title": title, "description": description, "status": "pending"}
        self.db["tasks"][task_id] = task
        self.db["users"][user_id]["tasks"].append(task_id)
        return copy.deepcopy(task)

    def get_users(self) -> list[dict[str, Any]]:
        """Every user with their task ids."""
        return copy.deepcopy(list(self.db["users"].values()))

    def update_task_status(self, task_id: str, status: str) -> dict[str, Any]:
        """Set a task's status to pending or completed."""
        if task_id not in self.db["tasks"]:
            raise ValueError(f"Task {task_id} not found")
        if status not in STATUSES:
            raise ValueError(f"Invalid status: {status}; use pending or completed")
        self.db["tasks"][task_id]["status"] = status
        return copy.deepcopy(self.db["tasks"][task_id])

    def transfer_to_human_agents(self, summary: str) -> str:
        """Hand the conversation to a human agent (for what the tools cannot do)."""
        return "Transfer successful"


MOCK_TOOLS = [
    ToolSpec(name="create_task", description="Create a new task for a user.", parameters={
        "type": "object", "properties": {
            "user_id": {"type": "string", "description": "The id of the user the task belongs to."},
            "title": {"type": "string", "description": "The task's title."},
            "description": {"type": "string", "description": "Optional details."}},
        "required": ["user_id", "title"]}),
    ToolSpec(name="get_users", description="List all users with their task ids.",
             parameters={"type": "object", "properties": {}}),
    ToolSpec(name="update_task_status", description="Update a task's status.", parameters={
        "type": "object", "properties": {
            "task_id": {"type": "string", "description": "The task to update."},
            "status": {"type": "string", "enum": list(STATUSES), "description": "The new status."}},
        "required": ["task_id", "status"]}),
    ToolSpec(name="transfer_to_human_agents", description="Transfer the user to a human agent, with a summary.",
             parameters={"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}),
]
DOMAINS = {"mock": ("tools_runtime.adapters.tau2:MockDomain", MOCK_TOOLS)}


def domain_of(tasks_path: Path) -> str:
    """The domain a tasks.json belongs to (its folder's name)."""
    return tasks_path.resolve().parent.name


def load_tau2(tasks_path: Path, domain: str | None = None) -> list[tuple[Task, Scenario]]:
    """(task, scenario) of every task in τ²'s tasks.json, on the domain's backend."""
    domain = domain or domain_of(tasks_path)
    if domain not in DOMAINS:
        raise ValueError(f"τ² domain {domain!r} has no backend here (supported: {', '.join(DOMAINS)})")
    folder = tasks_path.resolve().parent
    db = json.loads((folder / "db.json").read_text(encoding="utf-8"))
    policy = (folder / "policy.md").read_text(encoding="utf-8") if (folder / "policy.md").exists() else ""
    raw = json.loads(tasks_path.read_text(encoding="utf-8"))
    return [convert(t, domain, db, policy) for t in raw]


def _initial_config(raw: dict[str, Any], db: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The backend config of a task (db + initialisation), and what of τ²'s set-up is not supported."""
    start = copy.deepcopy(db)
    init = raw.get("initial_state") or {}
    unsupported = []
    agent_data = ((init.get("initialization_data") or {}).get("agent_data")) or {}
    for table, rows in agent_data.items():
        for key, row in rows.items():
            merged = start.setdefault(table, {}).setdefault(key, {})
            merged.update(copy.deepcopy(row))
    actions = []
    for a in init.get("initialization_actions") or []:
        if a.get("env_type", "assistant") == "assistant":
            actions.append([a["func_name"], a.get("arguments") or {}])
        else:
            unsupported.append("user-side initialization actions")
    # A message history carries calls already made: replay them so the database matches.
    for m in init.get("message_history") or []:
        for call in m.get("tool_calls") or []:
            actions.append([call["name"], call.get("arguments") or {}])
    return {"db": start, "init_actions": actions}, unsupported


def convert(raw: dict[str, Any], domain: str, db: dict[str, Any], policy: str = "") -> tuple[Task, Scenario]:
    """One τ² task as (Task, Scenario)."""
    cls, tools = DOMAINS[domain]
    crit = raw.get("evaluation_criteria") or {}
    gold = [Action(tool=a["name"], arguments=dict(a.get("arguments") or {})) for a in crit.get("actions") or []]
    # τ² compares only these arguments of an action (the gold still runs with all of them).
    compare = {str(i): list(a["compare_args"]) for i, a in enumerate(crit.get("actions") or [])
               if a.get("compare_args") is not None}
    basis_raw = crit.get("reward_basis") or DEFAULT_BASIS
    config, unsupported = _initial_config(raw, db)
    if "ENV_ASSERTION" in basis_raw or crit.get("env_assertions"):
        unsupported.append("env_assertions")
    scenario_txt = raw.get("user_scenario") or {}
    instructions = scenario_txt.get("instructions")
    if isinstance(instructions, dict):
        instructions = " ".join(str(v) for v in instructions.values())
    task = Task(id=str(raw["id"]), env_id=f"tau2-{domain}", instruction=str(instructions or raw.get("ticket") or ""),
                persona=str(scenario_txt.get("persona") or ""), gold_actions=gold,
                communicate_info=[str(c) for c in crit.get("communicate_info") or []],
                nl_assertions=[str(n) for n in crit.get("nl_assertions") or []],
                reward_basis=[BASIS[b] for b in basis_raw if b in BASIS],
                meta={"source": "tau2", "domain": domain, "unsupported": sorted(set(unsupported)),
                      "require_all_actions": True, "compare_args": compare})
    names = [t.name for t in tools]
    # The class is one of this module's own domains (DOMAINS), chosen by this code, not by the data.
    trust_classes([cls])
    wf = Workflow(id=f"tau2-{domain}", doc_id=f"tau2-{domain}", title=f"τ² {domain} domain", steps=[policy] if policy else [],
                  execution_graph=format_graph(graph_from_stages([names])), tools=list(tools),
                  backend=BackendRef(kind="python", classes=[cls], initial_config={cls.rsplit(":", 1)[1]: config}))
    plan = [PlannedCall(tool=a.tool, arguments=dict(a.arguments), sources={k: ArgSource(kind="const")
                                                                          for k in a.arguments}) for a in gold]
    sc = Scenario(id=f"tau2-{domain}:{task.id}", workflow=wf, persona=task.persona,
                  goals=[Goal(description=task.instruction)], initial_state={}, plan=plan, task=task)
    return task, sc


def db_hash(scenario: Scenario, calls: list[tuple[str, dict[str, Any]]]) -> str:
    """τ²'s database check, our side: run `calls` on a fresh backend and hash the database."""
    env = ToolEnvironment(scenario.workflow, None)
    for name, args in calls:
        env.call(name, args)
    return state_hash(env.backend.view())


def db_check(scenario: Scenario, calls: list[tuple[str, dict[str, Any]]]) -> bool:
    """True when `calls` leave the database as the gold actions do (τ²'s DB reward, by hashes)."""
    gold = [(c.tool, c.arguments) for c in scenario.plan]
    return db_hash(scenario, calls) == db_hash(scenario, gold)
