"""Measure stage 4 (refinement into new tasks) in the shape of the paper's table, and what it adds.

For the hand-written environments (examples/environments, with their tasks; benchmarks/environments, one
with 14 tools, enough for the paper's 8.6 tool types without repetition) and for every environment
the offline stand-ins get from the dev corpus (relevance pre-filter → offline extractor → offline task
writer), simulate each valid task once with the scripted roles, refine every verified original with
the task operators (tools_runtime/refine_tasks.py: one refined task per operator plus one composing
them all), simulate and verify each refined task again, and print:

- complexity (messages, user turns, tool types, tool calls, errors recovered) of originals and of
  the verified refined trajectories (composed ones apart), next to the paper's 30/5.0/7.8 → 46/8.6/16.3;
- `repetition_share` (refined calls repeating a tool of an earlier request with arguments of the same
  shape; target ≤ 0.2) and `new_capability_share` (refined tasks using a tool or branch the original
  did not);
- per operator: refined tasks produced (gold runs), verified, dropped, with the drop codes and reasons;
- the legacy scenario operators (tools_runtime/refine_ops.py) on examples/workflows, for comparison.

`--fake-judge` adds a judge role through the fake server that passes every assertion: it exercises the
judge path (refusals and assertions decided by a judge), and says nothing of any judge's quality.

`--fake-server` sends the refine role through the fake OpenAI server instead: the server answers each
refine request with the operators' tasks written as the model's JSON, so the model path (prompt with
dialogue/text/environment/policy → JSON → pydantic → gold → simulate → verify) is measured end to end.
Those answers are the offline operators' output relayed by a test double, not a model's quality.

    .venv/bin/python benchmarks/measure_refinement.py [CORPUS.jsonl] [--limit N] [--fake-server] [--fake-judge] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.audit import refinement, run_data  # noqa: E402
from gem_agents.config import InputConfig, RunConfig  # noqa: E402
from gem_agents.ingest import read_documents  # noqa: E402
from gem_agents.models.hub import ModelHub  # noqa: E402
from gem_agents.roles_factory import make_roles  # noqa: E402
from gem_agents.stages.judge import JudgeAnswer, judge_callable  # noqa: E402
from gem_agents.stages.offline_extractor import extract_offline  # noqa: E402
from gem_agents.stages.refine import refine, refine_to_tasks  # noqa: E402
from gem_agents.stages.relevance import judge_relevance  # noqa: E402
from gem_agents.stages.tasks import write_tasks_offline  # noqa: E402
from graphs.rollouts import run_dialogue  # noqa: E402
from tools_runtime.records import Trajectory, Workflow  # noqa: E402
from tools_runtime.refine_tasks import (  # noqa: E402
    RefineContext,
    new_capability_share,
    refine_candidates,
    repetition_share,
    requests_of,
)
from tools_runtime.scenario import ScenarioError, build_scenario  # noqa: E402
from tools_runtime.stats import mean_stats  # noqa: E402
from tools_runtime.tasks import Task, TaskRejected, scenario_from_task  # noqa: E402
from tools_runtime.verification.verify import verify  # noqa: E402
from tools_runtime.workflow_io import load_workflow, load_workflows  # noqa: E402

LARGE_ENVS = REPO / "benchmarks" / "environments"
DEFAULT_CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
# An environment needs at least the paper's 8.6 tool types (rounded up) for a refined task to reach them
# without calling a tool it already used for an earlier request.
ENOUGH_TOOLS = 9
PAPER = {"before": {"messages": 30.0, "tool_types": 5.0, "tool_calls": 7.8},
         "after": {"messages": 46.0, "tool_types": 8.6, "tool_calls": 16.3}}
COLUMNS = ("messages", "user_turns", "tool_types", "tool_calls", "errors_recovered")


def example_environments(folder: Path = REPO / "examples" / "environments") -> list[tuple[Workflow, list[Task], str]]:
    """The hand-written environments with their tasks (and their steps as the text)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        wf = load_workflow(path)
        tasks_file = path.with_suffix(".tasks.jsonl")
        tasks = [Task.model_validate_json(line) for line in tasks_file.read_text().splitlines() if line.strip()] \
            if tasks_file.exists() else []
        out.append((wf, tasks, "\n".join(wf.steps)))
    return out


