"""Model tokens per verified trajectory on the fake server, with three savings each switched off.

    .venv/bin/python benchmarks/bench_tokens.py [CORPUS.jsonl] [--docs N] [--rollouts R] [--json]

Every stage that can use a model does (filter, extract, user, assistant; tool_env where asked),
through the real ChatOpenAI client against the fake OpenAI-compatible server on 127.0.0.1. The
server plays an oracle model: the filter answers from the corpus's label_hint, the extractor with
the rule-based extractor's workflow (sent back unchanged on repair), user and assistant with the
scripted policies, the tool environment with the backend's own result. Token counts are the fake
server's usage figures (characters / 4), so the *ratios* are the result, not the absolute numbers.

Settings (baseline: all on):
- cache: the run is executed twice (a crashed run restarted); with the call cache the second
  execution is served from it. Off: both executions pay.
- pre-filter: obvious non-procedures are dropped before the filter model is called. Off: every
  document goes to the filter model (the oracle then keeps every real procedure, so the verified
  count can only rise — both columns are printed).
- deterministic tool execution: the stateful backend executes every call. Off: a tool-environment
  model is asked for every call's result (as in a pipeline whose tool results are model-written),
  with the same conversation view our `chat_tool_env` policy sends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.config import RunConfig  # noqa: E402
from gem_agents.models.hub import ModelHub  # noqa: E402
from gem_agents.policies.chat import chat_tool_env  # noqa: E402
from gem_agents.roles_factory import make_roles  # noqa: E402
from gem_agents.stages.extract import extract_workflow  # noqa: E402
from gem_agents.stages.offline_extractor import extract_offline  # noqa: E402
from gem_agents.stages.prefilter import POSITIVE_LABELS  # noqa: E402
from gem_agents.stages.relevance import guess_labels, judge_relevance  # noqa: E402
from gem_agents.testing.fake_openai import FakeOpenAIServer, Reply  # noqa: E402
from gem_agents.testing.role_responder import RoleResponder  # noqa: E402
from graphs.roles import RoleView  # noqa: E402
from graphs.rollouts import run_dialogue  # noqa: E402
from tools_runtime.records import Document, Trajectory  # noqa: E402
from tools_runtime.scenario import ScenarioError, build_scenario  # noqa: E402

DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
MODEL_ROLES = ("filter", "extract", "user", "assistant", "tool_env")


class OracleResponder:
    """The fake server's model: dispatches on the structured-output name or the presence of tools."""

    def __init__(self, docs: list[Document], labels: dict[str, str]):
        self.by_text = {d.text: d for d in docs}
        self.labels = labels
        self.roles = RoleResponder([])

    def _doc(self, body: dict[str, Any]) -> Document:
        prompt = body["messages"][0]["content"]
        for text, doc in self.by_text.items():
            if text in prompt:
                return doc
        raise LookupError("no corpus document in this prompt")

    def __call__(self, body: dict[str, Any]) -> Reply:
        name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
        if name == "relevance":
            doc = self._doc(body)
            keep = self.labels.get(doc.id) in POSITIVE_LABELS
            domain, platform, task = guess_labels(doc.text)
            return Reply(content=json.dumps({"multi_step": keep, "summary": doc.text.splitlines()[0][:120],
                                             "domain": domain, "platform": platform, "task": task}))
        if name == "workflow":
            result = extract_offline(self._doc(body), max_tools=12)
            wf = result.workflow
            if wf is None:
                return Reply(content=json.dumps({"title": "", "steps": [], "execution_graph": "", "tools": []}))
            return Reply(content=json.dumps({"title": wf.title, "steps": wf.steps, "execution_graph": wf.execution_graph,
                                             "tools": [t.model_dump(mode="json", exclude_none=True) for t in wf.tools]}))
        if name == "tool_result":
            ask = json.loads(body["messages"][-1]["content"].split("Call:\n", 1)[1])
            return Reply(content=json.dumps({"result": ask.get("default_result")}))
        return self.roles(body)


async def model_env_cost(traj: Trajectory, env_policy: Any, scenario: Any) -> None:
    """Ask the tool-environment model for every call of `traj`, as a model-played environment would."""
    msgs = traj.messages
    for i, m in enumerate(msgs):
        if m["role"] != "tool":
            continue
        call = next((c for prev in reversed(msgs[:i]) for c in prev.get("tool_calls") or []
                     if c.get("id") == m.get("tool_call_id")), None)
        if call is None:
            continue
        try:
            result = json.loads(m["content"])
        except ValueError:
            result = m["content"]
        view = RoleView(role="tool_env", messages=msgs[:i], scenario=scenario,
                        request={"name": call["function"]["name"], "arguments": call["function"]["arguments"],
                                 "default_result": result})
        await env_policy(view)


