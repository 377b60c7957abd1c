"""Stage 2, workflow and tool extraction by a model, with bounded repair rounds.

The model answers in the tagged format or, where the endpoint does structured output, as JSON
matching EXTRACTION_SCHEMA (switch with `structured_output` in the role config). An answer counts
only when it parses, passes `workflow_from_dict` (tool schemas, names, graph: parsed, acyclic,
nodes are tools) and is simulatable (`build_scenario` succeeds and, by default, the scripted
reference rollout verifies). Otherwise the exact errors go back to the model in a repair message,
at most `repair_rounds` times; then the document is rejected with those errors as reasons.
"""

from __future__ import annotations

from typing import Any

from gem_agents.models.client import ModelCallError, ModelClient
from gem_agents.policies.scripted_assistant import scripted_assistant
from gem_agents.prompting import fill, load_prompt
from gem_agents.registry import register
from gem_agents.stages import ExtractionResult
from gem_agents.stages.base import GraphStep, Stage, StageEnv
from gem_agents.stages.offline_extractor import extract_offline
from gem_agents.stages.relevance import PROMPTS, wants_json_schema
from gem_agents.stages.tagged import ParseError, parse_extraction
from gem_agents.user.scripted import scripted_user
from graphs.roles import Roles
from graphs.rollouts import run_dialogue
from tools_runtime.env_validate import errors as env_errors
from tools_runtime.env_validate import ground_sources, validate_environment
from tools_runtime.records import Document, Relevance, Workflow
from tools_runtime.scenario import ScenarioError, build_scenario
from tools_runtime.spec_schema import environment_schema
from tools_runtime.workflow_io import WorkflowError, workflow_from_dict


def _answer_schema() -> dict[str, Any]:
    """The published environment schema minus what the pipeline fills in (ids, labels, backend)."""
    schema = environment_schema()
    ours = ("id", "doc_id", "backend", "spec_version", "domain", "platform")
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k not in ours}
    schema["required"] = [k for k in schema.get("required", []) if k not in ours]
    for k in ("title", "steps", "execution_graph", "tools"):
        if k not in schema["required"]:
            schema["required"].append(k)
    return schema


# Structured output answers in the environment schema (tools_runtime/spec_schema.py: refs inlined,
# bounded, so grammar-constrained decoders accept it).
EXTRACTION_SCHEMA: dict[str, Any] = _answer_schema()

SCRIPTED = Roles(user=scripted_user, assistant=scripted_assistant, name="scripted")


def extract_messages(doc: Document, *, json_mode: bool = False) -> list[dict[str, Any]]:
    """The first message of a stage-2 call."""
    fmt = load_prompt(PROMPTS, "extract_json.txt" if json_mode else "extract_tagged.txt").strip()
    return [{"role": "user", "content": fill(load_prompt(PROMPTS, "extract.txt"), output_format=fmt,
                                            text=doc.text)}]


def repair_message(errors: list[str]) -> dict[str, Any]:
    """The follow-up that sends the validator's exact errors back to the model."""
    listed = "\n".join(f"- {e}" for e in errors)
    return {"role": "user", "content": fill(load_prompt(PROMPTS, "repair.txt"), errors=listed)}


async def check_simulatable(workflow: Workflow, *, seed: int = 0, rollout: bool = True) -> list[str]:
    """Why `workflow` cannot be simulated ([] when it can): the scenario, then the scripted rollout."""
    try:
        scenario = build_scenario(workflow, seed)
    except ScenarioError as exc:
        return [f"not simulatable: {exc}"]
    if not rollout:
        return []
    traj = await run_dialogue(scenario, SCRIPTED)
    if traj.verdict is not None and traj.verdict.passed:
        return []
    failures = traj.verdict.failures if traj.verdict is not None else []
    return [f"scripted reference run failed: {f.code}: {f.reason}" for f in failures] or \
        ["scripted reference run failed without a verdict"]


def workflow_data(data: dict[str, Any], doc: Document, relevance: Relevance | None = None) -> dict[str, Any]:
    """A parsed extraction plus the document's identity and stage-1 labels, ready for workflow_from_dict."""
    out = {k: v for k, v in data.items() if k in ("title", "steps", "execution_graph", "tools", "effects",
                                                  "entities", "initial_state", "policy", "user_tools")}
    out["id"] = doc.id
    out["doc_id"] = str(doc.meta.get("parent") or doc.id)
    out.setdefault("title", str(doc.meta.get("title") or (relevance.summary if relevance else "")))
    if relevance is not None:
        out["domain"] = relevance.domain
        out["platform"] = relevance.platform
    return out


