"""Wall time of one reward-model step on the shipped base model, and its speed-up over scoring every row whole.

    python -m benchmarks.reward_model_step [--batch 32] [--steps 10] [--warmup 2] [--rounds 2]

The inner loop of `toyenv.trainers.reward_model.train` (the scores of chosen and rejected, the Bradley–Terry loss
with Llama 2's small margins, backward, gradient clipping, AdamW) on notebook 06's pairs: expert GeneralPoints
answers against graded corruptions of them (`toyenv.experiments.preference.graded_pool_pairs`), a reward model
started from the base model's trunk. The pairs are encoded before the clock starts, as the trainer encodes them once.

"before" is the trainer's scoring until 2026-12-04: the 2B rows [prompt, completion] read whole by
`RewardModel.forward`, so each prompt was read twice. `full_row_pair_scores` below recreates it and the two scorers
alternate, `--rounds` runs each.
"""
from __future__ import annotations

import statistics
import time

import torch

import toyenv
from toyenv.experiments.preference import graded_pool_pairs
from toyenv.pairs import margins_for
from toyenv.tokenizer import Tokenizer, pad_preference_batch
from toyenv.trainers.common import adamw
from toyenv.trainers.reward_model import RewardModel, bradley_terry_loss, pair_scores

from . import before_after
from .before_after import SCORERS, alternate


def full_row_pair_scores(rm: RewardModel, prompts: list, chosen: list, rejected: list
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's scorer before 2026-12-04: the 2B rows [prompt, completion] read whole, in one forward pass."""
    tokens, mask = Tokenizer().pad_batch([p + c for p, c in zip(prompts + prompts, chosen + rejected)], side="right")
    scores = rm(tokens.to(rm.device), mask.to(rm.device))
    return scores[: len(prompts)], scores[len(prompts) :]


def tokens_read(scoring: str, prompts: list, chosen: list, rejected: list) -> int:
    """Tokens one batch puts through the model, padding included."""
    if scoring == "full_rows":
        return 2 * len(prompts) * max(len(p) + len(c) for p, c in zip(prompts + prompts, chosen + rejected))
    return sum(t.numel() for t in pad_preference_batch(prompts, chosen, rejected)[::2])


def measure(batch: int = 32, steps: int = 10, warmup: int = 2, scoring: str = "shared", seed: int = 0) -> dict:
    """Median seconds of one reward-model step over `steps` steps after `warmup` uncounted ones. `scoring`: "shared"
    (the trainer as it is) or "full_rows" (before: `full_row_pair_scores`).

    Returns {"step" (seconds), "times" (every counted step), "tokens" (mean tokens read per batch, padding
    included), "steps", "device"}.
    """
    if scoring not in SCORERS:
        raise ValueError(f"scoring must be one of {SCORERS}, got {scoring!r}")
    base, tok = toyenv.load_base()
    n = batch * (warmup + steps)
    pairs = graded_pool_pairs(n, seed)
    encoded = [([tok.encode(p.prompt, bos=True) for p in b], [tok.encode(p.chosen, eos=True) for p in b],
                [tok.encode(p.rejected, eos=True) for p in b], margins_for([p.strength for p in b], "small"))
               for b in (pairs[i : i + batch] for i in range(0, n, batch))]
    toyenv.seed_everything(seed)
    rm = RewardModel.from_gpt(base)
    opt = adamw(rm, 3e-4, 0.0)
    rm.train()
    score = pair_scores if scoring == "shared" else full_row_pair_scores  # the trainer's own scorer, or before
    seconds = []
    for prompts, chosen, rejected, margins in encoded:
        t0 = time.perf_counter()
        r_c, r_r = score(rm, prompts, chosen, rejected)
        loss = bradley_terry_loss(r_c, r_r, margins.to(rm.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0)
        opt.step()
        loss.item()
        seconds.append(time.perf_counter() - t0)
    return {"step": statistics.median(seconds[warmup:]), "times": seconds[warmup:],
            "tokens": statistics.mean(tokens_read(scoring, *e[:3]) for e in encoded[warmup:]), "steps": steps,
            "device": str(rm.device)}


def before_and_after(batch: int = 32, steps: int = 10, warmup: int = 2, rounds: int = 2) -> dict[str, dict]:
    """`measure` for "full_rows" (before) and "shared" (after) on the same pairs, alternating, `rounds` runs each;
    per variant the median over all its counted steps."""
    return alternate(measure, rounds, batch=batch, steps=steps, warmup=warmup)


def main() -> None:
    before_after.main(__doc__, before_and_after, "one reward-model step",
                      "reward model, batch {batch} of notebook 06's graded GeneralPoints pairs",
                      "before: every row [prompt, completion] read whole (toyenv.trainers.reward_model until "
                      "2026-12-04); after: each prompt read once for its chosen and rejected completion "
                      "(RewardModel.completion_scores)")


if __name__ == "__main__":
    main()
