"""Offline preference optimization on fixed pairs: DPO, DPO + NLL, RPO and REBEL in one trainer.

The whole update is in `train_preference` below, CleanRL-style: draw a batch of pairs, score chosen and rejected
under the policy in one forward pass (their reference log-probs were computed once, before training: the
reference never changes), compute the loss named by `PreferenceConfig.loss_type`, take one AdamW step. The
losses themselves live in `toyenv.preference`; this module only decides which one and logs what the notebooks
plot:

* per step: the loss, the batch's implicit-reward accuracy, and the mean *sequence* log-probs log π(y_c) and
  log π(y_r) of the batch (sums over completion tokens, as DPO scores them);
* every `eval_every` steps, on `monitor_pairs` (a fixed held-out set): the same log-probs, their margin, the
  preference accuracy, and whatever `eval_fn(policy)` returns (e.g. greedy task accuracy).

Chosen log-probs that *fall* while the margin grows are "likelihood displacement" (notebook 05): DPO only asks
for the gap, so it can buy it by pushing both completions down. α > 0 (DPO + NLL) adds the length-normalized NLL
of y_c and holds it up.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .model import GPT
from .preference import (RPO_DIVERGENCES, dpo_loss, dpo_nll_loss, pair_logprobs, rebel_loss, rpo_loss)
from .reward_model import pairwise_accuracy
from .tokenizer import Tokenizer
from .train import adamw, lr_at
from .utils import eval_mode, progress_bar
from .validation import check_choice, check_int, check_number, ensure_finite

LOSS_TYPES = ("dpo", "dpo_nll", "rpo", "rebel")


@dataclass
class PreferenceConfig:
    loss_type: str = "dpo"          # one of LOSS_TYPES
    beta: float = 0.1               # KL coefficient of the implicit objective (dpo, dpo_nll, rpo)
    alpha: float = 1.0              # weight of the chosen NLL in "dpo_nll" (TRL: rpo_alpha)
    eta: float = 1.0                # reward-gap scale of "rpo" (target β·h = η·Δr) and "rebel" (h = η·Δr)
    rpo_divergence: str = "bce"     # "bce" (Bernoulli KL, Nemotron-4) or "squared"
    max_steps: int = 200
    batch_size: int = 32            # pairs per step (2 * batch_size sequences go through the model)
    learning_rate: float = 1e-4
    warmup_steps: int = 10
    min_lr_ratio: float = 1.0       # 1.0: constant after warmup (cosine to learning_rate * min_lr_ratio otherwise)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_every: int = 25            # monitor_pairs / eval_fn every this many steps (0: only before and after)

    def __post_init__(self) -> None:
        check_choice(self, "loss_type", LOSS_TYPES)
        check_choice(self, "rpo_divergence", RPO_DIVERGENCES)
        check_int(self, ("max_steps", "batch_size"), minimum=1)
        check_int(self, ("warmup_steps", "eval_every"), minimum=0)
        check_int(self, "seed")
        check_number(self, ("beta", "eta", "learning_rate", "max_grad_norm"), above=0)
        check_number(self, ("alpha", "weight_decay"), at_least=0)
        check_number(self, "min_lr_ratio", at_least=0, at_most=1)


def _rewards(pairs: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward tensors of pairs that carry them (GradedPair); RPO and REBEL need them, DPO does not."""
    missing = [i for i, p in enumerate(pairs) if getattr(p, "reward_chosen", None) is None
               or getattr(p, "reward_rejected", None) is None]
    if missing:
        raise ValueError(f"pairs[{missing[0]}] has no reward_chosen / reward_rejected: RPO and REBEL regress on "
                         "reward gaps, so they need graded pairs (toyenv.preference.general_points_pairs)")
    return (torch.tensor([float(p.reward_chosen) for p in pairs]),
            torch.tensor([float(p.reward_rejected) for p in pairs]))


