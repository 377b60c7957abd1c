"""`gem run` with `pipeline: synthesizer` on the bundled samples, next to the full pipeline on the same texts.

The full pipeline runs offline (scripted roles); its verified trajectories become the good one-shot
answers a fake synthesizer endpoint serves, and some answers are spoiled on purpose (a tool result
the backend contradicts, a cut-off block), so the verified rates must differ exactly as planned.
"""

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.config import load_config
from gem_agents.export.fmt_synthesizer import export_pairs, group_of, split_groups
from gem_agents.ingest import read_documents
from gem_agents.models.hub import ModelHub
from gem_agents.registry import get
from gem_agents.run.context import open_run
from gem_agents.run.engine import run_documents
from gem_agents.run.store import RunStore
from gem_agents.stages.base import StageEnv
from gem_agents.synthesizer.stage import answer_path
from gem_agents.testing.fake_openai import FakeOpenAIServer, Reply, text
from tools_runtime.records import Relevance

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "gem_agents" / "samples"
OFFLINE = REPO / "configs" / "offline.yaml"
runner = CliRunner()


def spoil_result(block: str) -> str:
    """Change one value in the first read result so the backend contradicts it."""
    lines = block.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("tool ") and ": {" in line:
            head, payload = line.split(": ", 1)
            data = json.loads(payload)
            key = next((k for k, v in data.items() if isinstance(v, str | int | float) and not isinstance(v, bool)),
                       None)
            if key is not None:
                data[key] = f"{data[key]}-WRONG"
                lines[i] = f"{head}: {json.dumps(data)}"
                return "\n".join(lines)
    raise AssertionError("no tool result to spoil")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The full pipeline, offline, on the samples; plus the texts and the teacher blocks per document."""
    root = tmp_path_factory.mktemp("synth")
    cfg = load_config(OFFLINE)
    docs, _ = read_documents(SAMPLES, cfg.input)

    async def go():
        async with open_run(cfg, root / "full") as ctx:
            await run_documents(ctx, docs)

    asyncio.run(go())
    texts = {d.id: d.text for d in docs}
    summary = export_pairs(root / "full", root / "pairs", texts)
    blocks: dict[str, str] = {}
    for split in ("train", "validation"):
        for line in (root / "pairs" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            pair = json.loads(line)
            blocks.setdefault(pair["text"], pair["target"])
    return SimpleNamespace(root=root, docs=docs, texts=texts, summary=summary, blocks=blocks)


def test_export_writes_verified_pairs_split_by_document(full_run):
    s = full_run.summary
    assert s["trajectories"] == s["train"] + s["validation"] > 0
    train = [json.loads(x) for x in (full_run.root / "pairs" / "train.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (full_run.root / "pairs" / "validation.jsonl").read_text().splitlines()]
    assert train and val, "five samples give several documents: both splits get some"
    assert not {p["doc_id"] for p in train} & {p["doc_id"] for p in val}
    store = RunStore(full_run.root / "full", readonly=True)
    verified = {t.id for t in store.trajectories(verified_only=True)}
    store.close()
    for p in train + val:
        assert p["trajectory_id"] in verified and p["text"] == full_run.texts[p["doc_id"]]
        assert p["messages"][-1] == {"role": "assistant", "content": p["target"]}
        assert p["target"].startswith("## tools\n") and p["target"].endswith("## end\n")


def test_split_keeps_segments_of_one_document_together():
    ids = [f"doc{i}#s{j}" for i in range(10) for j in range(3)]
    val = split_groups([group_of(i) for i in ids], 0.2)
    assert len(val) == 2 and all("#" not in g for g in val)
    assert split_groups(["only"], 0.5) == set()
    assert split_groups([group_of(i) for i in ids], 0.2) == val  # deterministic


def write_config(path: Path, base_url: str, pipeline: str) -> Path:
    data = yaml.safe_load(OFFLINE.read_text(encoding="utf-8"))
    data["pipeline"] = pipeline
    data["roles"]["synthesizer"] = {"provider": "openai", "model": "synth-model", "base_url": base_url,
                                    "max_retries": 0, "temperature": 0.0}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_synthesizer_pipeline_verified_rate_next_to_the_full_one(full_run, tmp_path):
    teacher = sorted(full_run.blocks)  # texts the full pipeline verified, in a fixed order
    assert len(teacher) >= 3
    good, lying, cut = teacher[0], teacher[1], teacher[2]

    def responder(body):
        source = body["messages"][-1]["content"]
        block = full_run.blocks.get(source)
        if block is None:
            return text("I could not find a procedure in this text.")
        if source == lying:
            return text(spoil_result(block))
        if source == cut:
            return text(block[: len(block) // 3])
        return Reply(content=f"```\n{block}```")

    with FakeOpenAIServer(responder) as srv:
        config = write_config(tmp_path / "synth.yaml", srv.base_url, "synthesizer")
        out = tmp_path / "run"
        res = runner.invoke(app, ["run", str(config), "--input", str(SAMPLES), "--out", str(out), "-q", "--json",
                                  "--no-report"])
        assert res.exit_code == 0, res.output
        requests = srv.count

    store = RunStore(out, readonly=True)
    docs = {d["doc_id"]: d for d in store.documents()}
    trajs = list(store.trajectories())
    store.close()
    by_text = {full_run.texts[i]: d for i, d in docs.items()}
    # One call per text that passed the filter, none for the rest.
    full_store = RunStore(full_run.root / "full", readonly=True)
    full_docs = full_store.documents()
    full_store.close()
    filtered_in = [d for d in full_docs if (d["relevance"] or {}).get("multi_step")]
    assert requests == len(filtered_in)
    assert by_text[good]["status"] == "kept"
    assert by_text[lying]["status"] == "rejected"
    assert by_text[cut]["status"] == "rejected"
    assert any("one-shot unparseable_output" in r and "cut off" in r for r in by_text[cut]["reasons"])
    lying_traj = next(t for t in trajs if t.provenance.doc_id == by_text[lying]["doc_id"])
    assert "tool_result_mismatch" in lying_traj.verdict.codes()
    # The raw answers are kept for resume and for people to read.
    assert answer_path(out, by_text[good]["doc_id"]).read_text(encoding="utf-8").startswith("```")

    def rate(rows):
        sent = [d for d in rows if (d["relevance"] or {}).get("multi_step")]
        return sum(d["status"] == "kept" for d in sent), len(sent)

    full_kept, full_sent = rate(full_docs)
    synth_kept, synth_sent = rate(list(docs.values()))
    assert (full_kept, full_sent) == (len(teacher), len(filtered_in))
    assert (synth_kept, synth_sent) == (len(teacher) - 2, len(filtered_in))


def test_synthesizer_pipeline_needs_a_model(tmp_path):
    data = yaml.safe_load(OFFLINE.read_text(encoding="utf-8"))
    data["pipeline"] = "synthesizer"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = runner.invoke(app, ["run", str(config), "--input", str(SAMPLES), "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 2
    assert "roles.synthesizer" in " ".join(res.output.split())


def make_stages(ctx):
    """The synthesizer pipeline's stage functions for a context (a fresh env: nothing in memory)."""
    return get("pipeline", "synthesizer").bind(StageEnv(config=ctx.config, hub=ctx.hub, run_dir=ctx.run_dir))


