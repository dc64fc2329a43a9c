"""Offline preference optimization on fixed pairs: DPO, DPO + NLL, RPO and REBEL in one trainer.

The whole update is in `train` below, CleanRL-style: draw a batch of pairs, score chosen and rejected
under the policy in one forward pass that reads each prompt once for both (their reference log-probs were
computed once, before training: the reference never changes), compute the loss named by
`PreferenceConfig.loss_type`, take one AdamW step, and log what the notebooks plot:

* per step: the loss, the batch's implicit-reward accuracy, and the mean *sequence* log-probs log π(y_c) and
  log π(y_r) of the batch (sums over completion tokens, as DPO scores them);
* every `eval_every` steps, on `monitor_pairs` (a fixed held-out set): the same log-probs, their margin, the
  preference accuracy, and whatever `eval_fn(policy)` returns (e.g. greedy task accuracy).

Chosen log-probs that *fall* while the margin grows are "likelihood displacement" (notebook 05): DPO only asks
for the gap, so it can buy it by pushing both completions down. α > 0 (DPO + NLL) adds the length-normalized NLL
of y_c and holds it up.

The losses are the first half of this file. Each compares two completions of one prompt, a chosen y_c and a
rejected y_r, through the policy's log-ratio to the reference model. Write

    h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))

for that log-ratio gap (sequence log-probs: see `sequence_logprob`). β·log π/π_ref is the reward implied by the
KL-regularized optimum π* ∝ π_ref · exp(r / β) (`toyenv.kl.kl_regularized_optimum`), so β·h is the policy's
*implicit* reward gap. The losses differ in what they ask of it, and that is where their regularization lives:

* `dpo_loss` (Rafailov et al. 2023): −log σ(β·h). Only the order matters; on separable data the loss keeps
  pushing h up without end, and both log-probs may fall as long as the rejected one falls faster.
* `dpo_nll_loss` (Pang et al. 2024): DPO plus α times the length-normalized NLL of the chosen completion, an
  anchor that keeps the chosen answer likely. TRL calls this weight `rpo_alpha` (its "RPO" is this loss, not
  Nemotron's RPO below).
* `rpo_loss` (Nvidia 2024, Nemotron-4 340B, "reward-aware preference optimization"): match β·h to a target
  gap η·(r_c − r_r) from a reward model, so a barely-better pair is not pushed as far apart as a clearly
  better one, and no pair is pushed to infinity.
* `rebel_loss` (Gao et al. 2024, REBEL): least squares of h/η onto the reward gap r_c − r_r.

The reward-model side of Llama 2's margins is `toyenv.trainers.reward_model.bradley_terry_loss`; the pairs and
their grading are in `toyenv.pairs`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..model import GPT, completion_logprobs, token_logprobs
from ..pairs import pairwise_accuracy
from ..tokenizer import PAD_ID, Tokenizer, pad_preference_batch
from ..utils import eval_mode, progress_bar
from ..validation import check_choice, check_number
from .common import adamw, check_optimization_fields, ensure_finite, epoch_batches, scheduled_lr, set_lr

# --------------------------------------------------------------------------- sequence log-probs
def sequence_logprob(model: GPT, tokens: torch.Tensor, attention_mask: torch.Tensor | None,
                     completion_mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Log-probability (B,) of each row's completion: the sum over completion tokens t of log p(token t | tokens < t).

    `completion_mask` (B, T) is aligned with `tokens`: True at the tokens that are scored (the completion and its
    EOS), like `generate`'s generated_mask or `toyenv.tokenizer.collate`'s loss_mask. Column 0 can never be scored
    (nothing predicts the first token), so a mask that marks it is misaligned and raises. `average=True` divides
    by the number of completion tokens (length normalization, as in the NLL term of `dpo_nll_loss`), so that a
    long answer does not weigh more just for being long. `attention_mask` None means "tokens equal to PAD are
    padding", which is wrong for sampled rows (a model may sample the PAD id): pass the mask then.
    Gradients flow; call under `torch.no_grad()` for the reference model.
    """
    if attention_mask is None:
        attention_mask = tokens != PAD_ID
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be (batch, time), got shape {tuple(tokens.shape)}")
    for name, mask in (("attention_mask", attention_mask), ("completion_mask", completion_mask)):
        if mask.shape != tokens.shape:
            raise ValueError(f"{name} shape {tuple(mask.shape)} != tokens shape {tuple(tokens.shape)}")
    attention_mask = attention_mask.to(dtype=torch.bool, device=tokens.device)
    scored = completion_mask.to(dtype=torch.bool, device=tokens.device)
    if bool(scored[:, 0].any()):
        raise ValueError("completion_mask is True in column 0, which nothing predicts; it must be aligned with "
                         "tokens (True at the completion tokens themselves, as generate's generated_mask)")
    if bool((scored & ~attention_mask).any()):
        raise ValueError("completion_mask marks tokens that attention_mask calls padding")
    n_scored = scored.sum(-1)
    if bool((n_scored == 0).any()):
        raise ValueError(f"row {int((n_scored == 0).nonzero()[0])} has no completion token to score")
    logps = token_logprobs(model, tokens, attention_mask)  # (B, T), column t = log p(token t | tokens < t)
    return _sequence_total(logps, scored, average)


