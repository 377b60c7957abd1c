"""A cheap, deterministic pre-filter in front of stage 1: it rejects obvious non-candidates.

The criterion is the paper's: the text holds a multi-step procedure that a person performs *on a
machine* — an app, a website, a computer or its command line, a phone or another device. Two
gates, both needed: (1) procedure structure — numbered or bulleted steps, lines that start with an
imperative verb, a how-to title; (2) machine evidence — the vocabulary of apps, devices and command
lines (UI words, command lines, flags) dense enough, and more of it than kitchen vocabulary, so
survival tips, crafts and recipes (steps, but no machine) are negatives. It errs towards recall — a
real procedure dropped is lost for good, a non-candidate kept only costs one model call — and
`machine_precision_recall` measures it against the corpora's `machine_procedure` labels.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import BaseModel, Field

from tools_runtime.records import Document

# Imperative verbs that open a step ("Click …", "Pour …"); generic enough for GUI help, CLI cheat
# sheets, recipes and wikiHow. A word here only counts at the start of a line or a list item.
IMPERATIVES = frozenset("""
access add adjust allow apply arrange assemble attach avoid bake beat blend boil book bring browse build
buy calculate call cancel change check choose chop clean clear click close collect combine compare
compress configure confirm connect consider contact convert cook copy count cover create crack cut
decide decompress delete describe determine dig disable disconnect display double-click download drag
drain drink drop edit empty enable enter execute extract fill find finish fit flip fold follow
gather generate get give go grab heat hold insert install keep launch lay leave let list locate lock
log look make mark measure melt merge mix modify monitor mount move navigate note open order output pack
paste pay pick place plug poke pour prepare press print put read record reduce register remove rename
repeat replace reset restart restore return right-click rinse run save scroll search select send
serve set share show shut sign simmer slice sort specify split start stir stop store submit switch
tap take test tighten toggle transfer try turn type uncheck uninstall unlock unplug update upload use
verify view visit wait wash watch wrap write
""".split())

UI_WORDS = frozenset("""
app application apps browser button buttons checkbox click clicking command commands computer
configure cursor dashboard desktop device devices dialog directory download drop-down email enter
file files folder icon install keyboard laptop login menu mouse network option options panel password
phone press printer right-click screen select settings shortcut sidebar software switch tab tablet
tap terminal toggle toolbar type typing upload usb website wifi wi-fi window windows
""".split())

# "Step 3:" may use a colon; a bare "10:30" is a time, not a step.
_NUMBERED = re.compile(r"^\s*(?:step\s*\d{1,2}\s*[.):]|\d{1,2}\s*[.)])\s*(\S.*)?$", re.IGNORECASE)
_BULLET = re.compile(r"^\s*[-*•·]\s+(\S.*)$")
_CODE_LINE = re.compile(r"^\s*`[^`]+`\s*$")
_HOWTO = re.compile(r"^\s*(?:#\s*)?(?:how to\b|title:)", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z'-]*")
# Web and service words that count as machine evidence (not as the UI-density bonus of the score).
SERVICE_WORDS = frozenset("""
portal online account accounts email e-mail inbox server servers cloud web internet url router modem
bluetooth database upload uploads sync
""".split())
_SIGN_IN = re.compile(r"\b(?:log|sign)\s?(?:in|on|out)\b", re.IGNORECASE)
# Command-line evidence: inline code, a shell prompt, sudo, an option flag (`-l`, `--all`).
_CLI = re.compile(r"`[^`\n]+`|\$ \w|\bsudo\b|(?<![\w-])--?[a-z][\w-]+")
# Kitchen vocabulary: a recipe is a procedure whose "machine" is a pan; the paper counts it out.
COOKING_WORDS = frozenset("""
cook cooking recipe oven pan stir heat cup cups tablespoon tablespoons teaspoon bake boil simmer salt
pepper butter flour sugar onion garlic dough serve
""".split())


class PrefilterDecision(BaseModel):
    """Whether a text goes on to stage 1, its score, and the evidence behind it."""

    keep: bool
    score: float
    reasons: list[str] = Field(default_factory=list)


# A step often opens with where or when ("In the Clocks window, click …", "If …, select …"); the
# imperative then follows the first comma.
LEAD_WORDS = frozenset("in under on from at within inside if to when once after before depending while "
                       "for using with alternatively optionally next then finally first".split())


def _first_word(text: str) -> str:
    m = _WORD.match(text.strip().lower())
    return m.group() if m else ""


def leading_verb(text: str) -> str:
    """The imperative verb a step starts with (after an optional leading clause), or ''."""
    word = _first_word(text)
    if word in IMPERATIVES:
        return word
    if word in LEAD_WORDS:
        clause, comma, rest = text.partition(",")
        if comma and len(clause) < 120:
            word = _first_word(rest)
            if word in IMPERATIVES:
                return word
    return ""


def features(text: str) -> dict[str, int]:
    """Counts the score is made of (exposed so the benchmark and tests can explain a decision)."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    numbered = bulleted = imperative_items = imperative_lines = code_lines = 0
    pending_number = False
    for line in lines:
        m = _NUMBERED.match(line)
        b = _BULLET.match(line)
        if m:
            numbered += 1
            body = m.group(1) or ""
            pending_number = not body  # wikiHow puts the step text on the line after "1."
            if body and leading_verb(body):
                imperative_items += 1
            continue
        if pending_number:
            pending_number = False
            if leading_verb(line):
                imperative_items += 1
            continue
        if b:
            bulleted += 1
            if leading_verb(b.group(1)):
                imperative_items += 1
            continue
        if _CODE_LINE.match(line):
            code_lines += 1
            continue
        if _first_word(line) in IMPERATIVES:
            imperative_lines += 1
    words = _WORD.findall(text.lower())
    ui = sum(1 for w in words if w in UI_WORDS)
    return {
        "lines": len(lines),
        "numbered": numbered,
        "bulleted": bulleted,
        "imperative_items": imperative_items,
        "imperative_lines": imperative_lines,
        "code_lines": code_lines,
        "ui_words": ui,
        "cli_marks": len(_CLI.findall(text)),
        "service_words": sum(1 for w in words if w in SERVICE_WORDS) + len(_SIGN_IN.findall(text)),
        "cooking_words": sum(1 for w in words if w in COOKING_WORDS),
        "words": len(words),
        "howto_title": int(bool(lines) and bool(_HOWTO.match(lines[0]))),
    }


