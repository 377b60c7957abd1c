"""The deterministic pre-filter: obvious cases, and its recall bound on the real dev corpus."""

from __future__ import annotations

import json

from gem_agents.stages.prefilter import (
    leading_verb,
    machine_precision_recall,
    precision_recall,
    prefilter,
)

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
    portal = "# Book a room in the office portal\n1. Log in to the office portal.\n2. Search for rooms by date.\n" \
             "3. Book the room.\n4. Send the invitation.\n"
    assert prefilter(portal).keep  # a website is a machine: service words and "log in" count
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


def test_machine_criterion_on_the_real_corpora(shared_dir):
    """The paper's criterion (steps on a machine) against `machine_procedure`: survival texts and
    recipes have steps but no machine, so they are negatives now (the old bound measured `label_hint`,
    which counts recipes as procedures)."""
    texts = shared_dir / "data" / "texts"
    dev = [json.loads(x) for x in (texts / "corpus_dev.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    dev2 = [json.loads(x) for x in (texts / "corpus2_dev.jsonl").read_text(encoding="utf-8").splitlines() if x.strip()]
    m1, m2 = machine_precision_recall(dev), machine_precision_recall(dev2)
    assert m1["recall"] >= 0.95 and m1["precision"] >= 0.85, m1
    assert m2["recall"] >= 0.75 and m2["precision"] >= 0.8, m2
    assert m1["tp"] + m1["fn"] == sum(1 for r in dev if r.get("machine_procedure"))  # nulls left out


def test_steps_without_a_machine_are_negatives():
    recipe = "# How to cook rice\n1. Rinse the rice in a cup of water.\n2. Boil two cups of water in a pan.\n" \
             "3. Stir in the rice and a pinch of salt.\n4. Simmer for 18 minutes, then serve.\n"
    decision = prefilter(recipe)
    assert not decision.keep and any("kitchen" in r or "no machine" in r for r in decision.reasons)
    assert prefilter(GNOME_LIKE).keep