async def corpus_environments(path: Path, limit: int | None) -> tuple[list[tuple[Workflow, list[Task], str]], dict]:
    """Environments and valid tasks the offline stand-ins get from the corpus, with the funnel counts."""
    docs, _ = read_documents(path, InputConfig())
    funnel = Counter()
    out = []
    for doc in docs[:limit] if limit else docs:
        funnel["documents"] += 1
        rel = await judge_relevance(doc, None)
        if not rel.multi_step:
            continue
        funnel["relevant"] += 1
        res = extract_offline(doc, domain=rel.domain, platform=rel.platform)
        if res.workflow is None:
            continue
        funnel["environments"] += 1
        tasks, _rejected = write_tasks_offline(res.workflow, doc.text, k=3)
        if tasks:
            funnel["with_tasks"] += 1
            out.append((res.workflow, tasks, doc.text))
    return out, dict(funnel)


class RelayResponder:
    """Fake-server responder: answers the next refine request with the proposal set beforehand."""

    def __init__(self) -> None:
        self.reply = '{"tasks": []}'

    def __call__(self, body: dict[str, Any]) -> Any:
        from gem_agents.testing.fake_openai import text

        return text(self.reply)


class PassingJudge:
    """Fake-server judge: scores 4 on every criterion and passes every assertion the prompt lists.

    A rubber stamp: it measures the judge path (prompt → JSON → verdict with assertions), never whether a
    refusal really happened."""

    def __call__(self, body: dict[str, Any]) -> Any:
        from gem_agents.testing.fake_openai import text

        prompt = str(body["messages"][0]["content"])
        block = prompt.split("ASSERTIONS:\n", 1)[-1].split("\n\nVERIFICATION:", 1)[0]
        return text(json.dumps({
            "scores": {c: {"score": 4, "reason": "double"} for c in
                       ("grounded_in_text", "natural_user", "helpful_assistant", "policy_followed")},
            "nl_assertions": [{"assertion": x[2:], "passed": True, "reason": "double"}
                              for x in block.splitlines() if x.startswith("- ")],
            "blame": None, "blame_reason": ""}))


def as_proposal(parent: Task, tasks: list[Task]) -> str:
    """Refined tasks written back as the model refiner's JSON answer (only their new requests)."""
    items = []
    for t in tasks:
        reqs = requests_of(t)[1:]
        info = {i.key: i for i in t.known_info}
        requests = []
        for r in reqs:
            actions = t.gold_actions[r["start"]:r["end"]]
            keys = {k for a in actions for k, v in info.items() if v.value in a.arguments.values()}
            slip = next(({"key": s["key"].split("@")[0], "wrong": s["wrong"]} for s in t.meta.get("slips", [])
                         if any(s["tool"] == a.tool for a in actions)), None)
            requests.append({"instruction": r["instruction"],
                             "known_info": [{"key": k.split("@")[0], "value": info[k].value, "quote": info[k].source.quote,
                                             "withhold": info[k].withhold} for k in sorted(keys)],
                             "gold_actions": [a.model_dump() for a in actions],
                             "communicate_info": [c for c in t.communicate_info if c not in parent.communicate_info],
                             "nl_assertions": [a for a in t.nl_assertions if a not in parent.nl_assertions],
                             "slip": slip})
        items.append({"operator": (t.meta.get("operators") or ["other"])[-1] if not t.meta.get("composed")
                      else "composed", "requests": requests,
                      "forbidden_tools": [f for f in t.forbidden_tools if f not in parent.forbidden_tools]})
    return json.dumps({"tasks": items})


