"""One-shot mode: one call to the `synthesizer` role per text, then a replay verification.

The model writes the whole trajectory (tools, execution graph, initial backend state, dialogue with
tool results) as one block in the synthesizer format. Nothing it wrote is trusted: the tools are
validated and turned into a Workflow, a fresh simulated backend starts from the written state, and
every tool call of the dialogue is executed again. The trajectory passes only when

- schema     every call names a defined tool with arguments valid for its schema;
- execution  every tool line equals what the backend returns at that point (a result the state
             contradicts fails), errors only where the block planned them and then recovered;
- order      the successful calls respect the execution graph and cover its nodes;
- dialogue   roles are well formed, every call is answered once by a tool line naming the same
             tool, the dialogue ends with an assistant reply that no tool result contradicts.

There is no reference plan to compare the final state with (the model wrote the task), so the
state check of the full pipeline is replaced by the execution check above, call by call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from gem_agents.models.client import ModelCallError, ModelClient
from gem_agents.prompting import load_prompt, prompts_hash
from gem_agents.synthesizer.format import FormatError, SynthTrajectory, extract_block, parse
from tools_runtime.records import Document, Failure, Provenance, Scenario, Trajectory, Verdict, Workflow
from tools_runtime.stats import compute_stats
from tools_runtime.verification.replay import Replay, call_name_args, replay_dialogue, tool_calls_of
from tools_runtime.verification.verify import check_claims, check_dialogue, check_execution, check_graph_order
from tools_runtime.workflow_io import WorkflowError, workflow_from_dict

PROMPT_FILE = "oneshot.txt"
STAGE = "synthesizer"

# Failure codes only this mode emits (the rest are tools_runtime.verification.verify.FAILURE_CODES).
ONESHOT_FAILURE_CODES = {
    "model_error": "model",
    "unparseable_output": "format",
    "invalid_workflow": "schema",
    "tool_name_mismatch": "dialogue",
    "replay_error": "execution",
}


def oneshot_prompt() -> str:
    """The system prompt of the synthesizer role (also the instruction of the training pairs)."""
    return load_prompt("gem_agents.synthesizer", PROMPT_FILE)


def oneshot_messages(text: str) -> list[dict[str, Any]]:
    """The chat a synthesizer model answers: the instruction, then the source text."""
    return [{"role": "system", "content": oneshot_prompt()}, {"role": "user", "content": text}]


@dataclass
class OneShotOutcome:
    """One text's one-shot result: the raw answer, what parsed, the workflow and the verified trajectory."""

    doc_id: str
    raw: str
    trajectory: Trajectory
    parsed: SynthTrajectory | None = None
    workflow: Workflow | None = None

    @property
    def passed(self) -> bool:
        """True when the trajectory replay-verified."""
        return bool(self.trajectory.verdict and self.trajectory.verdict.passed)


def check_tool_names(messages: list[dict[str, Any]]) -> list[Failure]:
    """A tool line that names a tool must name the one its call id called."""
    called: dict[str, str] = {}
    failures = []
    for i, msg in enumerate(messages):
        for call in tool_calls_of(msg):
            name, _, call_id = call_name_args(call)
            called.setdefault(call_id, name)
        if msg.get("role") == "tool" and msg.get("name"):
            want = called.get(str(msg.get("tool_call_id") or ""))
            if want is not None and msg["name"] != want:
                failures.append(Failure(code="tool_name_mismatch", index=i,
                                        reason=f"tool line {i} answers a call of {want} but names {msg['name']}"))
    return failures


def build_workflow(st: SynthTrajectory, workflow_id: str, doc_id: str = "", title: str = "") -> Workflow:
    """The Workflow the block defines (tools normalized and schema-checked, graph validated)."""
    body: dict[str, Any] = {"id": workflow_id, "doc_id": doc_id, "title": title,
                            "execution_graph": st.execution_graph, "tools": st.tools}
    if st.effects or st.entities:  # an environment: calls run as declared, not by name
        body |= {"effects": st.effects, "entities": st.entities}
    return workflow_from_dict(body, where=f"{workflow_id}")


