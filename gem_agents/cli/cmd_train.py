"""`gem train-synthesizer --config RECIPE`: fine-tune the one-shot Trajectory Synthesizer (TRL SFT)."""

from __future__ import annotations

from pathlib import Path

import typer

from gem_agents.cli.common import console, fail, print_json


def train_synthesizer_cmd(
    config: Path = typer.Option(Path("configs/synthesizer_sft.yaml"), "--config", "-c",
                                help="SFT recipe YAML (see configs/synthesizer_sft.yaml)."),
    output_dir: str | None = typer.Option(None, "--output-dir", help="Override the recipe's output_dir."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override the recipe's max_steps (smoke runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
) -> None:
    """Train a synthesizer model on pairs from `gem export RUN --format synthesizer`."""
    from gem_agents.synthesizer.train import RecipeError, load_recipe, train_synthesizer

    try:
        recipe = load_recipe(config)
    except RecipeError as exc:
        fail(str(exc), 2)
    updates = {k: v for k, v in (("output_dir", output_dir), ("max_steps", max_steps)) if v is not None}
    if updates:
        recipe = recipe.model_copy(update=updates)

    def log(logs: dict[str, float]) -> None:
        if not as_json and "loss" in logs:
            console.print(f"step loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0):.2e}", highlight=False)

    try:
        result = train_synthesizer(recipe, on_log=log)
    except RecipeError as exc:
        fail(str(exc), 2)
    summary = {"output_dir": str(result.output_dir), "steps": result.steps, "examples": result.examples,
               "first_loss": result.losses[0] if result.losses else None,
               "last_loss": result.losses[-1] if result.losses else None, "eval_loss": result.eval_loss,
               "too_long": result.too_long, "losses": result.losses}
    if as_json:
        print_json(summary)
    else:
        console.print(f"[bold]gem train-synthesizer[/]: {result.steps} steps on {result.examples} pairs → "
                      f"{result.output_dir}", highlight=False)
        console.print(f"  loss {summary['first_loss']} → {summary['last_loss']}; eval loss {result.eval_loss}; "
                      f"{result.too_long} pairs longer than max_length left out", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `gem train-synthesizer`."""
    app.command("train-synthesizer")(train_synthesizer_cmd)