async def measure(envs: list[tuple[Workflow, list[Task], str]], *, fake_server: bool = False,
                  fake_judge: bool = False) -> dict[str, Any]:
    """Originals, refined trajectories and the per-operator funnel over every valid task of `envs`."""
    roles = make_roles(None)
    before, originals_n = [], 0
    refined: list[Trajectory] = []
    produced, verified, dropped = Counter(), Counter(), Counter()
    drop_codes: dict[str, Counter] = defaultdict(Counter)
    examples: dict[str, list[str]] = defaultdict(list)
    reverified = 0
    per_env: dict[str, dict[str, Any]] = {}
    audit_docs: list[dict[str, Any]] = []
    audit_trajs: list[tuple[str, Trajectory]] = []
    server = hub = relay = judge_server = judge_client = None
    roles_cfg: dict[str, Any] = {}
    if fake_server:
        from gem_agents.testing.fake_openai import FakeOpenAIServer

        relay = RelayResponder()
        server = FakeOpenAIServer(relay).start()
        roles_cfg["refine"] = {"provider": "openai", "base_url": server.base_url, "model": "relay-of-offline-operators",
                               "structured_output": "tagged", "max_retries": 0}
    if fake_judge:
        from gem_agents.testing.fake_openai import FakeOpenAIServer

        judge_server = FakeOpenAIServer(PassingJudge()).start()
        roles_cfg["judge"] = {"provider": "openai", "base_url": judge_server.base_url, "model": "passing-judge-double",
                              "structured_output": "tagged", "max_retries": 0}
    if roles_cfg:
        hub = ModelHub(RunConfig.model_validate({"cache": False, "roles": roles_cfg}))
        judge_client = hub.client("judge") if fake_judge else None
    try:
        for wf, tasks, text in envs:
            for task in tasks:
                try:
                    sc = scenario_from_task(wf, task, 0)
                except TaskRejected:
                    continue
                orig = await run_dialogue(sc, roles)
                if not (orig.verdict and orig.verdict.passed):
                    continue
                originals_n += 1
                before.append(orig.stats)
                client = None
                if relay is not None and hub is not None:
                    ctx = RefineContext(workflow=wf, text=text, siblings=tasks)
                    cands, _ = refine_candidates(ctx, task, singles=True, compose=True, judge=fake_judge)
                    relay.reply = as_proposal(task, cands)
                    client = hub.client("refine")
                res = await refine_to_tasks(wf, orig, roles, text=text, siblings=tasks, singles=True, compose=True,
                                            client=client, k=8, judge=judge_client)
                for t in res.tasks:
                    produced[_op(t)] += 1
                for d in res.drops:
                    name = "composed" if "+" in d.operator and d.code == "unverified" else d.operator.split("+")[-1]
                    dropped[name] += 1
                    drop_codes[name][d.code] += 1
                    if len(examples[name]) < 3:
                        examples[name].append(f"{d.code}: {d.reason[:150]}")
                for t in res.trajectories:
                    verified[_op(t.scenario.task)] += 1
                    # Judged dialogues re-verify with the judge's recorded decisions (assertions, refusals).
                    decided = judge_callable(JudgeAnswer.model_validate(t.provenance.judge)) \
                        if t.provenance.judge else None
                    reverified += verify(t.messages, t.scenario, judge=decided)[0].passed
                refined += res.trajectories
                row = per_env.setdefault(wf.id, {"tools": len(wf.tools), "composed": []})
                row["composed"] += [t.stats for t in res.trajectories if _op(t.scenario.task) == "composed"]
                audit_docs.append({"doc_id": f"{wf.id}|{task.id}", "status": "kept",
                                   "reasons": [f"refinement: {line}" for line in res.drop_lines()]})
                audit_trajs += [("refined", t) for t in res.trajectories]
    finally:
        if hub is not None:
            hub.close()
        for srv in (server, judge_server):
            if srv is not None:
                srv.stop()
    composed = [t for t in refined if _op(t.scenario.task) == "composed"]
    # The same figures as `gem audit` computes them from a run's store (drop lines + refined trajectories).
    audited = refinement(run_data(audit_docs, audit_trajs))
    envs = {}
    for env_id, row in sorted(per_env.items()):
        best = max(row["composed"], key=lambda st: (st.tool_types, st.tool_calls), default=None)
        envs[env_id] = {"tools": row["tools"], "composed_best": best.model_dump() if best is not None else None}
    big = [st for row in per_env.values() if row["tools"] >= ENOUGH_TOOLS for st in row["composed"]]
    small = [st for row in per_env.values() if row["tools"] < ENOUGH_TOOLS for st in row["composed"]]
    return {
        "originals": originals_n, "refined_verified": len(refined), "refined_reverified": reverified,
        "before": mean_stats(before), "after_all": mean_stats(t.stats for t in refined),
        "after_composed": mean_stats(t.stats for t in composed),
        "repetition_share": _r(repetition_share(refined)), "repetition_share_composed": _r(repetition_share(composed)),
        "new_capability_share": _r(new_capability_share(refined)),
        "operators": {op: {"produced": produced[op], "verified": verified[op], "dropped": dropped[op],
                           "drop_codes": dict(drop_codes[op]), "examples": examples[op]}
                      for op in sorted(set(produced) | set(dropped))},
        "audit": {k: audited[k] for k in ("repetition_share", "new_capability_share", "complexity",
                                          "complexity_composed", "tool_ceiling", "operators")},
        "by_size": {f"composed, environments with >= {ENOUGH_TOOLS} tools": mean_stats(big),
                    f"composed, environments with < {ENOUGH_TOOLS} tools": mean_stats(small)},
        "environments": envs,
    }


