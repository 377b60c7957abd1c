"""What a reader sees in offline outputs: counts of wording defects over the dev corpus and over runs.

Two parts, both without a model:

1. **Environments and requests** — every document of the corpus (segmented as `gem run` does) through
   the rule-based extractor and the offline task writer, relevant or not (the causes are general):
   entity and field labels that are no noun a person uses ("containing", "add", "above", "files name"),
   tool descriptions whose first sentence (the phrase refinement turns into a request) is no English
   verb phrase ("Resize in a filesystem", "Rename button in using metadata"), and offline requests
   that fail a small grammar check ("I want to templates for …", "the passwords are my passwords").
2. **Dialogues** — the trajectories of run directories (`RUN/run.sqlite`): the assistant asking for a
   value the user already gave, closing summaries that list every field, look-up answers that list
   every record when the user asked about one, and the user thanking an empty reply.

The detectors are plain text checks written here, independent of the generators' helpers.

    PYTHONPATH=. .venv/bin/python benchmarks/measure_wording.py [--corpus PATH] [--run RUN_DIR ...] [--json]
                                                                [--examples N]
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CORPUS = REPO.parent / "shared" / "data" / "texts" / "corpus_dev.jsonl"
SAMPLES = REPO / "gem_agents" / "samples"

# Words that never head a noun phrase a person names a record or field by.
FUNCTION_WORDS = frozenset("""
above below beside behind near inside outside across along around between among against toward towards without
within underneath beneath except like about during per into onto upon over under after before from with by for
of in on at to up down out off away back a an the this that these those other others another some any each every
all both either neither such same own it its them they you your my our their his her which what who whom whose
also just only still even very much many more most less few little enough too again already
""".split())
# Adjectives and verbs the corpus's steps open with or qualify objects by; none names a thing.
NON_NOUNS = frozenset("""
add create make get put take give keep find open close select choose enter remove delete adjust uncheck go see
let try
large small long strong weak big little dry wet hot cold warm new old good bad best right left sure
grated sliced chopped fresh clean safe ready available possible able free entire whole certain desired
""".split())
ING_NOUNS = frozenset("""
setting settings building meeting recording string thing things ring spring heading padding listing drawing painting
wedding morning evening ceiling pudding sharing clothing lighting bedding stuffing frosting icing topping filling
dressing seasoning marking opening ending beginning warning multitasking forwarding
""".split())


def head_word(label: str) -> str:
    """The word a snake_case label is about: its last word, a trailing `name`/`id` dropped."""
    words = [w for w in label.split("_") if w]
    while len(words) > 1 and words[-1] in ("name", "id", "settings"):
        words.pop()
    return words[-1] if words else ""


def not_a_noun(label: str) -> bool:
    """A label whose head word is a preposition, pronoun, adjective, verb or participle ("containing")."""
    w = head_word(label)
    if not w or w.isdigit():
        return True
    if w in FUNCTION_WORDS or w in NON_NOUNS:
        return True
    if w.endswith("ing") and w not in ING_NOUNS:
        return True
    return w.endswith("ed") and len(w) > 4 and not w.endswith(("eed", "ied"))


def plural_modifier(label: str) -> bool:
    """`files_name`, `rooms_name`: a plural noun in front of `name`/`id` ("the rooms name")."""
    words = label.split("_")
    if len(words) < 2 or words[-1] not in ("name", "id"):
        return False
    w = words[-2]
    return len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is", "ics", "ws"))


def doubled_word(text: str) -> bool:
    """'the the woods', 'Settings settings'."""
    return re.search(r"\b(\w+)\s+\1\b", text, re.IGNORECASE) is not None


def description_phrase(description: str) -> str:
    """The first sentence of a tool description (refinement turns it into a request)."""
    return re.split(r"(?<=[.!?])\s", description.strip())[0].rstrip(".!? ")


def bad_description(phrase: str) -> str:
    """Why a description's first sentence is no English verb phrase, or ''."""
    if re.match(r"^[A-Z][a-z]+ (?:in|on|into|at)\b", phrase):
        return "verb without object"  # "Resize in a filesystem", "Create in the jungle"
    if re.match(r"^\w+ (?:button|tab|menu|switch|checkbox)\b", phrase, re.IGNORECASE):
        return "button label as the action"  # "Rename button in using metadata"
    if doubled_word(phrase):
        return "doubled word"
    if re.search(r"\bin (?:the )?(?:to|with|using|by|for|hitting)\b", phrase):
        return "place that is no place"  # "in to hack", "in with nothing", "in using metadata"
    return ""


