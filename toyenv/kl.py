"""KL divergence: exact values and the Monte-Carlo estimators RLHF code uses.

KL(P ‖ Q) = E_{x~P}[log P(x) − log Q(x)]. In RLHF, P is the policy being trained,
Q the frozen reference model, and the samples are the policy's own completions, so
only log P and log Q *at the sampled tokens* are available. Schulman's note
("Approximating KL divergence", 2020) gives three per-sample estimators, written
here with r = Q(x)/P(x) and log r = log Q − log P:

    k1 = −log r                 unbiased, high variance, negative on many samples
    k2 = ½ (log r)²             biased (low bias when P ≈ Q), low variance, ≥ 0
    k3 = (r − 1) − log r        unbiased, low variance, ≥ 0 on every sample

Each takes `logp` (log P at the samples) and `logq` (log Q at the same samples)
and returns one estimate per sample; average them for the estimate of KL(P ‖ Q).
`kl_estimator="k1"|"k2"|"k3"` selects one by name, as in TRL.

What these estimators do as a *loss* is a different question (autograd treats the
samples as fixed): the gradient of E[k1] is zero in expectation, k2's is the
gradient of the reverse KL(P ‖ Q), and k3's is the gradient of the forward
KL(Q ‖ P). Notebook 02 shows it numerically.
"""
from __future__ import annotations

from typing import Callable

import torch

from .utils import eval_mode

KL_ESTIMATORS = ("k1", "k2", "k3")
REDUCTIONS = ("sum", "mean", "none")


