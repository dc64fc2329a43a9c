"""Supervised fine-tuning (SFT): next-token cross-entropy on completions.

The whole update is in `train` below: encode (prompt, completion) pairs as
`BOS prompt completion EOS`, right-pad a batch, score every position, and keep
the loss only on completion tokens (TRL's `completion_only_loss`): the model
learns to answer, not to reproduce the prompts it will be given.
AdamW, linear warmup then cosine decay, gradient clipping (the shared pieces are in `common.py`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from ..model import GPT
from ..tokenizer import Tokenizer, collate, encode_pairs
from ..utils import progress_bar
from ..validation import check_bool
from .common import (adamw, check_optimization_fields, completion_loss, ensure_finite, epoch_batches, scheduled_lr,
                     set_lr)


@dataclass
class SFTConfig:
    max_steps: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    completion_only_loss: bool = True
    seed: int = 0
    eval_every: int = 0  # call `eval_fn` every this many steps (0: never)

    def __post_init__(self) -> None:
        check_optimization_fields(self)
        check_bool(self, "completion_only_loss")


def train(
    model: GPT,
    data: Sequence[tuple[str, str]],
    config: SFTConfig | None = None,
    tokenizer: Tokenizer | None = None,
    eval_fn: Callable[[GPT], dict] | None = None,
    progress: bool = True,
    desc: str = "SFT",
    initial_eval: dict | None = None,
) -> dict:
    """Fine-tune `model` in place on (prompt, completion) pairs; return the history for plotting.

    history: {"step", "loss", "lr", "grad_norm": per step; "eval": [(step, eval_fn(model)), ...];
    "tokens": completion tokens seen; "config": the SFTConfig as a dict}. `eval_fn` runs before training
    and every `config.eval_every` steps (and after the last), with the model in eval mode. `initial_eval`: what
    `eval_fn` returns for the model as passed in, when the caller already has it (a copy of the base model scores
    what the base model scored); it becomes the step-0 entry and saves one evaluation.
    A loss or gradient norm that becomes NaN or inf stops training with FloatingPointError, before the update.
    """
    cfg = config or SFTConfig()
    if len(data) == 0:
        raise ValueError("sft needs at least one (prompt, completion) pair")
    examples = encode_pairs(data, tokenizer)
    too_long = [len(ids) for ids, _ in examples if len(ids) > model.config.block_size + 1]
    if too_long:
        raise ValueError(f"{len(too_long)} example(s) exceed block_size {model.config.block_size} (longest {max(too_long)} tokens)")
    dev = model.device
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = adamw(model, cfg.learning_rate, cfg.weight_decay)
    history = {"step": [], "loss": [], "lr": [], "grad_norm": [], "eval": [], "tokens": 0, "config": asdict(cfg)}

    def run_eval(step: int) -> None:
        if eval_fn is not None:
            model.eval()
            history["eval"].append((step, eval_fn(model)))

    if cfg.eval_every:
        if initial_eval is not None:
            history["eval"].append((0, initial_eval))
        else:
            run_eval(0)
    batches = epoch_batches(len(examples), cfg.batch_size, gen)
    bar = progress_bar(range(cfg.max_steps), desc, enabled=progress)
    for step in bar:
        batch = [examples[i] for i in next(batches)]
        tokens, loss_mask = collate(batch, cfg.completion_only_loss)
        tokens, loss_mask = tokens.to(dev), loss_mask.to(dev)

        model.train()
        lr = scheduled_lr(step, cfg)
        set_lr(opt, lr)
        loss = completion_loss(model, tokens, loss_mask)
        ensure_finite(loss, "SFT loss", step, cfg.learning_rate)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        ensure_finite(grad_norm, "SFT gradient norm", step, cfg.learning_rate)  # before the NaN reaches the weights
        opt.step()

        history["step"].append(step)
        history["loss"].append(loss.item())
        history["lr"].append(lr)
        history["grad_norm"].append(float(grad_norm))
        history["tokens"] += int(loss_mask[:, 1:].sum())
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps):
            run_eval(step + 1)
    model.eval()
    return history