BE = r"(?:is|are)"


def bad_request(text: str) -> str:
    """Why an offline request fails a small grammar check, or ''."""
    m = re.search(r"\bI want to (\w+)", text)
    if m:
        w = m.group(1).lower()
        if w.endswith("s") and not w.endswith("ss") or w in FUNCTION_WORDS or w.endswith("ing"):
            return f"'I want to {m.group(1)}'"
    m = re.search(rf"\b[Tt]he ([a-z][a-z ]{{1,40}}?) {BE} (?:my|the|your) \1\b", text)
    if m:
        return "value is its own field name"
    if re.search(r"\bplease \w+ (?:in|on) (?:a|the)\b", text, re.IGNORECASE):
        return "verb without object"
    if doubled_word(text):
        return "doubled word"
    for label in re.findall(rf"\b[Tt]he ((?:[a-z]+ ){{0,3}}(?:name|id)) {BE}\b", text):
        if plural_modifier(label.replace(" ", "_")) or not_a_noun(label.replace(" ", "_")):
            return f"label '{label}'"
    return ""


# --- part 1: environments and offline requests ------------------------------------------------------------


def corpus_counts(corpora: list[Path], examples: int) -> dict[str, Any]:
    """Extract and write tasks for every document; count label, description and request defects."""
    from gem_agents.ingest import read_documents
    from gem_agents.stages.offline_extractor import extract_offline
    from gem_agents.stages.prefilter import prefilter
    from gem_agents.stages.tasks import write_tasks_offline

    docs = [d for corpus in corpora for d in read_documents(corpus, max_segments=4)[0]]
    found: dict[str, list[str]] = defaultdict(list)
    totals = defaultdict(int)
    for doc in docs:
        res = extract_offline(doc)
        if not res.ok or res.workflow is None:
            continue
        wf = res.workflow
        scope = "relevant" if prefilter(doc).keep else "other"
        totals["environments"] += 1
        totals[f"environments_{scope}"] += 1
        for ent in wf.entities:
            totals["entities"] += 1
            if not_a_noun(ent.name):
                found["entity not a noun"].append(f"{doc.id}: {ent.name}")
            for fld in ent.fields:
                totals["fields"] += 1
                if fld in ("panel", "path", "last_action"):
                    continue
                if not_a_noun(fld):
                    found["field not a noun"].append(f"{doc.id}: {ent.name}.{fld}")
                if plural_modifier(fld):
                    found["plural before name/id"].append(f"{doc.id}: {ent.name}.{fld}")
        for tool in wf.tools:
            totals["tools"] += 1
            why = bad_description(description_phrase(tool.description))
            if why:
                found[f"description: {why}"].append(f"{doc.id}: {tool.name}: {description_phrase(tool.description)}")
        tasks, _rej = write_tasks_offline(wf, doc.text, k=3)
        for task in tasks:
            totals["requests"] += 1
            why = bad_request(task.instruction)
            if why:
                found[f"request: {why.split(chr(39))[0].strip() or why}"].append(f"{doc.id}: {task.instruction[:200]}")
    return {"totals": dict(totals), "defects": {k: len(v) for k, v in sorted(found.items())},
            "examples": {k: v[:examples] for k, v in sorted(found.items())}}


# --- part 2: dialogues -------------------------------------------------------------------------------------

ASKED = re.compile(r"(?:tell me (?:your|the)|need your|what is (?:your|the)|what's (?:your|the)|"
                   r"which (?=[\w ]+? should)|should I turn) ([a-z][a-z ]{1,40}?)(?:,|\?| please| for that| on or off| be\b)",
                   re.IGNORECASE)