# Weights and the threshold were set by reading the dev corpus' features and erring towards keep:
# two imperative list items, or a how-to title with one list, or a handful of imperative lines in a
# recipe-like blog all pass; plain prose with no list and no imperative line never does.
THRESHOLD = 2.0
# Machine evidence per 1000 words (UI, service and sign-in words + command-line marks). Set on corpus_dev/corpus2_dev:
# GUI help pages sit at 30-200, CLI docs at 20-60, survival texts and recipes at 0-8.
MACHINE_DENSITY = 10.0


def machine_evidence(f: dict[str, int]) -> tuple[bool, str]:
    """Whether the text's steps operate a machine (the paper's criterion), and why."""
    machine = f["ui_words"] + f["cli_marks"] + f.get("service_words", 0)
    density = 1000 * machine / max(f["words"], 1)
    if density < MACHINE_DENSITY:
        return False, f"no machine: {machine} app/device/command words in {f['words']} ({density:.1f}/1000)"
    if f["cooking_words"] > machine:
        return False, f"kitchen procedure ({f['cooking_words']} cooking words, {machine} machine words)"
    return True, f"operates a machine ({machine} app/device/command words, {density:.0f}/1000)"


def score_text(text: str) -> tuple[float, list[str]]:
    """The pre-filter score of a text and the reasons that made it."""
    f = features(text)
    score = 0.0
    reasons: list[str] = []
    if f["numbered"] >= 2:
        score += 1.0
        reasons.append(f"{f['numbered']} numbered steps")
    if f["imperative_items"]:
        score += min(f["imperative_items"], 6) * 0.5
        reasons.append(f"{f['imperative_items']} list items start with a verb")
    if f["imperative_lines"]:
        score += min(f["imperative_lines"], 8) * 0.35
        reasons.append(f"{f['imperative_lines']} lines start with a verb")
    if f["code_lines"] >= 2 and f["bulleted"] >= 2:
        # A bulleted description followed by a command line is a cheat-sheet procedure by construction.
        score += 2.0
        reasons.append(f"{f['code_lines']} command lines after bullets")
    if f["howto_title"]:
        score += 1.0
        reasons.append("how-to title")
    if f["words"]:
        density = 1000 * f["ui_words"] / f["words"]
        if density >= 8:
            score += 0.5
            reasons.append(f"software/device vocabulary ({f['ui_words']} words)")
    if not reasons:
        reasons.append("no steps, no imperative lines, no how-to title")
    return round(score, 2), reasons


def prefilter(doc: Document | str, threshold: float = THRESHOLD) -> PrefilterDecision:
    """Keep a text with procedure structure (score ≥ `threshold`) whose steps operate a machine."""
    text = doc.text if isinstance(doc, Document) else doc
    score, reasons = score_text(text)
    on_machine, why = machine_evidence(features(text))
    return PrefilterDecision(keep=score >= threshold and on_machine, score=score, reasons=[*reasons, why])


def machine_precision_recall(rows: list[dict], keep: Callable[[dict], bool] | None = None) -> dict[str, float]:
    """Precision/recall of `keep` (default: the pre-filter) against `machine_procedure`; nulls left out."""
    keep = keep or (lambda r: prefilter(str(r.get("text") or "")).keep)
    return precision_recall([(keep(r), bool(r["machine_procedure"])) for r in rows
                             if r.get("machine_procedure") is not None])


POSITIVE_LABELS = frozenset({"procedural", "procedural_reference", "mixed_procedural"})


def precision_recall(decisions: list[tuple[bool, bool]]) -> dict[str, float]:
    """Precision, recall and counts of `keep` over (kept, is_positive) pairs."""
    tp = sum(1 for kept, pos in decisions if kept and pos)
    fp = sum(1 for kept, pos in decisions if kept and not pos)
    fn = sum(1 for kept, pos in decisions if not kept and pos)
    tn = sum(1 for kept, pos in decisions if not kept and not pos)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": precision, "recall": recall, "tp": tp, "fp": fp, "fn": fn, "tn": tn}
