"""The SFT recipe's GPU path on a tiny model: bf16 + activation checkpointing, full fine-tune and LoRA.

    python benchmarks/bench_synth_sft_gpu.py --pairs runs/synth_pairs/train.jsonl [--steps 30]

Needs a CUDA GPU, the `train` extra and `peft`. For each variant it trains a tiny random model
(built locally, no download) for --steps steps on the pairs in chat style, then loads the checkpoint
back and generates on the GPU. Printed: first and last losses, eval loss, seconds, peak GPU memory,
and the number of generated tokens. It checks the code path, not a model's quality.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gem_agents.synthesizer.train import SFTRecipe, read_pairs, to_example, train_synthesizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=Path, required=True, help="train.jsonl from `gem export --format synthesizer`")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("/tmp/gem-sft-gpu"))
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this benchmark checks the GPU path")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    base = {"tiny_model": {"vocab_size": 1024, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
                           "num_attention_heads": 8, "num_key_value_heads": 4},
            "data": {"train": str(args.pairs), "validation": str(args.pairs)}, "prompt_style": "chat",
            "max_length": 8192, "max_steps": args.steps, "learning_rate": 2e-3, "lr_scheduler_type": "constant",
            "warmup_ratio": 0, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "bf16": True,
            "gradient_checkpointing": True, "use_cpu": False, "logging_steps": 1, "save_steps": 100000}
    variants = [("full_bf16_ckpt", {}), ("lora_bf16_ckpt", {"lora": {"r": 8, "alpha": 16}, "learning_rate": 5e-3})]
    for name, extra in variants:
        out = args.out / name
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        r = train_synthesizer(SFTRecipe.model_validate(base | extra | {"output_dir": str(out)}))
        secs = time.perf_counter() - t0
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(out)
        if extra.get("lora"):
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).cuda()
        else:
            model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).cuda()
        ex = to_example(read_pairs(args.pairs)[0], "chat")
        ids = tok(tok.apply_chat_template(ex["prompt"], tokenize=False, add_generation_prompt=True),
                  return_tensors="pt").to("cuda")
        gen = model.generate(**ids, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
        print(name, json.dumps({
            "steps": r.steps, "loss_first": round(r.losses[0], 3), "loss_last": round(r.losses[-1], 3),
            "finite": all(math.isfinite(x) for x in r.losses), "eval_loss": r.eval_loss, "seconds": round(secs, 1),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "generated_tokens": int(gen.shape[1] - ids["input_ids"].shape[1])}))


if __name__ == "__main__":
    main()
