"""Wall time of one DPO step on the shipped base model, and its speed-up over scoring every row whole.

    python -m benchmarks.dpo_step [--batch 32] [--steps 10] [--warmup 2] [--rounds 2]

The inner loop of `toyenv.trainers.dpo.train` (the policy's log-probs of chosen and rejected, the DPO loss at
β = 0.1 against stored reference log-probs, backward, gradient clipping, AdamW) on notebook 05's kind of pairs: the
base model's own graded GeneralPoints answers (`toyenv.experiments.preference.sampled_pairs`). The pairs and their
reference log-probs are made before the clock starts, as the trainer makes them once before training.

"before" is `pair_logprobs` as it was until 2026-12-03: the 2B rows [prompt, completion] read whole, so each prompt
was read twice. `full_row_pair_logprobs` below recreates it and the two scorers alternate, `--rounds` runs each.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch

import toyenv
from toyenv.experiments.preference import sampled_pairs
from toyenv.tokenizer import PAD_ID, collate, encode_pairs
from toyenv.trainers.common import adamw
from toyenv.trainers.dpo import dpo_loss, pair_logprobs, sequence_logprob

from . import before_after
from .before_after import SCORERS, alternate


def full_row_pair_logprobs(model, pairs, tokenizer=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The DPO scorer before 2026-12-03, with `pair_logprobs`' results: every row [prompt, completion] read whole."""
    examples = encode_pairs([(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs], tokenizer)
    tokens, completion_mask = collate(examples)
    tokens, completion_mask = tokens.to(model.device), completion_mask.to(model.device)
    logps = sequence_logprob(model, tokens, tokens != PAD_ID, completion_mask)
    return logps[: len(pairs)], logps[len(pairs) :]


def measure(batch: int = 32, steps: int = 10, warmup: int = 2, scoring: str = "shared", seed: int = 0,
            pairs: list | None = None) -> dict:
    """Median seconds of one DPO step over `steps` steps after `warmup` uncounted ones. `scoring`: "shared" (the
    trainer as it is) or "full_rows" (before: `full_row_pair_logprobs`). `pairs`: at least batch x (warmup + steps)
    pairs (default: sampled here, which takes a few seconds).

    Returns {"step" (seconds), "times" (every counted step), "tokens" (mean tokens the policy reads per batch,
    padding included), "steps", "device"}.
    """
    if scoring not in SCORERS:
        raise ValueError(f"scoring must be one of {SCORERS}, got {scoring!r}")
    toyenv.seed_everything(seed)
    base, tok = toyenv.load_base()
    n = batch * (warmup + steps)
    pairs = pairs if pairs is not None else sampled_pairs(base, tok, n, seed)
    if len(pairs) < n:
        raise ValueError(f"measure needs {n} pairs (batch x (warmup + steps)), got {len(pairs)}")
    batches = [pairs[i : i + batch] for i in range(0, n, batch)]
    with torch.no_grad():
        refs = [pair_logprobs(base, b, tok) for b in batches]
    score = pair_logprobs if scoring == "shared" else full_row_pair_logprobs
    policy = copy.deepcopy(base)
    opt = adamw(policy, 1e-4, 0.0)
    policy.train()
    seconds = []
    for b, (ref_c, ref_r) in zip(batches, refs):
        t0 = time.perf_counter()
        pol_c, pol_r = score(policy, b, tok)
        loss, _, _ = dpo_loss(pol_c, pol_r, ref_c, ref_r, 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        loss.item()
        seconds.append(time.perf_counter() - t0)

    def tokens_read(b) -> int:
        if scoring == "full_rows":
            return collate(encode_pairs([(p.prompt, c) for p in b for c in (p.chosen, p.rejected)], tok))[0].numel()
        longest = max(len(p.prompt) for p in b) + 1  # BOS
        return len(b) * longest + 2 * len(b) * (max(len(c) for p in b for c in (p.chosen, p.rejected)) + 1)  # EOS

    return {"step": statistics.median(seconds[warmup:]), "times": seconds[warmup:],
            "tokens": statistics.mean(tokens_read(b) for b in batches[warmup:]), "steps": steps,
            "device": str(policy.device)}


def before_and_after(batch: int = 32, steps: int = 10, warmup: int = 2, rounds: int = 2) -> dict[str, dict]:
    """`measure` for "full_rows" (before) and "shared" (after) on the same pairs, alternating, `rounds` runs each;
    per variant the median over all its counted steps."""
    base, tok = toyenv.load_base()
    pairs = sampled_pairs(base, tok, batch * (warmup + steps), 0)
    return alternate(measure, rounds, batch=batch, steps=steps, warmup=warmup, pairs=pairs)


def main() -> None:
    before_after.main(__doc__, before_and_after, "one DPO step",
                      "DPO, batch {batch} pairs of the base model's own GeneralPoints answers",
                      "before: every row [prompt, completion] read whole (toyenv.trainers.dpo until 2026-12-03); "
                      "after: each prompt read once for its chosen and rejected completion "
                      "(toyenv.trainers.dpo.pair_logprobs)")


if __name__ == "__main__":
    main()