def replay_verify(st: SynthTrajectory, workflow: Workflow) -> tuple[Verdict, Replay, int]:
    """Replay the block's dialogue on a backend at its written state and run every check."""
    messages = st.messages
    failures = check_dialogue(messages) + check_tool_names(messages)
    if any(f.code in ("unknown_role", "empty_dialogue") for f in failures):
        return Verdict(passed=False, failures=failures), Replay(), 0
    scenario = Scenario(id=f"{workflow.id}:s0", workflow=workflow, initial_state=copy.deepcopy(st.initial_state),
                        planned_errors=list(st.planned_errors))
    try:
        replay = replay_dialogue(messages, scenario, check_results=True)
    except Exception as exc:  # noqa: BLE001 — a state the backend cannot run on is the model's failure
        failures.append(Failure(code="replay_error", reason=f"the backend cannot run on the written state: "
                                                            f"{type(exc).__name__}: {exc}"))
        return Verdict(passed=False, failures=failures), Replay(), 0
    failures += replay.failures
    exec_failures, recovered = check_execution(replay, scenario)
    failures += exec_failures
    failures += check_graph_order(replay, scenario)
    failures += check_claims(messages, replay)
    failures.sort(key=lambda f: (f.index if f.index is not None else 1 << 30))
    final_hash = replay.env.backend.state_hash() if replay.env is not None else ""
    return Verdict(passed=not failures, failures=failures, final_state_hash=final_hash), replay, recovered


def _failed(doc_id: str, raw: str, code: str, reason: str, provenance: Provenance, index: int | None = None
            ) -> OneShotOutcome:
    traj = Trajectory(id=f"{doc_id}:oneshot", workflow_id=f"{doc_id}:oneshot", messages=[],
                      verdict=Verdict(passed=False, failures=[Failure(code=code, reason=reason, index=index)]),
                      provenance=provenance)
    return OneShotOutcome(doc_id=doc_id, raw=raw, trajectory=traj)


def verify_text(raw: str, *, doc_id: str, title: str = "", model: str = "") -> OneShotOutcome:
    """Parse a synthesizer answer and replay-verify it (no model call)."""
    provenance = Provenance(stage=STAGE, policy="oneshot", model=model, doc_id=doc_id,
                            prompts_hash=prompts_hash(oneshot_prompt()))
    try:
        st = parse(extract_block(raw))
    except FormatError as exc:
        return _failed(doc_id, raw, "unparseable_output", str(exc), provenance, exc.line)
    wf_id = f"{doc_id}:oneshot"
    try:
        workflow = build_workflow(st, wf_id, doc_id, title)
    except WorkflowError as exc:
        out = _failed(doc_id, raw, "invalid_workflow", str(exc), provenance)
        out.parsed = st
        out.trajectory = out.trajectory.model_copy(update={"messages": st.messages, "tools": st.tools})
        return out
    verdict, replay, recovered = replay_verify(st, workflow)
    scenario = Scenario(id=f"{wf_id}:s0", workflow=workflow, initial_state=st.initial_state,
                        planned_errors=list(st.planned_errors))
    traj = Trajectory(id=wf_id, scenario_id=scenario.id, workflow_id=wf_id, messages=st.messages,
                      tools=[t.to_openai() for t in workflow.tools], verdict=verdict,
                      stats=compute_stats(st.messages, recovered), provenance=provenance,
                      steps=replay.records, scenario=scenario)
    return OneShotOutcome(doc_id=doc_id, raw=raw, trajectory=traj, parsed=st, workflow=workflow)


async def synthesize(doc: Document, client: ModelClient) -> OneShotOutcome:
    """Send `doc` to the synthesizer model once and replay-verify its answer."""
    title = str(doc.meta.get("title") or "")
    try:
        reply = await client.chat(oneshot_messages(doc.text), stage=STAGE)
    except ModelCallError as exc:
        provenance = Provenance(stage=STAGE, policy="oneshot", model=client.model, doc_id=doc.id,
                                prompts_hash=prompts_hash(oneshot_prompt()))
        return _failed(doc.id, "", "model_error", str(exc), provenance)
    return verify_text(reply.text, doc_id=doc.id, title=title, model=client.model)