async def pipeline(docs: list[Document], hub: ModelHub, oracle: OracleResponder, *, use_prefilter: bool,
                   deterministic: bool, rollouts: int) -> dict[str, int]:
    """Filter → extract → simulate every document; counts of what came out."""
    roles = make_roles(hub)
    env_policy = chat_tool_env(hub.client("tool_env"))
    sem = asyncio.Semaphore(8)
    counts = {"kept": 0, "workflows": 0, "trajectories": 0, "verified": 0}

    async def one(doc: Document) -> None:
        async with sem:
            rel = await judge_relevance(doc, hub.client("filter"), use_prefilter=use_prefilter)
            if not rel.multi_step:
                return
            counts["kept"] += 1
            res = await extract_workflow(doc, hub.client("extract"), relevance=rel, repair_rounds=1)
            if res.workflow is None:
                return
            counts["workflows"] += 1
            for i in range(rollouts):
                try:
                    sc = build_scenario(res.workflow, i)
                except ScenarioError:
                    continue
                oracle.roles.scenarios.append(sc)
                traj = await run_dialogue(sc, roles, rollout=i)
                if not deterministic:
                    await model_env_cost(traj, env_policy, sc)
                counts["trajectories"] += 1
                counts["verified"] += bool(traj.verdict and traj.verdict.passed)

    await asyncio.gather(*(one(d) for d in docs))
    return counts


def run_setting(docs, labels, *, cache: bool, use_prefilter: bool, deterministic: bool, rollouts: int) -> dict:
    """One setting: the pipeline executed twice (a restarted run); tokens over both executions."""
    oracle = OracleResponder(docs, labels)
    with FakeOpenAIServer(oracle) as srv, tempfile.TemporaryDirectory() as tmp:
        role = {"provider": "openai", "model": "fake-model", "base_url": srv.base_url, "concurrency": 16}
        cfg = RunConfig.model_validate({"roles": {r: role for r in MODEL_ROLES}})
        tokens, counts, start = 0, {}, time.perf_counter()
        for _ in range(2):
            hub = ModelHub(cfg, Path(tmp) / "cache.sqlite", use_cache=cache)
            counts = asyncio.run(pipeline(docs, hub, oracle, use_prefilter=use_prefilter,
                                          deterministic=deterministic, rollouts=rollouts))
            totals = hub.meter.totals()
            tokens += totals["input_tokens"] + totals["output_tokens"]
            hub.close()
        errors = list(srv.responder_errors)
    return {**counts, "tokens": tokens, "requests": srv.count, "responder_errors": len(errors),
            "tokens_per_verified": tokens / counts["verified"] if counts.get("verified") else float("inf"),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    """Print tokens per verified trajectory for the baseline and each saving switched off."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--docs", type=int, default=60, help="first N documents of the corpus")
    ap.add_argument("--rollouts", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.corpus.exists():
        sys.exit(f"{args.corpus}: corpus not found (../shared is needed beside the checkout)")
    rows = [json.loads(line) for line in args.corpus.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[: args.docs]
    docs = [Document(id=r["id"], text=r["text"], source=r.get("source", "")) for r in rows]
    labels = {r["id"]: r.get("label_hint", "") for r in rows}
    settings = {
        "baseline (all on)": {"cache": True, "use_prefilter": True, "deterministic": True},
        "cache off": {"cache": False, "use_prefilter": True, "deterministic": True},
        "pre-filter off": {"cache": True, "use_prefilter": False, "deterministic": True},
        "deterministic tools off": {"cache": True, "use_prefilter": True, "deterministic": False},
    }
    results = {name: run_setting(docs, labels, rollouts=args.rollouts, **s) for name, s in settings.items()}
    base = results["baseline (all on)"]["tokens_per_verified"]
    for r in results.values():
        r["ratio_to_baseline"] = round(r["tokens_per_verified"] / base, 2) if base else None
    if args.json:
        print(json.dumps({"docs": len(docs), "rollouts": args.rollouts, "results": results}, indent=2))
        return
    print(f"{len(docs)} documents ({sum(labels[d.id] in POSITIVE_LABELS for d in docs)} procedural by label), "
          f"{args.rollouts} rollouts per workflow, each setting executed twice (a restarted run)")
    print(f"{'setting':26} {'kept':>5} {'wf':>4} {'verified':>8} {'tokens':>9} {'tok/verified':>12} {'ratio':>6} {'s':>6}")
    for name, r in results.items():
        print(f"{name:26} {r['kept']:>5} {r['workflows']:>4} {r['verified']:>8} {r['tokens']:>9} "
              f"{r['tokens_per_verified']:>12.0f} {r['ratio_to_baseline']:>6} {r['seconds']:>6}")
    bad = sum(r["responder_errors"] for r in results.values())
    if bad:
        print(f"warning: the fake server could not answer {bad} requests (they count as failed calls)")


if __name__ == "__main__":
    main()