@torch.no_grad()
def _all_logprobs(model: GPT, pairs: Sequence[Any], tokenizer: Tokenizer | None, batch_size: int = 256,
                  average: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """pair_logprobs over a whole list in batches, on the CPU, without gradients."""
    with eval_mode(model):
        parts = [pair_logprobs(model, pairs[s : s + batch_size], tokenizer, average)
                 for s in range(0, len(pairs), batch_size)]
    return torch.cat([c for c, _ in parts]).cpu(), torch.cat([r for _, r in parts]).cpu()


def monitor(policy: GPT, ref_logps: tuple[torch.Tensor, torch.Tensor], pairs: Sequence[Any],
            tokenizer: Tokenizer | None = None) -> dict[str, float]:
    """What displacement looks like on a fixed set of pairs: mean log π(y_c), log π(y_r) (sequence sums), their
    change from the reference, the implicit margin h (mean of the log-ratio gap) and the preference accuracy
    (h > 0: the policy moved y_c up relative to y_r; a tie, as at the start, counts half)."""
    c, r = _all_logprobs(policy, pairs, tokenizer)
    ref_c, ref_r = ref_logps
    h = (c - ref_c) - (r - ref_r)
    return {"chosen_logp": float(c.mean()), "rejected_logp": float(r.mean()),
            "chosen_delta": float((c - ref_c).mean()), "rejected_delta": float((r - ref_r).mean()),
            "margin": float(h.mean()), "accuracy": pairwise_accuracy(c - ref_c, r - ref_r)}


def logratio_gaps(policy: GPT, ref: GPT, pairs: Sequence[Any], tokenizer: Tokenizer | None = None) -> torch.Tensor:
    """h per pair (B,): (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r)), without gradients.
    β·h is the policy's implicit reward gap; RPO and REBEL ask it to match a multiple of r_c − r_r."""
    c, r = _all_logprobs(policy, list(pairs), tokenizer)
    ref_c, ref_r = _all_logprobs(ref, list(pairs), tokenizer)
    return (c - ref_c) - (r - ref_r)


def train_preference(
    policy: GPT,
    pairs: Sequence[Any],
    config: PreferenceConfig | None = None,
    ref: GPT | None = None,
    tokenizer: Tokenizer | None = None,
    monitor_pairs: Sequence[Any] | None = None,
    eval_fn: Callable[[GPT], dict] | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> dict:
    """Train `policy` in place on preference `pairs` (GradedPair, or anything with .prompt/.chosen/.rejected) with
    `config.loss_type`; return the history.

    `ref` is the frozen reference (default: a copy of `policy` as it is now). history: {"step", "loss", "accuracy",
    "chosen_logp", "rejected_logp" (batch means of sequence log-probs), "lr", "grad_norm": per step; "nll" and
    "dpo" parts for "dpo_nll"; "eval": [(step, {monitor(...) on monitor_pairs, **eval_fn(policy)}), ...] before
    training, every `eval_every` steps and after the last; "config"}. The same policy, pairs and seed give the
    same history. A loss or gradient norm that becomes NaN or inf stops training with FloatingPointError.
    """
    cfg = config or PreferenceConfig()
    pairs = list(pairs)
    if not pairs:
        raise ValueError("train_preference needs at least one preference pair")
    needs_rewards = cfg.loss_type in ("rpo", "rebel")
    if needs_rewards:
        reward_c, reward_r = _rewards(pairs)
    if ref is None:
        ref = copy.deepcopy(policy)
    ref_c, ref_r = _all_logprobs(ref, pairs, tokenizer)  # the reference is frozen: score every pair once
    tok = tokenizer or Tokenizer()
    chosen_len = torch.tensor([len(tok.encode(p.chosen, eos=True)) for p in pairs], dtype=torch.float32)
    if monitor_pairs is not None:
        monitor_pairs = list(monitor_pairs)
        monitor_ref = _all_logprobs(ref, monitor_pairs, tokenizer)

    dev = policy.device
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = adamw(policy, cfg.learning_rate, cfg.weight_decay)
    keys = ("step", "loss", "accuracy", "chosen_logp", "rejected_logp", "lr", "grad_norm", "dpo", "nll")
    history: dict = {k: [] for k in keys}
    history.update(eval=[], config=asdict(cfg))

    def run_eval(step: int) -> None:
        row: dict = {}
        if monitor_pairs is not None:
            row.update(monitor(policy, monitor_ref, monitor_pairs, tokenizer))
        if eval_fn is not None:
            policy.eval()
            row.update(eval_fn(policy))
        if row:
            history["eval"].append((step, row))

    run_eval(0)
    bs = min(cfg.batch_size, len(pairs))
    order, cursor = torch.randperm(len(pairs), generator=gen), 0
    bar = progress_bar(range(cfg.max_steps), desc or cfg.loss_type, enabled=progress)
    for step in bar:
        if cursor + bs > len(order):  # new epoch: reshuffle
            order, cursor = torch.randperm(len(pairs), generator=gen), 0
        idx = order[cursor : cursor + bs].tolist()
        cursor += bs
        batch = [pairs[i] for i in idx]

        policy.train()
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        # --- the update: policy log-probs of chosen and rejected (one pass), against the stored reference ones
        pol_c, pol_r = pair_logprobs(policy, batch, tokenizer)
        rc, rr = ref_c[idx].to(dev), ref_r[idx].to(dev)
        parts = {}
        if cfg.loss_type == "dpo":
            loss, _, _ = dpo_loss(pol_c, pol_r, rc, rr, cfg.beta)
        elif cfg.loss_type == "dpo_nll":
            # the NLL term is length-normalized: the chosen sequence log-prob over its number of tokens (with EOS)
            chosen_nll = -pol_c / chosen_len[idx].to(dev)
            loss, parts = dpo_nll_loss(pol_c, pol_r, rc, rr, cfg.beta, cfg.alpha, chosen_nll)
        elif cfg.loss_type == "rpo":
            loss = rpo_loss(pol_c, pol_r, rc, rr, reward_c[idx].to(dev), reward_r[idx].to(dev), cfg.beta,
                            cfg.eta, cfg.rpo_divergence)
        else:  # rebel
            loss = rebel_loss(pol_c, pol_r, rc, rr, reward_c[idx].to(dev), reward_r[idx].to(dev), cfg.eta)
        ensure_finite(loss, f"{cfg.loss_type} loss", step, cfg.learning_rate)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
        ensure_finite(grad_norm, f"{cfg.loss_type} gradient norm", step, cfg.learning_rate)  # before opt.step
        opt.step()

        h = ((pol_c.detach() - rc) - (pol_r.detach() - rr))
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["accuracy"].append(pairwise_accuracy(h, torch.zeros_like(h)))  # ties count half, as in the evals
        history["chosen_logp"].append(float(pol_c.detach().mean()))
        history["rejected_logp"].append(float(pol_r.detach().mean()))
        history["lr"].append(lr)
        history["grad_norm"].append(float(grad_norm))
        history["dpo"].append(float(parts["dpo"]) if parts else float("nan"))
        history["nll"].append(float(parts["nll"]) if parts else float("nan"))
        bar.set_postfix(loss=f"{loss.item():.3f}", chosen=f"{history['chosen_logp'][-1]:.2f}")
        if step + 1 == cfg.max_steps or (cfg.eval_every and (step + 1) % cfg.eval_every == 0):
            run_eval(step + 1)
    policy.eval()
    return history


def tabular_dpo(ref_logits: torch.Tensor, rewards: torch.Tensor, beta: float, steps: int = 3000,
                lr: float = 0.05) -> torch.Tensor:
    """DPO on a one-step problem with K answers, with infinitely many preference labels: the policy's log-probs
    (K,) at the end.

    Every pair (i, j) is labelled by a Bradley–Terry annotator whose rewards are `rewards`: P(i ≻ j) = σ(r_i − r_j),
    and pairs are drawn from π_ref. The expected DPO loss is then

        Σ_{i≠j} π_ref(i) π_ref(j) · −[P(i ≻ j) log σ(β h_ij) + P(j ≻ i) log σ(−β h_ij)],
        h_ij = log π(i)/π_ref(i) − log π(j)/π_ref(j),

    minimized with Adam over free logits starting at the reference. Its minimum has β h_ij = r_i − r_j for every
    pair, i.e. π ∝ π_ref · exp(r / β): the KL-regularized optimum (`toyenv.kl.kl_regularized_optimum`) that DPO's
    derivation starts from, reached without any reward model or sampling.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    ref_logp = torch.log_softmax(torch.as_tensor(ref_logits, dtype=torch.float64), -1)
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if ref_logp.dim() != 1 or r.shape != ref_logp.shape:
        raise ValueError(f"ref_logits and rewards must both be (K,), got {tuple(ref_logp.shape)} and {tuple(r.shape)}")
    p_pref = torch.sigmoid(r[:, None] - r[None, :])              # P(i ≻ j)
    weight = (ref_logp[:, None] + ref_logp[None, :]).exp()       # how often the pair is drawn
    weight = weight * (1 - torch.eye(len(r), dtype=weight.dtype))
    logits = ref_logp.clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        logp = torch.log_softmax(logits, -1)
        ratio = logp - ref_logp
        h = ratio[:, None] - ratio[None, :]
        loss = -(weight * (p_pref * F.logsigmoid(beta * h) + (1 - p_pref) * F.logsigmoid(-beta * h))).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.log_softmax(logits.detach(), -1).float()
