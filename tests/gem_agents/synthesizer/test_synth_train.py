"""The SFT recipe on a tiny random model built here (no download): loss falls, the checkpoint generates."""

import json
import math

import pytest
import yaml
from typer.testing import CliRunner

from gem_agents.cli import app
from gem_agents.synthesizer.format import trajectory_to_text
from gem_agents.synthesizer.train import (
    RecipeError,
    SFTRecipe,
    load_recipe,
    missing_packages,
    read_pairs,
    to_example,
    train_synthesizer,
)
from tests.helpers import example, rollout
from tools_runtime.scenario import build_scenario

MISSING = missing_packages()
needs_train = pytest.mark.skipif(bool(MISSING), reason=f"the 'train' extra is not installed (missing "
                                                      f"{', '.join(MISSING)}): pip install '.[train]'")

pytestmark = pytest.mark.train

TEXTS = {"shop_return": "How to return an item: sign in, find the order, open a return, pick a refund method.",
         "calendar_booking": "Booking a meeting: check the calendar, find a free room, book it, invite people."}


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "train.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for name, source in TEXTS.items():
            traj = rollout(build_scenario(example(name), 0))
            fh.write(json.dumps({"doc_id": name, "text": source, "target": trajectory_to_text(traj)}) + "\n")
    return path


def recipe(pairs_file, out, **kw):
    base = {"tiny_model": {"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64},
            "data": {"train": str(pairs_file), "validation": str(pairs_file)}, "output_dir": str(out),
            "prompt_style": "plain", "max_length": 4096, "max_steps": 6, "learning_rate": 3e-3,
            "lr_scheduler_type": "constant", "warmup_ratio": 0, "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1, "bf16": False, "gradient_checkpointing": False, "use_cpu": True,
            "torch_threads": 1, "logging_steps": 1, "save_steps": 1000}
    return SFTRecipe.model_validate(base | kw)


@needs_train
def test_tiny_model_trains_and_the_checkpoint_generates(pairs_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Through the command line, as a user runs it: `gem train-synthesizer --config RECIPE`.
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe(pairs_file, tmp_path / "out").model_dump(exclude_none=True)))
    res = CliRunner().invoke(app, ["train-synthesizer", "--config", str(config), "--json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout.strip().splitlines()[-1])
    losses = result["losses"]
    assert result["steps"] == 6 and result["examples"] == 2 and result["too_long"] == 0
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    # Same two examples every step at a high learning rate: the loss must come down clearly.
    assert losses[-1] < losses[0] - 0.2, losses
    assert sum(losses[-2:]) < sum(losses[:2])
    assert result["eval_loss"] is not None and math.isfinite(result["eval_loss"])

    tok = AutoTokenizer.from_pretrained(result["output_dir"])
    model = AutoModelForCausalLM.from_pretrained(result["output_dir"])
    prompt = to_example({"text": TEXTS["shop_return"], "target": "x"}, "plain")["prompt"]
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert isinstance(tok.decode(out[0][ids["input_ids"].shape[1]:]), str)


@needs_train
def test_pairs_longer_than_max_length_are_left_out_not_truncated(pairs_file, tmp_path):
    with pytest.raises(RecipeError, match=r"all 2 training pairs are longer than max_length=64"):
        train_synthesizer(recipe(pairs_file, tmp_path / "out", max_length=64, prompt_style="chat"))


@needs_train
def test_chat_style_prompt_is_a_prefix_of_the_full_conversation(pairs_file, tmp_path):
    from gem_agents.synthesizer.tiny import train_tokenizer

    pair = read_pairs(pairs_file)[0]
    ex = to_example(pair, "chat")
    tok = train_tokenizer([pair["text"], pair["target"]], 300)
    prompt = tok.apply_chat_template(ex["prompt"], tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=False)
    assert full.startswith(prompt) and full[len(prompt):].startswith("## tools")


def test_bad_recipes_and_pairs_name_the_problem(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("data: {train: x.jsonl}\nlearning_rat: 0.1\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"r.yaml: learning_rat: unknown key"):
        load_recipe(bad)
    bad.write_text("data: [unclosed\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"r.yaml:\d+:\d+: invalid YAML"):
        load_recipe(bad)
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"text": "t", "target": "## tools"}\n{"text": "t"}\n', encoding="utf-8")
    with pytest.raises(RecipeError, match=r"p.jsonl:2: field 'target'"):
        read_pairs(pairs)
    with pytest.raises(RecipeError, match="no such pairs file"):
        read_pairs(tmp_path / "absent.jsonl")


def test_shipped_recipe_is_valid():
    from pathlib import Path

    shipped = load_recipe(Path(__file__).resolve().parents[3] / "configs" / "synthesizer_sft.yaml")
    assert shipped.prompt_style == "chat" and shipped.tiny_model is None and shipped.lora is not None