def test_verify_stage_resumes_from_the_kept_answer(full_run, tmp_path):
    source, block = sorted(full_run.blocks.items())[0]
    doc = next(d for d in full_run.docs if d.text == source)
    with FakeOpenAIServer(lambda body: text(block)) as srv:
        cfg = load_config(write_config(tmp_path / "c.yaml", srv.base_url, "synthesizer"))
        hub = ModelHub(cfg, use_cache=False)
        ctx = SimpleNamespace(config=cfg, hub=hub, run_dir=tmp_path)
        stages = make_stages(ctx)
        wf, reasons = asyncio.run(stages.extract(doc, Relevance(multi_step=True)))
        assert wf is not None and not reasons
        calls = srv.count
        fresh = make_stages(ctx)  # a new process after a kill: nothing in memory
        trajs, _ = asyncio.run(fresh.simulate(wf))
        assert srv.count == calls  # verified from the file, no second model call
        hub.close()
    assert len(trajs) == 1 and trajs[0].verdict.passed
    answer_path(tmp_path, doc.id).unlink()
    trajs, reasons = asyncio.run(make_stages(ctx).simulate(wf))
    assert trajs == [] and "was lost" in reasons[0]


def test_gem_export_reads_the_texts_the_run_kept_or_says_why_not(full_run, tmp_path):
    out = tmp_path / "pairs"
    run_dir = full_run.root / "full"
    # The fixture's run is offline (scripted roles), so it is marked offline and exported only on request.
    res = runner.invoke(app, ["export", str(run_dir), "--format", "synthesizer", "--out", str(out), "--json",
                              "--include-offline"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["trajectories"] == full_run.summary["trajectories"]
    assert (out / "train.jsonl").read_text() == (full_run.root / "pairs" / "train.jsonl").read_text()
    res = runner.invoke(app, ["export", str(run_dir), "--format", "synthesizer", "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "writes a folder" in " ".join(res.output.split())
    # A run directory from before texts were kept: the export says why it cannot pair.
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    with sqlite3.connect(old / "run.sqlite") as db:
        db.execute("UPDATE documents SET text = ''")
    res = runner.invoke(app, ["export", str(old), "--format", "synthesizer", "--out", str(tmp_path / "p2"),
                              "--include-offline"])
    assert res.exit_code == 2 and "records no document texts" in " ".join(res.output.split())


def test_pairs_prefer_refined_trajectories_and_skip_unusable_rows():
    from gem_agents.export.fmt_synthesizer import build_pairs
    from tests.helpers import example, rollout
    from tools_runtime.scenario import build_scenario

    a0 = rollout(build_scenario(example("shop_return"), 0))
    a1 = rollout(build_scenario(example("shop_return"), 1)).model_copy(update={"id": "a:refined"})
    b0 = rollout(build_scenario(example("calendar_booking"), 0))
    no_scenario = b0.model_copy(update={"id": "b:bare", "scenario": None})
    rows = [("a", "original", a0), ("a", "refined", a1), ("b", "original", b0), ("b", "original", no_scenario),
            ("c", "original", b0)]
    pairs, dropped = build_pairs(rows, {"a": "text a", "b": "text b"})
    assert [(p["doc_id"], p["kind"], p["trajectory_id"]) for p in pairs] == [
        ("a", "refined", "a:refined"), ("b", "original", b0.id)]
    assert dropped == {"not expressible: trajectory b:bare carries no scenario (initial state and graph are "
                       "needed)": 1, "no source text": 1}
