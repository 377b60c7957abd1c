"""The SFT recipe: fine-tune a causal LM on (text → trajectory block) pairs with TRL's SFTTrainer.

The pairs come from `gem export RUN_DIR --format synthesizer`. In `chat` style each example is the
same conversation the one-shot mode sends (system: the synthesizer instruction, user: the text)
with the block as the assistant's answer, so a model served after training (e.g. `vllm serve
OUTPUT_DIR`) is queried exactly as it was trained. `plain` style is a bare prompt/completion for
base models without a chat template. The loss covers the completion only.

Needs the `train` extra (torch, transformers, trl, datasets). `tiny_model:` in the recipe builds a
tiny random model locally instead of loading `base_model`, for smoke runs with no download.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gem_agents.io import MAX_CONFIG_BYTES, InputError, iter_json_lines, load_yaml, read_text
from gem_agents.synthesizer.oneshot import oneshot_prompt
from gem_agents.synthesizer.tiny import TinyModelConfig, build_tiny_model

PLAIN_PROMPT = "### Text\n{text}\n### Trajectory\n"
TRAIN_PACKAGES = ("torch", "transformers", "trl", "datasets")


class RecipeError(ValueError):
    """A recipe or data file that cannot be used; the message names the file, line or key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """The exported pairs (JSONL files written by `gem export --format synthesizer`)."""

    train: str
    validation: str | None = None
    max_examples: int | None = Field(default=None, gt=0)