def _op(task: Task) -> str:
    return "composed" if task.meta.get("composed") else (task.meta.get("operators") or [task.operator])[-1]


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


async def legacy(limit_seeds: int = 1) -> dict[str, Any]:
    """The scenario operators (chain_goals, add_tools, …) on examples/workflows, for comparison."""
    roles = make_roles(None)
    refined = []
    for wf in load_workflows(REPO / "examples" / "workflows"):
        for seed in range(limit_seeds):
            try:
                sc = build_scenario(wf, seed)
            except ScenarioError:
                continue
            traj = await run_dialogue(sc, roles)
            if not (traj.verdict and traj.verdict.passed):
                continue
            res = await refine(sc, roles, seed=seed, trajectory=traj)
            if res.trajectory is not None:
                refined.append(res.trajectory)
    return {"refined_verified": len(refined), "after": mean_stats(t.stats for t in refined),
            "repetition_share": _r(repetition_share(refined)), "new_capability_share": _r(new_capability_share(refined))}


def print_block(name: str, m: dict[str, Any]) -> None:
    """One block of the table."""
    print(f"{name}: {m['originals']} verified originals → {m['refined_verified']} verified refined trajectories "
          f"(re-verified {m['refined_reverified']}/{m['refined_verified']})")
    print(f"  {'':<26}" + "".join(f"{c:>17}" for c in COLUMNS))
    for label, key, paper in (("before (ours)", "before", "before"), ("before (paper)", None, "before"),
                              ("after, all refined", "after_all", None), ("after, composed", "after_composed", None),
                              ("after (paper)", None, "after")):
        if key is not None:
            row = m[key]
            print(f"  {label:<26}" + "".join(f"{row[c]:>17.2f}" for c in COLUMNS) + f"   n={row['n']}")
        else:
            print(f"  {label:<26}" + "".join(f"{PAPER[paper][c]:>17.2f}" if c in PAPER[paper] else f"{'-':>17}"
                                             for c in COLUMNS))
    print(f"  repetition_share {m['repetition_share']} (composed {m['repetition_share_composed']}; target ≤ 0.2), "
          f"new_capability_share {m['new_capability_share']}")
    for label, row in m["by_size"].items():
        print(f"  {label:<44} messages {row['messages']:.2f}, tool types {row['tool_types']:.2f}, "
              f"tool calls {row['tool_calls']:.2f}  n={row['n']}")
    ceilings = Counter(e["tools"] for e in m["environments"].values())
    print("  environments by number of tools (the ceiling of tool types): "
          + ", ".join(f"{k} tools ×{v}" for k, v in sorted(ceilings.items())))
    a = m["audit"]
    print(f"  gem audit's figures on the same output: repetition_share {a['repetition_share']}, new_capability_share "
          f"{a['new_capability_share']}; per operator produced/simulated/verified/dropped: "
          + "; ".join(f"{op} {r['produced']}/{r['simulated']}/{r['verified']}/{r['dropped']}"
                      for op, r in a["operators"].items()))
    print(f"  {'operator':<18}{'produced':>10}{'verified':>10}{'dropped':>10}  drop codes")
    for op, row in m["operators"].items():
        codes = ", ".join(f"{k} {v}" for k, v in sorted(row["drop_codes"].items(), key=lambda kv: -kv[1]))
        print(f"  {op:<18}{row['produced']:>10}{row['verified']:>10}{row['dropped']:>10}  {codes}")
        for ex in row["examples"][:1]:
            print(f"  {'':<18}  e.g. {ex}")