def stated_before(users: list[str], label: str) -> bool:
    """The user already gave a value for `label` ("the X is V", "X turned off", "turn X on")."""
    k = re.escape(label.strip())
    pat = re.compile(rf"\b{k}\b\s+(?:is|are|turned|switched|set to)\b|\b(?:turn|switch)\s+(?:the\s+|my\s+)?{k}\s+(?:on|off)\b|"
                     rf"\b(?:turn|switch)\s+(?:on|off)\s+(?:the\s+|my\s+)?{k}\b", re.IGNORECASE)
    return any(pat.search(u) for u in users)


def field_dump(text: str) -> bool:
    """A reply that lists four or more `field: value` pairs."""
    return len(re.findall(r"(?:^|[;—:] |\bshows |\bsee |\breads )[a-z][a-z ]{1,30}: [^;]+", text)) >= 4


def record_dump(text: str) -> bool:
    """A reply that lists several records field by field ("account name: alex; …; account name: kim")."""
    labels = re.findall(r"(?:^|; |— |: |shows |see )([a-z][a-z ]{1,30}): ", text)
    return any(labels.count(x) >= 2 for x in set(labels))


def dialogue_counts(run: Path, examples: int) -> dict[str, Any]:
    """Dialogue defects in one run directory's trajectories."""
    con = sqlite3.connect(f"file:{run / 'run.sqlite'}?mode=ro", uri=True)
    found: dict[str, list[str]] = defaultdict(list)
    n = 0
    replies = 0
    for tid, rec in con.execute("select id, record from trajectories"):
        n += 1
        msgs = json.loads(rec)["messages"]
        users: list[str] = []
        for i, m in enumerate(msgs):
            text = str(m.get("content") or "")
            if m["role"] == "user":
                users.append(text)
                continue
            if m["role"] != "assistant" or m.get("tool_calls"):
                continue
            replies += 1
            nxt = msgs[i + 1] if i + 1 < len(msgs) else {}
            if not text.strip() and nxt.get("role") == "user" and re.search(r"thank|that's all|bye", str(
                    nxt.get("content") or ""), re.IGNORECASE):
                found["user thanks an empty reply"].append(tid)
            for label in ASKED.findall(text):
                if stated_before(users[-1:], label):
                    found["asks for a value the user gave"].append(f"{tid}: USER {users[-1][:120]!r} / "
                                                                   f"ASSISTANT {text[:100]!r}")
                    break
            if field_dump(text):
                found["summary lists every field"].append(f"{tid}: {text[:160]}")
            asked_list = users and re.search(r"\blist\b|which [\w ]+ do I have|what [\w ]+ do I have", users[-1], re.I)
            if record_dump(text) and not asked_list:
                found["lists every record, asked about one"].append(f"{tid}: USER {users[-1][:100]!r} / {text[:140]}")
    return {"trajectories": n, "assistant_replies": replies, "defects": {k: len(v) for k, v in sorted(found.items())},
            "examples": {k: v[:examples] for k, v in sorted(found.items())}}


def main() -> None:
    """Print the counts (text, or JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, nargs="*", default=[CORPUS, SAMPLES],
                    help="corpus files or folders (default: the dev corpus and the demo samples)")
    ap.add_argument("--run", type=Path, nargs="*", default=[])
    ap.add_argument("--examples", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    corpora = [c for c in args.corpus if c.exists()]
    if corpora:
        out["corpus"] = corpus_counts(corpora, args.examples)
    for run in args.run:
        out[str(run)] = dialogue_counts(run, args.examples)
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return
    for part, res in out.items():
        print(f"== {part}: {json.dumps(res.get('totals') or {k: res[k] for k in ('trajectories', 'assistant_replies')})}")
        for kind, count in res["defects"].items():
            print(f"  {count:4d}  {kind}")
            for ex in res["examples"][kind]:
                print(f"          {ex}")


if __name__ == "__main__":
    main()
