"""Supervised fine-tuning (SFT): next-token cross-entropy on completions.

The whole update is in `sft` below: encode (prompt, completion) pairs as
`BOS prompt completion EOS`, right-pad a batch, score every position, and keep
the loss only on completion tokens (TRL's `completion_only_loss`): the model
learns to answer, not to reproduce the prompts it will be given.
AdamW, linear warmup then cosine decay, gradient clipping.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .model import GPT
from .tokenizer import EOS_ID, PAD_ID, Tokenizer
from .utils import progress_bar
from .validation import check_bool, check_int, check_number, ensure_finite


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
        check_int(self, ("max_steps", "batch_size"), minimum=1)
        check_int(self, ("warmup_steps", "eval_every"), minimum=0)
        check_int(self, "seed")
        check_bool(self, "completion_only_loss")
        check_number(self, ("learning_rate", "max_grad_norm"), above=0)
        check_number(self, "min_lr_ratio", at_least=0, at_most=1)
        check_number(self, "weight_decay", at_least=0)


def lr_at(step: int, cfg: SFTConfig) -> float:
    """Learning rate at `step` (0-based): linear warmup, then cosine down to min_lr_ratio * learning_rate."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.learning_rate - floor) * (1 + math.cos(math.pi * progress))


def adamw(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with GPT-style groups: weight decay on matrices and embeddings only (not on biases and norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate, betas=(0.9, 0.95),
    )


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer | None = None) -> list[tuple[list[int], int]]:
    """(ids, n_prompt) per pair: ids = BOS + prompt + completion + EOS, n_prompt = len(BOS + prompt)."""
    tokenizer = tokenizer or Tokenizer()
    out = []
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"example {i} should be a (prompt, completion) pair, got {pair!r}")
        prompt, completion = pair
        p = tokenizer.encode(prompt, bos=True)
        out.append((p + tokenizer.encode(completion, eos=True), len(p)))
    return out


def collate(examples: Sequence[tuple[list[int], int]], completion_only: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad encoded examples into (tokens, loss_mask), both (B, T).

    loss_mask[b, t] is True where token t is a target: a completion token (or any non-pad token after
    BOS when `completion_only` is False). Right padding needs no attention mask: causal attention never
    looks at the pads that follow the real tokens.
    """
    T = max(len(ids) for ids, _ in examples)
    tokens = torch.full((len(examples), T), PAD_ID, dtype=torch.long)
    loss_mask = torch.zeros((len(examples), T), dtype=torch.bool)
    for b, (ids, n_prompt) in enumerate(examples):
        tokens[b, : len(ids)] = torch.as_tensor(ids)
        loss_mask[b, (n_prompt if completion_only else 1) : len(ids)] = True
    return tokens, loss_mask


def completion_loss(model: GPT, tokens: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where `loss_mask` is True."""
    logits = model(tokens[:, :-1])
    targets = tokens[:, 1:].masked_fill(~loss_mask[:, 1:], -100)  # -100: ignored by cross_entropy
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


def sft(
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
    order = torch.randperm(len(examples), generator=gen)
    cursor = 0
    bar = progress_bar(range(cfg.max_steps), desc, enabled=progress)
    for step in bar:
        if cursor + cfg.batch_size > len(order):  # new epoch: reshuffle
            order, cursor = torch.randperm(len(examples), generator=gen), 0
        batch = [examples[i] for i in order[cursor : cursor + cfg.batch_size].tolist()]
        cursor += cfg.batch_size
        tokens, loss_mask = collate(batch, cfg.completion_only_loss)
        tokens, loss_mask = tokens.to(dev), loss_mask.to(dev)

        model.train()
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
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