def _sequence_total(logps: torch.Tensor, scored: torch.Tensor, average: bool) -> torch.Tensor:
    """Per row, the sum of the token log-probs `logps` where `scored` is True, or their mean when `average`."""
    total = logps.masked_fill(~scored, 0.0).sum(-1)
    return total / scored.sum(-1) if average else total


def pair_logprobs(model: GPT, pairs: Sequence[Any], tokenizer: Tokenizer | None = None,
                  average: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`(chosen_logps, rejected_logps)`, each (B,), of preference pairs, in one pass that reads each prompt once.

    `pairs` hold `.prompt`, `.chosen` and `.rejected` (a `toyenv.pairs.PreferencePair`). Each completion is
    encoded as SFT encodes it (`BOS prompt completion EOS`, `toyenv.tokenizer.encode_pairs`) and scored on its
    completion tokens and EOS: the same numbers, up to float rounding, as `sequence_logprob` over the 2B whole
    rows. Why one prompt for two completions: the prompt is most of each row (GeneralPoints: about 75 of 90
    tokens), so reading it once for its chosen and rejected completion (`toyenv.model.completion_logprobs`, the RL
    trainer's scorer with k = 2) makes a DPO step about 1.6 times faster than reading 2B whole rows
    (`python -m benchmarks.dpo_step`).
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pair_logprobs needs at least one pair")
    for i, p in enumerate(pairs):
        if not all(isinstance(getattr(p, k, None), str) for k in ("prompt", "chosen", "rejected")):
            raise ValueError(f"pairs[{i}] should have str .prompt, .chosen and .rejected (a "
                             f"PreferencePair), got {p!r}")
    tokenizer = tokenizer or Tokenizer()
    # rows 2i and 2i + 1: pair i's chosen and rejected completion, the layout of k = 2 completions per prompt
    prompts, prompt_mask, completions, completion_mask = (t.to(model.device) for t in pad_preference_batch(
        [tokenizer.encode(p.prompt, bos=True) for p in pairs], [tokenizer.encode(p.chosen, eos=True) for p in pairs],
        [tokenizer.encode(p.rejected, eos=True) for p in pairs]))
    picked, _ = completion_logprobs(model, prompts, prompt_mask, completions, completion_mask)
    logps = _sequence_total(picked, completion_mask, average)
    return logps[0::2], logps[1::2]


# --------------------------------------------------------------------------- losses
def _check_batch(**tensors: torch.Tensor) -> None:
    """All tensors share one non-empty shape (a silent broadcast would average the wrong thing)."""
    (first, ref), *rest = tensors.items()
    for name, t in rest:
        if t.shape != ref.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)} but {first} has {tuple(ref.shape)}")
    if ref.numel() == 0:
        raise ValueError("empty batch: the mean loss of zero pairs is undefined")


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")