def k1(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """log P − log Q per sample. Unbiased for KL(P‖Q); high variance (often negative on single samples)."""
    return logp - logq


def k2(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """½ (log Q − log P)² per sample. Biased (the bias grows with the divergence); low variance; never negative."""
    return 0.5 * (logq - logp) ** 2


def k3(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """(r − 1) − log r with r = Q/P, per sample. Unbiased for KL(P‖Q); low variance; never negative."""
    log_r = logq - logp
    # expm1 keeps r − 1 accurate when r ≈ 1 (the common case: the policy is near its reference).
    return torch.expm1(log_r) - log_r


def k3_clamped(logp: torch.Tensor, logq: torch.Tensor, log_ratio_max: float = 20.0,
               value_max: float = 10.0) -> torch.Tensor:
    """k3 with the two clamps verl's "low_var_kl" applies: log r into [−log_ratio_max, log_ratio_max] (so that
    exp cannot overflow) and the estimate into [−value_max, value_max]. Finite on any finite input, but torch.clamp
    passes no gradient where it clamps: a token whose k3 exceeds `value_max` (r = π_ref/π above about 13.6, or
    below about e^−11, with the defaults) gets no KL gradient at all, exactly where the penalty is largest."""
    if not (log_ratio_max > 0 and value_max > 0):
        raise ValueError(f"log_ratio_max and value_max must be > 0, got {log_ratio_max!r} and {value_max!r}")
    log_r = (logq - logp).clamp(-log_ratio_max, log_ratio_max)
    return (torch.expm1(log_r) - log_r).clamp(-value_max, value_max)


ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"k1": k1, "k2": k2, "k3": k3}


def estimator(kl_estimator: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The estimator function named `kl_estimator` ("k1", "k2" or "k3")."""
    try:
        return ESTIMATORS[kl_estimator]
    except (KeyError, TypeError):
        raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {kl_estimator!r}") from None


def exact_categorical(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Exact KL(P ‖ Q) between categorical distributions given by logits, over the last axis.

    Σ_i p_i (log p_i − log q_i), with p = softmax(p_logits), q = softmax(q_logits). Categories with p_i = 0
    contribute 0; a category with p_i > 0 and q_i = 0 makes the divergence +inf.
    """
    logp = torch.log_softmax(p_logits, dim=-1)
    logq = torch.log_softmax(q_logits, dim=-1)
    p = logp.exp()
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    return terms.sum(-1)


def per_token_kl(
    logp: torch.Tensor, logq: torch.Tensor, mask: torch.Tensor | None = None, kl_estimator: str = "k1"
) -> torch.Tensor:
    """Per-token KL estimates (B, T) from per-token log-probs of the sampled tokens; 0 where `mask` is False."""
    est = estimator(kl_estimator)(logp, logq)
    return est if mask is None else est * mask.to(est.dtype)


def reduce_kl(per_token: torch.Tensor, mask: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Per-sequence KL (B,) from per-token estimates: "sum" over generated tokens (sequence-level KL of the
    completion), "mean" per generated token, or "none" to keep (B, T)."""
    if reduction == "none":
        return per_token * mask.to(per_token.dtype)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    total = (per_token * mask.to(per_token.dtype)).sum(-1)
    if reduction == "sum":
        return total
    return total / mask.sum(-1).clamp(min=1)


def sequence_kl(
    policy: torch.nn.Module,
    ref: torch.nn.Module,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    kl_estimator: str = "k1",
    reduction: str = "sum",
) -> torch.Tensor:
    """KL(π_policy ‖ π_ref) estimated on sampled completions, what the RLHF penalty measures.

    `tokens` and `mask` are what `policy.generate` returned (mask = generated positions). Both models score the
    same tokens (the reference under no_grad, so gradients flow only into the policy); each generated token gets
    the chosen estimator, and the result is summed per sequence ("sum": the sequence-level KL, since
    log π(y|x) = Σ_t log π(y_t|x, y_<t)), averaged per token ("mean"), or kept per token ("none", (B, T)).
    """
    from .model import token_logprobs

    logp = token_logprobs(policy, tokens)
    with torch.no_grad():
        logq = token_logprobs(ref, tokens)
    return reduce_kl(per_token_kl(logp, logq, mask, kl_estimator), mask, reduction)


def _completions_scored(p_model, q_model, prompts, tokenizer, max_new_tokens: int, seed: int, batch_size: int,
                        what: str):
    """For each batch of `prompts`: completions sampled from `p_model` (temperature 1, seeded) and scored by both
    models, yielded as (generated mask, p's (picked, logdist), q's (picked, logdist)) from `next_token_logprobs`."""
    from .model import next_token_logprobs

    if not prompts:
        raise ValueError(f"{what} needs at least one prompt")
    gen = torch.Generator(device=p_model.device).manual_seed(seed)
    with eval_mode(p_model, q_model):
        for start in range(0, len(prompts), batch_size):
            ids = [tokenizer.encode(p, bos=True) for p in prompts[start:start + batch_size]]
            tokens, gen_mask = p_model.generate(ids, max_new_tokens, generator=gen)
            attention = tokens != tokenizer.pad_id
            attention |= gen_mask  # a generated PAD id would still be a real position
            yield (gen_mask, next_token_logprobs(p_model, tokens, attention),
                   next_token_logprobs(q_model.to(tokens.device), tokens, attention))


@torch.no_grad()
def completion_kl(
    p_model: torch.nn.Module,
    q_model: torch.nn.Module,
    prompts: list[str],
    tokenizer,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """KL(P ‖ Q) of two models' completion distributions, one value (nats) per prompt, shape (len(prompts),).

    Completions are sampled from `p_model` (temperature 1, seeded); at every generated position the *exact*
    KL between the two next-token distributions is summed. The sum over positions of the exact per-position KL,
    with prefixes drawn from P, is an unbiased estimate of the sequence-level KL with much less variance than
    summing k1 on the sampled tokens. RL's Razor measures forgetting against
    KL(π0 ‖ π) on the new task: `completion_kl(base, finetuned, new_task_prompts, ...)`.
    """
    out = []
    for gen_mask, (_, logp), (_, logq) in _completions_scored(p_model, q_model, prompts, tokenizer, max_new_tokens,
                                                              seed, batch_size, "completion_kl"):
        per_position = exact_categorical(logp, logq)  # (B, T-1): position t predicts token t+1
        out.append((per_position * gen_mask[:, 1:].to(per_position.dtype)).sum(-1))
    return torch.cat(out).cpu()


@torch.no_grad()
def completion_tv(
    p_model: torch.nn.Module,
    q_model: torch.nn.Module,
    prompts: list[str],
    tokenizer,
    max_new_tokens: int = 32,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Total variation between two models' completion distributions, one estimate per prompt, (len(prompts),).

    TV(P, Q) = Σ_y (P(y) − Q(y))₊ = E_{y~P}[(1 − Q(y)/P(y))₊]: one completion y per prompt is sampled from `p_model`
    (temperature 1, seeded as in `completion_kl`, so the same completions), and each estimate lies in [0, 1]. Not a
    KL, but the other divergence RL's Razor compares with it; unlike the KL it cannot be summed per position.
    """
    out = []
    for gen_mask, (picked_p, _), (picked_q, _) in _completions_scored(p_model, q_model, prompts, tokenizer,
                                                                      max_new_tokens, seed, batch_size, "completion_tv"):
        where = gen_mask[:, 1:].to(torch.float32)
        logp, logq = (picked_p * where).sum(-1), (picked_q * where).sum(-1)
        out.append((1 - torch.exp(logq - logp)).clamp(min=0))
    return torch.cat(out).cpu()


def kl_regularized_optimum(ref_logits: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The policy that maximizes E_π[r] − β KL(π ‖ π_ref) over a finite action set: π* ∝ π_ref · exp(r / β).

    Returns its log-probabilities (same shape as `ref_logits`, normalized over the last axis). β → 0 puts all mass on
    the best action; β → ∞ returns π_ref. (Setting the derivative of Σ π r − β Σ π log(π/π_ref) to zero under
    Σ π = 1 gives log π = log π_ref + r/β − log Z; this is also the optimum that DPO's derivation starts from.)
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0 (beta = 0 has no unique optimum), got {beta}")
    return torch.log_softmax(torch.log_softmax(ref_logits, -1) + rewards / beta, dim=-1)