def main(argv: list[str] | None = None) -> int:
    """Print the tables (or one JSON object); exit 2 when the corpus is missing (the examples are still measured)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--limit", type=int, default=None, help="only the first N corpus documents")
    ap.add_argument("--fake-server", action="store_true", help="the refine role through the fake OpenAI server")
    ap.add_argument("--fake-judge", action="store_true",
                    help="a judge role through the fake server that passes every assertion (the judge path only)")
    ap.add_argument("--no-legacy", action="store_true", help="skip the legacy scenario operators")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"mode": ("fake-server relay" if args.fake_server else "offline")
                               + (" + passing judge double" if args.fake_judge else "")}
    results["examples"] = asyncio.run(measure(example_environments(), fake_server=args.fake_server,
                                              fake_judge=args.fake_judge))
    # A hand-written environment with enough tools (14) for the paper's 8.6 tool types without repeating.
    results["large"] = asyncio.run(measure(example_environments(LARGE_ENVS), fake_server=args.fake_server,
                                           fake_judge=args.fake_judge))
    t1 = time.perf_counter()
    missing = not args.corpus.exists()
    if not missing:
        envs, funnel = asyncio.run(corpus_environments(args.corpus, args.limit))
        results["corpus"] = asyncio.run(measure(envs, fake_server=args.fake_server,
                                                fake_judge=args.fake_judge)) | {"funnel": funnel}
    t2 = time.perf_counter()
    if not args.no_legacy:
        results["legacy_examples_workflows"] = asyncio.run(legacy())
    results["seconds"] = {"examples": round(t1 - t0, 1), "corpus": round(t2 - t1, 1)}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"stage 4 refinement into new tasks, scripted roles ({results['mode']})\n")
        print_block("examples/environments", results["examples"])
        print()
        print_block("benchmarks/environments (14 tools)", results["large"])
        if "corpus" in results:
            print()
            print_block(f"offline environments from {args.corpus.name} {results['corpus']['funnel']}",
                        results["corpus"])
        if "legacy_examples_workflows" in results:
            lg = results["legacy_examples_workflows"]
            print(f"\nlegacy scenario operators on examples/workflows: {lg['refined_verified']} refined, "
                  f"repetition_share {lg['repetition_share']}, new_capability_share {lg['new_capability_share']}, "
                  f"after {lg['after']}")
        if missing:
            print(f"corpus not found: {args.corpus} (examples only)", file=sys.stderr)
    return 2 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
