"""The deterministic pre-filter: obvious cases, and its recall bound on the real dev corpus."""

from __future__ import annotations

import json

from gem_agents.stages.prefilter import POSITIVE_LABELS, leading_verb, precision_recall, prefilter

GNOME_LIKE = """# Set the default printer
If you have more than one printer available, you can select which will be your default printer.
1. Open the Activities overview and start typing Printers.
2. Click Printers.
3. Click the button next to the printer.
4. Select the Use Printer by Default checkbox.
"""

TLDR_LIKE = """# wc

> Count lines, words, and bytes.

- Count all lines in a file:

`wc -l {{path/to/file}}`

- Count all words in a file:

`wc -w {{path/to/file}}`
"""

PROSE = """Anarchism is a political philosophy and movement that is sceptical of authority. It calls for the
abolition of the state, which it holds to be unnecessary. Humans lived in societies without formal
hierarchies long before the establishment of formal states, realms, or empires."""


def test_obvious_cases():
    assert prefilter(GNOME_LIKE).keep
    assert prefilter(TLDR_LIKE).keep
    decision = prefilter(PROSE)
    assert not decision.keep and decision.score == 0 and decision.reasons


def test_reasons_explain_the_score():
    reasons = " ".join(prefilter(GNOME_LIKE).reasons)
    assert "numbered steps" in reasons and "start with a verb" in reasons


def test_leading_verb_after_a_leading_clause():
    assert leading_verb("Click Print.") == "click"
    assert leading_verb("In the file manager, click Other Locations in the sidebar.") == "click"
    assert leading_verb("Under Layout, select Brochure.") == "select"
    assert leading_verb("A dialog will open.") == ""


def test_precision_recall_counts():
    m = precision_recall([(True, True), (True, False), (False, True), (False, False)])
    assert (m["precision"], m["recall"], m["tp"], m["fp"], m["fn"], m["tn"]) == (0.5, 0.5, 1, 1, 1, 1)


def test_recall_bound_on_the_real_corpus(corpus_path):
    """The pre-filter may drop at most 5% of the procedural documents (and reports all positives)."""
    rows = [json.loads(line) for line in corpus_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    decisions = {r["id"]: prefilter(r["text"]).keep for r in rows}
    procedural = precision_recall([(decisions[r["id"]], r["label_hint"] == "procedural") for r in rows
                                   if r["label_hint"] in ("procedural", "non_procedural")])
    positives = precision_recall([(decisions[r["id"]], r["label_hint"] in POSITIVE_LABELS) for r in rows])
    assert procedural["recall"] >= 0.95, procedural
    assert positives["recall"] >= 0.9, positives
    # Not a bound the design asks for, but a pre-filter that keeps everything would be useless.
    assert procedural["precision"] >= 0.5, procedural
