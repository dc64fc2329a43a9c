"""Wall time of one SFT step on the shipped base model.

    python -m benchmarks.sft_step [--batch 32] [--steps 10] [--warmup 2]

The inner loop of `toyenv.trainers.sft.train` (completion-only cross-entropy, backward, gradient clipping, AdamW) on
batches of GeneralPoints expert answers, the data the base model was pretrained on. The batches are encoded and
collated before the clock starts, so the median step time is the model's work. `measure` returns the numbers.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import toyenv
from toyenv.envs import general_points as gp
from toyenv.tokenizer import collate, encode_pairs
from toyenv.trainers.common import adamw, completion_loss
from toyenv.trainers.sft import SFTConfig

from .generate import machine


def measure(batch: int = 32, steps: int = 10, warmup: int = 2, seed: int = 0) -> dict:
    """Median seconds of one SFT step over `steps` steps after `warmup` uncounted ones.

    Returns {"step" (seconds), "tokens" (mean tokens per batch, padding included), "targets" (mean completion
    tokens per batch), "steps", "device"}.
    """
    toyenv.seed_everything(seed)
    model, tok = toyenv.load_base()
    cfg = SFTConfig(batch_size=batch, seed=seed)
    pairs = gp.expert_dataset(batch * (warmup + steps), "ten", seed=100 + seed)  # pretraining's own stream
    examples = encode_pairs(pairs, tok)
    batches = [collate(examples[i : i + batch], cfg.completion_only_loss) for i in range(0, len(examples), batch)]
    opt = adamw(model, cfg.learning_rate, cfg.weight_decay)
    model.train()
    seconds = []
    for tokens, loss_mask in batches:
        tokens, loss_mask = tokens.to(model.device), loss_mask.to(model.device)
        t0 = time.perf_counter()
        loss = completion_loss(model, tokens, loss_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        loss.item()  # sft logs the loss every step, which also waits for an asynchronous device
        seconds.append(time.perf_counter() - t0)
    counted = batches[warmup:]
    return {"step": statistics.median(seconds[warmup:]),
            "tokens": statistics.mean(t.numel() for t, _ in counted),
            "targets": statistics.mean(int(m[:, 1:].sum()) for _, m in counted),
            "steps": steps, "device": str(model.device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    r = measure(args.batch, args.steps, args.warmup)
    print(f"machine: {machine()}, device {r['device']}")
    print(f"batch {args.batch} GeneralPoints expert answers ({r['tokens']:.0f} tokens with padding, "
          f"{r['targets']:.0f} completion tokens); median of {args.steps} steps after {args.warmup} warm-up")
    print(f"one SFT step: {1000 * r['step']:.0f} ms")


if __name__ == "__main__":
    main()