async def validate_extraction(data: dict[str, Any], doc: Document, *, relevance: Relevance | None = None,
                              max_tools: int = 64, rollout: bool = True) -> tuple[Workflow | None, list[str]]:
    """(workflow, []) when the extraction is usable, else (None, the exact errors)."""
    tools = data.get("tools")
    if isinstance(tools, list) and len(tools) > max_tools:
        return None, [f"too many tools: {len(tools)} (at most {max_tools})"]
    try:
        workflow = workflow_from_dict(workflow_data(data, doc, relevance), where="extraction")
    except WorkflowError as exc:
        return None, [str(exc)]
    if workflow.effects or workflow.entities:
        # An environment: the validator names every problem (effects, state, provenance spans, UI
        # gestures that should have been folded); its tasks, not a scripted rollout, prove it runs.
        problems = [str(i) for i in env_errors(validate_environment(workflow, doc.text))]
        if problems:
            return None, problems
        # Sources get their spans; a "text" value that is not in the text is kept, marked invented.
        return ground_sources(workflow, doc.text)[0], []
    errors = await check_simulatable(workflow, rollout=rollout)
    return (None, errors) if errors else (workflow, [])


async def extract_workflow(doc: Document, client: ModelClient, *, relevance: Relevance | None = None,
                           repair_rounds: int = 2, max_tools: int = 64, rollout: bool = True,
                           json_mode: bool | None = None) -> ExtractionResult:
    """Stage 2 for one document with a model: ask, validate, repair at most `repair_rounds` times.

    `rounds` in the result counts the model calls made (1 + repairs). `json_mode=None` follows the
    role config (`structured_output`). Model call failures (ModelCallError) propagate.
    """
    if client.cfg.draft == "offline":  # a small model corrects the rule-based draft (stages/draft_revise.py)
        from gem_agents.stages.draft_revise import revise_extraction
        return await revise_extraction(doc, client, relevance=relevance, repair_rounds=repair_rounds,
                                       max_tools=min(max_tools, 12))
    json_mode = wants_json_schema(client.cfg) if json_mode is None else json_mode
    messages = extract_messages(doc, json_mode=json_mode)
    errors: list[str] = []
    for attempt in range(repair_rounds + 1):
        reply = await client.chat(messages, json_schema=EXTRACTION_SCHEMA if json_mode else None,
                                  schema_name="workflow", stage="extract")
        try:
            data = parse_extraction(reply.text)
        except ParseError as exc:
            errors = [f"could not parse the answer: {exc}"]
        else:
            workflow, errors = await validate_extraction(data, doc, relevance=relevance, max_tools=max_tools,
                                                         rollout=rollout)
            if workflow is not None:
                return ExtractionResult(workflow=workflow, rounds=attempt + 1, decided_by="model")
        messages = [*messages, {"role": "assistant", "content": reply.text}, repair_message(errors)]
    return ExtractionResult(rejected=errors, rounds=repair_rounds + 1, decided_by="model")


# ---------------------------------------------------------------------------------------------------------
# The stage object: `gem run`'s extract node and `gem extract` call this.

# The rule-based extractor names one tool per step; more than this is never a useful scenario.
OFFLINE_MAX_TOOLS = 12


async def run_extract(env: StageEnv, doc: Document, relevance: Relevance | None, *,
                      verify: bool = True) -> ExtractionResult:
    """Stage 2 in `env`: the extract model (repaired) or, offline, the rule-based extractor.

    With `verify`, a workflow is kept only when its scripted reference rollout verifies; a grounded
    environment (one with effects) is checked by its tasks instead. A model call that fails rejects
    the document with the reason (it never raises ModelCallError).
    """
    cfg = env.config
    client = env.client("extract")
    try:
        if client is not None:
            return await extract_workflow(doc, client, relevance=relevance, repair_rounds=cfg.limits.repair_rounds,
                                          max_tools=cfg.limits.max_tools, rollout=verify)
        domain, platform = (relevance.domain, relevance.platform) if relevance is not None else ("", "")
        result = extract_offline(doc, max_tools=min(OFFLINE_MAX_TOOLS, cfg.limits.max_tools), domain=domain,
                                 platform=platform)
    except ModelCallError as exc:
        return ExtractionResult(rejected=[f"model call failed: {exc}"], decided_by="error")
    if result.workflow is not None and verify and not result.workflow.effects:
        errors = await check_simulatable(result.workflow, rollout=True)
        if errors:
            return ExtractionResult(rejected=errors, decided_by="offline")
    return result


def _extract_graph_step(stage: Stage, env: StageEnv) -> GraphStep:
    async def step(doc: Document, relevance: Relevance) -> tuple[Workflow | None, list[str]]:
        result = await stage.run(env, doc, relevance)
        return result.workflow, result.rejected

    return step


EXTRACT = register("stage", "extract", Stage(
    name="extract", run=run_extract, roles=("extract",), graph_step=_extract_graph_step,
    reads=("limits.repair_rounds", "limits.max_tools"),
    summary="steps, an execution graph and tools from the text (the extract model, or rules offline)"))