class LoraConfig(_Strict):
    """Optional LoRA adapters (needs `peft`); leave out for a full fine-tune."""

    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class SFTRecipe(_Strict):
    """Everything one training run needs; `configs/synthesizer_sft.yaml` is the shipped recipe."""

    base_model: str = "Qwen/Qwen3-8B"
    tiny_model: TinyModelConfig | None = None
    data: DataConfig
    output_dir: str = "runs/synthesizer-sft"
    prompt_style: Literal["chat", "plain"] = "chat"
    max_length: int = Field(default=16384, gt=0)
    num_train_epochs: float = Field(default=2.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(default=1e-5, gt=0)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    per_device_train_batch_size: int = Field(default=1, gt=0)
    gradient_accumulation_steps: int = Field(default=16, gt=0)
    bf16: bool = True
    gradient_checkpointing: bool = True
    use_cpu: bool = False
    torch_threads: int | None = Field(default=None, gt=0)
    logging_steps: int = Field(default=10, gt=0)
    eval_steps: int | None = Field(default=None, gt=0)
    save_steps: int = Field(default=500, gt=0)
    save_total_limit: int = Field(default=2, gt=0)
    report_to: str = "none"
    lora: LoraConfig | None = None
    seed: int = 0


def load_recipe(path: str | Path) -> SFTRecipe:
    """Read and validate a recipe YAML; relative data paths are taken from the current directory."""
    p = Path(path)
    if not p.exists():
        raise RecipeError(f"{p}: no such recipe file")
    try:
        data = load_yaml(read_text(p, "recipe", max_bytes=MAX_CONFIG_BYTES), str(p))  # bounded, safe types
    except InputError as exc:
        raise RecipeError(str(exc)) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{p}: the top level must be a mapping")
    try:
        return SFTRecipe.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{p}: {'.'.join(str(x) for x in err['loc'])}: {what}")
        raise RecipeError("\n".join(lines)) from exc


def missing_packages() -> list[str]:
    """The packages of the `train` extra that are not importable here."""
    import importlib.util

    return [name for name in TRAIN_PACKAGES if importlib.util.find_spec(name) is None]


def read_pairs(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Pairs from a JSONL file; each needs a string `text` and `target` (errors name the line)."""
    p = Path(path)
    if not p.exists():
        raise RecipeError(f"{p}: no such pairs file (write it with `gem export RUN --format synthesizer`)")
    pairs = []
    try:
        for item in iter_json_lines(p, "pairs"):  # the one bounded JSON-lines reader
            n, obj = item.line, item.value
            if item.error is not None:
                raise RecipeError(f"{p}:{n}: {item.error}")
            for key in ("text", "target"):
                if not isinstance(obj, dict) or not isinstance(obj.get(key), str) or not obj[key]:
                    raise RecipeError(f"{p}:{n}: field '{key}' must be a non-empty string")
            pairs.append(obj)
            if limit is not None and len(pairs) >= limit:
                break
    except InputError as exc:
        raise RecipeError(str(exc)) from None
    if not pairs:
        raise RecipeError(f"{p}: no pairs")
    return pairs


def to_example(pair: dict[str, Any], style: str) -> dict[str, Any]:
    """One TRL prompt/completion example (conversational in chat style)."""
    if style == "chat":
        return {"prompt": [{"role": "system", "content": oneshot_prompt()}, {"role": "user", "content": pair["text"]}],
                "completion": [{"role": "assistant", "content": pair["target"]}]}
    return {"prompt": PLAIN_PROMPT.format(text=pair["text"]), "completion": pair["target"]}


def token_length(example: dict[str, Any], tokenizer: Any) -> int:
    """Tokens of prompt + completion as the trainer will see them."""
    if isinstance(example["prompt"], list):
        text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return len(tokenizer(example["prompt"] + example["completion"])["input_ids"]) + 1


def fitting_examples(pairs: list[dict[str, Any]], tokenizer: Any, recipe: SFTRecipe
                     ) -> tuple[list[dict[str, Any]], int]:
    """Examples that fit `max_length`, and how many did not.

    A block cut at max_length loses its `## end` and teaches the model to stop mid-trajectory, so
    over-long pairs are left out rather than truncated.
    """
    out = []
    for pair in pairs:
        ex = to_example(pair, recipe.prompt_style)
        if token_length(ex, tokenizer) <= recipe.max_length:
            out.append(ex)
    return out, len(pairs) - len(out)


@dataclass
class TrainResult:
    """What a run produced: the per-step training losses, the final eval loss and where the model is."""

    output_dir: Path
    losses: list[float] = field(default_factory=list)
    eval_loss: float | None = None
    steps: int = 0
    examples: int = 0
    too_long: int = 0


def _load_model(recipe: SFTRecipe, pairs: list[dict[str, Any]]) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source: str | Path = recipe.base_model
    if recipe.tiny_model is not None:
        corpus = [p["text"] for p in pairs] + [p["target"] for p in pairs] + [oneshot_prompt()]
        source = build_tiny_model(Path(recipe.output_dir) / "base-tiny", corpus, recipe.tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if recipe.prompt_style == "chat" and not tokenizer.chat_template:
        raise RecipeError(f"{source}: the tokenizer has no chat template; use prompt_style: plain")
    dtype = "bfloat16" if recipe.bf16 and not recipe.use_cpu else "float32"
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    return model, tokenizer


def train_synthesizer(recipe: SFTRecipe, *, on_log: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Fine-tune per `recipe`; the model and tokenizer are saved to `recipe.output_dir`."""
    missing = missing_packages()
    if missing:
        raise RecipeError(f"the 'train' extra is not installed (missing {', '.join(missing)}): "
                          "pip install 'gem-agents[train]'")
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    if recipe.torch_threads:
        torch.set_num_threads(recipe.torch_threads)
    train_pairs = read_pairs(recipe.data.train, recipe.data.max_examples)
    val_pairs = read_pairs(recipe.data.validation) if recipe.data.validation else []
    model, tokenizer = _load_model(recipe, train_pairs + val_pairs)
    train_ex, too_long = fitting_examples(train_pairs, tokenizer, recipe)
    if not train_ex:
        raise RecipeError(f"all {len(train_pairs)} training pairs are longer than max_length={recipe.max_length} "
                          "tokens; raise max_length")
    val_ex, _ = fitting_examples(val_pairs, tokenizer, recipe)
    train_ds = Dataset.from_list(train_ex)
    eval_ds = Dataset.from_list(val_ex) if val_ex else None
    peft_config = None
    if recipe.lora is not None:
        try:
            from peft import LoraConfig as PeftLora
        except ImportError as exc:
            raise RecipeError("lora: needs the 'peft' package (pip install peft)") from exc
        peft_config = PeftLora(r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout,
                               target_modules=recipe.lora.target_modules, task_type="CAUSAL_LM")
    fields = getattr(SFTConfig, "__dataclass_fields__", {})
    # transformers renamed the switch (the old name warns from 5.x on and goes in v6).
    ckpt_key = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    checkpointing: dict[str, Any] = {ckpt_key: recipe.gradient_checkpointing}
    args = SFTConfig(
        output_dir=recipe.output_dir, max_length=recipe.max_length, num_train_epochs=recipe.num_train_epochs,
        max_steps=recipe.max_steps, learning_rate=recipe.learning_rate, lr_scheduler_type=recipe.lr_scheduler_type,
        warmup_steps=recipe.warmup_ratio, weight_decay=recipe.weight_decay,
        per_device_train_batch_size=recipe.per_device_train_batch_size,
        per_device_eval_batch_size=recipe.per_device_train_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        bf16=recipe.bf16 and not recipe.use_cpu, use_cpu=recipe.use_cpu,
        logging_steps=recipe.logging_steps,
        eval_strategy="steps" if eval_ds is not None and recipe.eval_steps else "no", eval_steps=recipe.eval_steps,
        save_strategy="steps", save_steps=recipe.save_steps, save_total_limit=recipe.save_total_limit,
        report_to=recipe.report_to, seed=recipe.seed, completion_only_loss=True, packing=False,
        dataloader_num_workers=0, disable_tqdm=True,
        **checkpointing,
    )
    losses: list[float] = []

    class _Losses(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
            if logs and on_log is not None:
                on_log(dict(logs))

    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=peft_config, callbacks=[_Losses()])
    trainer.train()
    eval_loss = None
    if eval_ds is not None:
        metrics = trainer.evaluate()
        value = metrics.get("eval_loss")
        eval_loss = float(value) if value is not None and math.isfinite(value) else value
    trainer.save_model(recipe.output_dir)
    tokenizer.save_pretrained(recipe.output_dir)
    return TrainResult(output_dir=Path(recipe.output_dir), losses=losses, eval_loss=eval_loss,
                       steps=int(trainer.state.global_step), examples=len(train_ex), too_long=too_long)