def _logratio_gap(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                  ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor) -> torch.Tensor:
    """h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r)), after checking the shapes."""
    _check_batch(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    return (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)


def _reward_gap(reward_chosen, reward_rejected, like: torch.Tensor) -> torch.Tensor:
    """r_c − r_r as a tensor like `like`: rewards are data (a verifier, a reward model), never differentiated."""
    r_c = torch.as_tensor(reward_chosen, dtype=like.dtype, device=like.device).detach()
    r_r = torch.as_tensor(reward_rejected, dtype=like.dtype, device=like.device).detach()
    _check_batch(policy_chosen_logps=like, reward_chosen=r_c, reward_rejected=r_r)
    return r_c - r_r


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct Preference Optimization (Rafailov et al. 2023), the sigmoid loss of TRL's DPOTrainer.

        h    = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))
        loss = mean over the batch of −log σ(β · h)

    This is the Bradley–Terry loss on the implicit rewards β · log π/π_ref, and β is the KL coefficient of the
    objective DPO solves: small β lets the policy go far from the reference. The rewards β (log π − log π_ref)
    are returned detached, for logging (accuracy: chosen_rewards > rejected_rewards): the result is
    (loss, chosen_rewards, rejected_rewards). `logsigmoid` rather than log(sigmoid(.)), which underflows to
    log 0 for large negative β·h.
    """
    _check_positive(beta=beta)
    h = _logratio_gap(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    loss = -F.logsigmoid(beta * h).mean()
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return loss, chosen_rewards, rejected_rewards


def dpo_nll_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                 ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float, alpha: float,
                 chosen_nll: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """DPO plus an NLL anchor on the chosen completion (Pang et al. 2024, "Iterative Reasoning Preference
    Optimization").

        loss = L_DPO + α · mean over the batch of chosen_nll,    chosen_nll = −log π(y_c) / |y_c|

    DPO only asks the chosen completion to gain on the rejected one, and in practice both often lose probability
    (the rejected one faster). The NLL term keeps the chosen answers likely, like SFT on them. `chosen_nll` (B,)
    is the *length-normalized* NLL, `-sequence_logprob(..., average=True)` of the chosen rows, while DPO's terms
    are sums over tokens. α = 0 is plain DPO; TRL exposes α as `rpo_alpha`. Returns (loss, {"dpo", "nll"}), the
    two parts detached, for logging.
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    _check_batch(policy_chosen_logps=policy_chosen_logps, chosen_nll=chosen_nll)
    dpo, _, _ = dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
    nll = chosen_nll.mean()
    return dpo + alpha * nll, {"dpo": dpo.detach(), "nll": nll.detach()}


RPO_DIVERGENCES = ("bce", "squared")


def rpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, reward_chosen: torch.Tensor, reward_rejected: torch.Tensor,
             beta: float, eta: float = 1.0, divergence: str = "bce") -> torch.Tensor:
    """Reward-aware preference optimization (Nemotron-4 340B, Nvidia 2024): match the implicit gap to the real one.

        g    = β · h                    (the policy's implicit reward gap; h as in `dpo_loss`)
        t    = η · (r_c − r_r)          (the target gap, from the rewards)
        "bce":     D = σ(t)·log(σ(t)/σ(g)) + (1 − σ(t))·log((1 − σ(t))/(1 − σ(g)))
        "squared": D = (g − t)²
        loss = mean over the batch of D

    "bce" is the KL divergence from Bernoulli(σ(t)) to Bernoulli(σ(g)): the preference probability the policy
    implies should equal the one the rewards imply. Both divergences are zero exactly at g = t and grow on either
    side; the gradient of "bce" is dD/dg = σ(g) − σ(t). So, unlike DPO, a pair whose gap is already t is left
    alone: a barely-better pair is not pushed as far as a clearly better one, and the policy stops moving away
    from the reference once the gaps match. For a large target gap, σ(t) → 1 and D → −log σ(g), which is the
    DPO loss: RPO is DPO with a finite, reward-dependent goal. Every log is a logsigmoid (1 − σ(x) = σ(−x)).
    """
    _check_positive(beta=beta, eta=eta)
    if divergence not in RPO_DIVERGENCES:
        raise ValueError(f"divergence must be one of {RPO_DIVERGENCES}, got {divergence!r}")
    g = beta * _logratio_gap(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    t = eta * _reward_gap(reward_chosen, reward_rejected, like=g)
    if divergence == "squared":
        return ((g - t) ** 2).mean()
    kl = (torch.sigmoid(t) * (F.logsigmoid(t) - F.logsigmoid(g))
          + torch.sigmoid(-t) * (F.logsigmoid(-t) - F.logsigmoid(-g)))
    return kl.mean()


def rebel_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
               ref_rejected_logps: torch.Tensor, reward_chosen: torch.Tensor, reward_rejected: torch.Tensor,
               eta: float) -> torch.Tensor:
    """REBEL (Gao et al. 2024, "REBEL: Reinforcement Learning via Regressing Relative Rewards").

        loss = mean over the batch of ( (1/η) · h − (r_c − r_r) )²      (h as in `dpo_loss`)

    A least-squares regression of the relative reward onto the log-ratio gap; it is zero where h = η · (r_c − r_r)
    In REBEL the "reference" is the *previous* policy π_t, not a frozen SFT model: each
    iteration takes a step of size η from the last policy (a mirror-descent / natural-policy-gradient step), and
    the next iteration uses the new policy as reference. With a frozen reference the same formula is a
    squared-loss cousin of DPO. The pair needs no order: (r_c − r_r) may be negative.
    """
    _check_positive(eta=eta)
    h = _logratio_gap(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return ((h / eta - _reward_gap(reward_chosen, reward_rejected, like=h)) ** 2).mean()


# --------------------------------------------------------------------------- the trainer
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
        check_optimization_fields(self)
        check_number(self, ("beta", "eta"), above=0)
        check_number(self, "alpha", at_least=0)


def _rewards(pairs: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward tensors of pairs that carry them (graded pairs); RPO and REBEL need them, DPO does not."""
    missing = [i for i, p in enumerate(pairs) if getattr(p, "reward_chosen", None) is None
               or getattr(p, "reward_rejected", None) is None]
    if missing:
        raise ValueError(f"pairs[{missing[0]}] has no reward_chosen / reward_rejected: RPO and REBEL regress on "
                         "reward gaps, so they need graded pairs (toyenv.pairs.general_points_pairs)")
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


def train(
    policy: GPT,
    pairs: Sequence[Any],
    config: PreferenceConfig | None = None,
    tokenizer: Tokenizer | None = None,
    *,
    ref: GPT | None = None,
    monitor_pairs: Sequence[Any] | None = None,
    eval_fn: Callable[[GPT], dict] | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> dict:
    """Train `policy` in place on preference `pairs` (`toyenv.pairs.PreferencePair`s, or anything with .prompt,
    .chosen and .rejected) with `config.loss_type`; return the history.

    `ref` is the frozen reference (default: a copy of `policy` as it is now). history: {"step", "loss", "accuracy",
    "chosen_logp", "rejected_logp" (batch means of sequence log-probs), "lr", "grad_norm": per step; "nll" and
    "dpo" parts for "dpo_nll"; "eval": [(step, {monitor(...) on monitor_pairs, **eval_fn(policy)}), ...] before
    training, every `eval_every` steps and after the last; "config"}. The same policy, pairs and seed give the
    same history. A loss or gradient norm that becomes NaN or inf stops training with FloatingPointError.
    """
    cfg = config or PreferenceConfig()
    pairs = list(pairs)
    if not pairs:
        raise ValueError("the DPO trainer needs at least one preference pair")
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
    batches = epoch_batches(len(pairs), min(cfg.batch_size, len(pairs)), gen)
    bar = progress_bar(range(cfg.max_steps), desc or cfg.loss_type, enabled=progress)
    for step in bar:
        idx = next(batches)
        batch = [pairs[i] for i in idx]

        policy.train()
        lr = scheduled_lr(step, cfg)
        set_lr(opt, lr)
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
