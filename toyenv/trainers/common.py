"""What every trainer shares: the optimizer, the learning-rate schedule, epoch batches, the SFT loss, the guard.

Each trainer (`sft`, `rl`, `dpo`, `reward_model`) keeps its whole update visible in its own `train`; only the
plumbing that would otherwise be written four times lives here. Change the schedule or the optimizer here and
every trainer follows.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from ..model import GPT
from ..validation import check_int, check_number


def adamw(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with GPT-style groups: weight decay on matrices and embeddings only (not on biases and norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate, betas=(0.9, 0.95),
    )


def lr_at(step: int, *, learning_rate: float, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning rate at `step` (0-based): linear warmup over `warmup_steps`, then cosine from `learning_rate` down to
    `learning_rate * min_lr_ratio` at `max_steps` (min_lr_ratio = 1: constant after the warmup)."""
    if step < warmup_steps:
        return learning_rate * (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    floor = learning_rate * min_lr_ratio
    return floor + 0.5 * (learning_rate - floor) * (1 + math.cos(math.pi * progress))


def scheduled_lr(step: int, cfg: Any) -> float:
    """`lr_at` with the schedule fields of a trainer config (learning_rate, warmup_steps, max_steps, min_lr_ratio)."""
    return lr_at(step, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps,
                 min_lr_ratio=cfg.min_lr_ratio)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (the schedule is applied by hand, once per step)."""
    for group in opt.param_groups:
        group["lr"] = lr


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless batches of indices into `n` examples: a fresh permutation per epoch (drawn from `generator`), cut
    into batches of `batch_size`. The tail of an epoch that cannot fill a batch is skipped, so every batch has
    exactly `batch_size` examples and no example appears twice in one epoch."""
    order, cursor = torch.randperm(n, generator=generator), 0
    while True:
        if cursor + batch_size > n:  # new epoch: reshuffle
            order, cursor = torch.randperm(n, generator=generator), 0
        yield order[cursor : cursor + batch_size].tolist()
        cursor += batch_size


def completion_loss(model: GPT, tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where `loss_mask` is True (SFT's loss, and PPO-ptx's)."""
    logits = model(tokens[:, :-1])
    targets = tokens[:, 1:].masked_fill(~loss_mask[:, 1:], -100)  # -100: ignored by cross_entropy
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


def check_optimization_fields(cfg: Any) -> None:
    """The fields every fixed-data trainer config shares (SFT, DPO, reward model), each refused outside its range."""
    check_int(cfg, ("max_steps", "batch_size"), minimum=1)
    check_int(cfg, ("warmup_steps", "eval_every"), minimum=0)
    check_int(cfg, "seed")
    check_number(cfg, ("learning_rate", "max_grad_norm"), above=0)
    check_number(cfg, "min_lr_ratio", at_least=0, at_most=1)
    check_number(cfg, "weight_decay", at_least=0)


def ensure_finite(value: Any, what: str, step: int, learning_rate: float) -> None:
    """Stop a diverging run: raise FloatingPointError if `value` (a float or one-element tensor) is NaN or infinite.

    Call it on the loss before `backward()` and on the gradient norm before `opt.step()`, so the NaN never reaches
    the weights. `what` names the quantity ("SFT loss", "RL gradient norm").
    """
    value = float(value.item() if hasattr(value, "item") else value)  # .item(): a loss tensor still has its graph
    if not math.isfinite(value):
        raise FloatingPointError(
            f"{what} became {value} at step {step} (learning_rate={learning_rate}); training stopped before the "
            f"update. The learning rate ({learning_rate}) is probably too high; try a smaller one, or check the data."
        )
