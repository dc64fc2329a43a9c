"""Where the KL estimate goes, and what its gradient really is: the exact atlas on a softmax policy (notebook 02).

RLHF code penalizes KL(π ‖ π_ref) with a per-sample estimate k(y) = k(log π(y), log π_ref(y)) at the policy's own
samples y ~ π (`toyenv.kl`: k1, k2, k3), placed either

* **in the reward**: the policy gradient multiplies the estimate, a detached number, by ∇log π(y), as PPO and RLOO
  do with k1: the gradient is E_y[sg(k(y)) ∇log π(y)];
* **in the loss**: autograd differentiates k(log π_θ(y), log π_ref(y)) through log π_θ with the sample held fixed,
  as GRPO does with k3: the gradient is E_y[∇_θ k(y)].

Which divergence that gradient descends is not the estimator's label. On a policy over a finite set of actions,
π = softmax(θ), the expectation over y is a finite sum Σ_y π(y)·(...), so every placement's expected gradient is
exact (`expected_gradient`, float64), and the closed forms it should equal are explicit:

    ∇_θ KL(π ‖ π_ref)   = π ⊙ (log π − log π_ref − KL(π ‖ π_ref))        (`reverse_kl_gradient`)
    ∇_θ KL(π_ref ‖ π)   = π − π_ref                                        (`forward_kl_gradient`)
    ∇_θ ½χ²(π ‖ π_ref)  = π²/π_ref − π · Σ_y π(y)²/π_ref(y)                (`half_chi2_gradient`)

`PLACEMENTS` lists the placements the field has argued about since 2025 (Tang & Munos 2025, arXiv 2506.09477;
Liu et al. 2025, 2510.01555; Shah et al. 2025, 2512.21852; DeepSeek-V3.2 §3.1), including two bugs that shipped in
public code; `atlas` gives, for each, the cosine of its expected gradient with both KL gradients and which closed
form (if any) it equals. Signs: every gradient here is the one gradient *descent* follows to shrink the penalty, so
the right placements point along +∇KL(π ‖ π_ref).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .kl import ESTIMATORS, KL_ESTIMATORS

WHERE = ("reward", "loss")
CLOSED_FORMS = ("reverse_kl", "forward_kl", "half_chi2", "zero", "minus_reverse_kl")
LABELS = {"reverse_kl": "∇KL(π‖π_ref)", "forward_kl": "∇KL(π_ref‖π)", "half_chi2": "∇½χ²(π‖π_ref)", "zero": "zero",
          "minus_reverse_kl": "−∇KL(π‖π_ref)"}  # how a notebook prints each closed form


@dataclass(frozen=True)
class Placement:
    """One way of putting a KL estimate into training."""

    name: str
    kl_estimator: str               # "k1" | "k2" | "k3" (toyenv.kl)
    where: str                      # "reward" (detached, times ∇log π) or "loss" (differentiated through log π)
    equals: str | None              # the closed form its expected gradient equals (CLOSED_FORMS), None if biased
    sign: float = 1.0               # −1: the penalty enters with the wrong sign (it then rewards divergence)
    flipped_ratio: bool = False     # k3 written with r = π/π_ref instead of r = π_ref/π
    importance_weight: bool = False  # the estimate times π_θ/π_old, the ratio differentiable (equal to 1 on-policy)
    note: str = ""

    def __post_init__(self) -> None:
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"Placement.kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")
        if self.where not in WHERE:
            raise ValueError(f"Placement.where must be one of {WHERE}, got {self.where!r}")
        if self.equals is not None and self.equals not in CLOSED_FORMS:
            raise ValueError(f"Placement.equals must be None or one of {CLOSED_FORMS}, got {self.equals!r}")
        if self.sign not in (1.0, -1.0):
            raise ValueError(f"Placement.sign must be 1 or -1, got {self.sign!r}")


PLACEMENTS = (
    Placement("k1 in the reward", "k1", "reward", "reverse_kl", note="PPO, RLOO (TRL's default)"),
    Placement("k2 as a loss", "k2", "loss", "reverse_kl", note="SkyRL's default, OpenRLHF's k2_loss"),
    Placement("k3 × π/π_old as a loss", "k3", "loss", "reverse_kl", importance_weight=True,
              note="DeepSeek-V3.2; TRL's use_bias_correction_kl"),
    Placement("k3 as a loss", "k3", "loss", "forward_kl", note="GRPO"),
    Placement("k3, ratio flipped, as a loss", "k3", "loss", "half_chi2", flipped_ratio=True,
              note="a bug that shipped: r = π/π_ref"),
    Placement("k2 in the reward", "k2", "reward", None, note="biased"),
    Placement("k3 in the reward", "k3", "reward", None, note="biased (asked of TRL's RLOO 'for lower variance')"),
    Placement("k1 as a loss", "k1", "loss", "zero", note="its gradient is E[∇log π] = 0"),
    Placement("k1 in the reward, sign flipped", "k1", "reward", "minus_reverse_kl", sign=-1.0,
              note="a bug that shipped: it climbs the KL"),
)


def _as_logits(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.dim() != 1 or x.numel() < 2:
        raise ValueError(f"{name} must be one vector of at least 2 logits (one per action), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite")
    return x.detach()


def surrogate_gradient(surrogate, logits, ref_logits) -> torch.Tensor:
    """E_{y~π}[∇_θ surrogate(y)] with respect to the policy's logits θ, exactly (a sum over every action weighted by
    π(y)), in float64. `surrogate(logp, logq)` receives log π_θ (with gradient) and log π_ref of every action, (K,)
    each, and returns the per-sample quantity a trainer would differentiate at each action, (K,). The weights π(y)
    are not differentiated: the expectation is over the sampling distribution, as a Monte-Carlo average of the
    same per-sample gradients would be."""
    theta = _as_logits(logits, "logits").requires_grad_(True)
    logq = torch.log_softmax(_as_logits(ref_logits, "ref_logits"), dim=-1)
    if logq.shape != theta.shape:
        raise ValueError(f"logits {tuple(theta.shape)} and ref_logits {tuple(logq.shape)} differ in shape")
    logp = torch.log_softmax(theta, dim=-1)
    per_sample = surrogate(logp, logq)
    if not isinstance(per_sample, torch.Tensor) or per_sample.shape != logp.shape:
        raise ValueError(f"the surrogate must return one value per action, a tensor of shape {tuple(logp.shape)}, "
                         f"got {getattr(per_sample, 'shape', type(per_sample).__name__)}")
    if not per_sample.requires_grad:
        return torch.zeros_like(theta)  # nothing in it depends on θ
    weight = logp.exp().detach()  # π(y): how often y is sampled
    (grad,) = torch.autograd.grad((weight * per_sample).sum(), theta, allow_unused=True)
    return torch.zeros_like(theta) if grad is None else grad


def surrogate(placement: Placement):
    """The per-sample surrogate of `placement`, as `surrogate_gradient` takes it."""
    est = ESTIMATORS[placement.kl_estimator]

    def per_sample(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
        # k3's ratio is r = exp(second − first); flipping the arguments makes it π/π_ref
        k = est(logq, logp) if placement.flipped_ratio else est(logp, logq)
        out = k.detach() * logp if placement.where == "reward" else k  # in the reward the estimate is a number
        if placement.importance_weight:
            out = out * torch.exp(logp - logp.detach())  # π_θ/π_old: 1 here, but not its gradient
        return placement.sign * out

    return per_sample


def expected_gradient(placement: Placement, logits, ref_logits) -> torch.Tensor:
    """E_{y~π}[the placement's gradient at y], exactly (`surrogate_gradient` of its `surrogate`)."""
    return surrogate_gradient(surrogate(placement), logits, ref_logits)


def reverse_kl_gradient(logits, ref_logits) -> torch.Tensor:
    """∇_θ KL(π ‖ π_ref) = π ⊙ (log π − log π_ref − KL(π ‖ π_ref)), for π = softmax(θ)."""
    logp = torch.log_softmax(_as_logits(logits, "logits"), -1)
    logq = torch.log_softmax(_as_logits(ref_logits, "ref_logits"), -1)
    p = logp.exp()
    return p * (logp - logq - (p * (logp - logq)).sum())


def forward_kl_gradient(logits, ref_logits) -> torch.Tensor:
    """∇_θ KL(π_ref ‖ π) = π − π_ref."""
    return torch.softmax(_as_logits(logits, "logits"), -1) - torch.softmax(_as_logits(ref_logits, "ref_logits"), -1)


def half_chi2_gradient(logits, ref_logits) -> torch.Tensor:
    """∇_θ ½χ²(π ‖ π_ref) = ∇_θ ½ Σ_y (π(y) − π_ref(y))²/π_ref(y) = π²/π_ref − π · Σ_y π(y)²/π_ref(y)."""
    p = torch.softmax(_as_logits(logits, "logits"), -1)
    q = torch.softmax(_as_logits(ref_logits, "ref_logits"), -1)
    return p * p / q - p * (p * p / q).sum()


def closed_form(name: str, logits, ref_logits) -> torch.Tensor:
    """The gradient named `name` (one of CLOSED_FORMS)."""
    if name == "reverse_kl":
        return reverse_kl_gradient(logits, ref_logits)
    if name == "minus_reverse_kl":
        return -reverse_kl_gradient(logits, ref_logits)
    if name == "forward_kl":
        return forward_kl_gradient(logits, ref_logits)
    if name == "half_chi2":
        return half_chi2_gradient(logits, ref_logits)
    if name == "zero":
        return torch.zeros_like(_as_logits(logits, "logits"))
    raise ValueError(f"closed form must be one of {CLOSED_FORMS}, got {name!r}")


def cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> float:
    """cos(a, b); NaN when either has a norm below `eps` (zero up to rounding: no direction to compare)."""
    na, nb = float(a.norm()), float(b.norm())
    return float(a @ b) / (na * nb) if na > eps and nb > eps else float("nan")


def atlas(logits, ref_logits, placements=PLACEMENTS) -> list[dict]:
    """One row per placement: its expected gradient ("gradient"), the cosine with ∇KL(π ‖ π_ref) ("cos_reverse")
    and with ∇KL(π_ref ‖ π) ("cos_forward"), and the largest difference from the closed form it should equal
    ("error"; None for the biased ones, which equal none)."""
    rev, fwd = reverse_kl_gradient(logits, ref_logits), forward_kl_gradient(logits, ref_logits)
    rows = []
    for p in placements:
        g = expected_gradient(p, logits, ref_logits)
        error = None if p.equals is None else float((g - closed_form(p.equals, logits, ref_logits)).abs().max())
        rows.append({"placement": p.name, "where": p.where, "equals": p.equals, "note": p.note, "gradient": g,
                     "cos_reverse": cosine(g, rev), "cos_forward": cosine(g, fwd), "error": error})
    return rows


# --------------------------------------------------------------------------- off-policy: PPO's later epochs
# After the first pass over a batch (num_iterations > 1) the policy π_θ has moved but the samples still come from
# π_old. Each row is a per-sample surrogate s(log π_θ, log π_ref, log π_old) at a sample y ~ π_old; its expected
# gradient is Σ_y π_old(y) ∇_θ s(y), and the right ones must still equal ∇KL(π_θ ‖ π_ref).
@dataclass(frozen=True)
class OffPolicy:
    """One off-policy placement: the per-sample surrogate and the closed form it equals (None: neither KL's)."""

    name: str
    surrogate: object   # (logp, logq, logp_old) -> per-sample tensor
    equals: str | None
    note: str = ""


def _ratio(logp, logp_old):
    return torch.exp(logp - logp_old)


OFF_POLICY = (
    OffPolicy("k1 in the reward, from π_old", lambda lp, lq, lo: _ratio(lp, lo) * ESTIMATORS["k1"](lo, lq), None,
              "PPO's epochs: ρ times the reward's −k1 fixed at rollout time; close to ∇KL(π‖ref) while π ≈ π_old"),
    OffPolicy("k2 as a loss, no weight", lambda lp, lq, lo: ESTIMATORS["k2"](lp, lq), None,
              "weighted by π_old instead of π: biased"),
    OffPolicy("k2 × sg(π/π_old) as a loss", lambda lp, lq, lo: _ratio(lp, lo).detach() * ESTIMATORS["k2"](lp, lq),
              "reverse_kl", "the importance weight, detached, restores π's weighting"),
    OffPolicy("k3 as a loss, no weight", lambda lp, lq, lo: ESTIMATORS["k3"](lp, lq), None,
              "GRPO's term after the first epoch: not even the forward KL's gradient"),
    OffPolicy("k3 × sg(π/π_old) as a loss", lambda lp, lq, lo: _ratio(lp, lo).detach() * ESTIMATORS["k3"](lp, lq),
              "forward_kl", "the forward KL again, as on-policy"),
    OffPolicy("k3 × π/π_old as a loss", lambda lp, lq, lo: _ratio(lp, lo) * ESTIMATORS["k3"](lp, lq),
              "reverse_kl", "DeepSeek-V3.2, TRL's use_bias_correction_kl: exact off-policy too"),
)


def off_policy_gradient(row: OffPolicy, logits, ref_logits, old_logits) -> torch.Tensor:
    """Σ_y π_old(y) ∇_θ row.surrogate(log π_θ(y), log π_ref(y), log π_old(y)), exactly, in float64."""
    theta = _as_logits(logits, "logits").requires_grad_(True)
    logq = torch.log_softmax(_as_logits(ref_logits, "ref_logits"), -1)
    logp_old = torch.log_softmax(_as_logits(old_logits, "old_logits"), -1)
    if not (logq.shape == theta.shape == logp_old.shape):
        raise ValueError(f"logits {tuple(theta.shape)}, ref_logits {tuple(logq.shape)} and old_logits "
                         f"{tuple(logp_old.shape)} must have one shape")
    logp = torch.log_softmax(theta, -1)
    (grad,) = torch.autograd.grad((logp_old.exp() * row.surrogate(logp, logq, logp_old)).sum(), theta)
    return grad


def off_policy_atlas(logits, ref_logits, old_logits, rows=OFF_POLICY) -> list[dict]:
    """`atlas` for samples from π_old ≠ π_θ: per row its expected gradient, the cosines with ∇KL(π_θ ‖ π_ref) and
    ∇KL(π_ref ‖ π_θ), and the largest difference from the closed form it should equal (None for the biased)."""
    rev, fwd = reverse_kl_gradient(logits, ref_logits), forward_kl_gradient(logits, ref_logits)
    out = []
    for r in rows:
        g = off_policy_gradient(r, logits, ref_logits, old_logits)
        error = None if r.equals is None else float((g - closed_form(r.equals, logits, ref_logits)).abs().max())
        out.append({"placement": r.name, "equals": r.equals, "note": r.note, "gradient": g,
                    "cos_reverse": cosine(g, rev), "cos_forward": cosine(g, fwd), "error": error})
    return out


# --------------------------------------------------------------------------- sequences: the per-token pitfall
# Tang & Munos (2025): for a sequence y = (y_1..y_T), log π(y) = Σ_t log π(y_t | y_<t), and
#     ∇ KL(π ‖ π_ref) over sequences = E_y[ Σ_t ( Σ_{s≥t} log π/π_ref(y_s) ) ∇log π(y_t) ]:
# each token's score is multiplied by the KL still to come (its "return"). An implementation that penalizes each
# token with its own log-ratio only (k2 per token as a loss, or a per-token k1 penalty without returns) keeps the
# s = t term and drops the rest: a partial gradient. A tabular policy over every prefix makes both exact.
SEQUENCE_GRADIENTS = ("exact", "returns", "sequence reward", "per token")


def all_sequences(vocab: int, length: int) -> torch.Tensor:
    """Every sequence of `length` tokens from a vocabulary of `vocab`, (vocab**length, length), in base-vocab order."""
    if not (isinstance(vocab, int) and vocab >= 2 and isinstance(length, int) and length >= 1):
        raise ValueError(f"vocab must be an int >= 2 and length an int >= 1, got {vocab!r} and {length!r}")
    if vocab ** length > 100_000:
        raise ValueError(f"vocab**length = {vocab ** length} sequences is too many to enumerate (at most 100,000)")
    codes = torch.arange(vocab ** length)
    return torch.stack([(codes // vocab ** (length - 1 - t)) % vocab for t in range(length)], dim=1)


def num_prefixes(vocab: int, length: int) -> int:
    """How many distinct prefixes y_<t (t = 0..length−1) there are: the rows of a tabular policy's logits."""
    return sum(vocab ** t for t in range(length))


def tabular_logprobs(table: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
    """log π(y_t | y_<t) (N, T) of a tabular policy whose row for each prefix holds the next token's logits:
    `table` (num_prefixes(V, T), V), rows ordered by prefix length, then by the prefix in base-V."""
    n, length = seqs.shape
    vocab = table.shape[-1]
    if table.shape[0] != num_prefixes(vocab, length):
        raise ValueError(f"table has {table.shape[0]} rows; a policy over {length}-token sequences of {vocab} tokens "
                         f"needs num_prefixes = {num_prefixes(vocab, length)}")
    rows, offset, code = [], 0, torch.zeros(n, dtype=torch.long)
    for t in range(length):
        rows.append(offset + code)
        offset += vocab ** t
        code = code * vocab + seqs[:, t]
    logp = torch.log_softmax(table, dim=-1)
    return logp[torch.stack(rows, 1), seqs]


def sequence_kl_gradients(table, ref_table, length: int) -> dict[str, torch.Tensor]:
    """Exact expected gradients (w.r.t. the policy's table of logits) of four ways to penalize the sequence KL:

    "exact"            ∇ Σ_y π(y) log π(y)/π_ref(y), autograd through the whole sum (the target);
    "returns"          E[Σ_t sg(Σ_{s≥t} ρ_s) ∇log π(y_t)], ρ_s = log π/π_ref(y_s): each token times the KL to come;
    "sequence reward"  E[sg(Σ_s ρ_s) Σ_t ∇log π(y_t)]: the whole sequence's KL as one reward;
    "per token"        E[Σ_t sg(ρ_t) ∇log π(y_t)]: each token with its own log-ratio (k2 per token as a loss).

    The first three are equal; "per token" drops the future terms."""
    table = torch.as_tensor(table, dtype=torch.float64)
    ref_table = torch.as_tensor(ref_table, dtype=torch.float64)
    if table.shape != ref_table.shape or table.dim() != 2:
        raise ValueError(f"table {tuple(table.shape)} and ref_table {tuple(ref_table.shape)} must be the same 2-D shape")
    seqs = all_sequences(table.shape[-1], length)
    logq = tabular_logprobs(ref_table, seqs)
    out = {}
    for name in SEQUENCE_GRADIENTS:
        theta = table.detach().clone().requires_grad_(True)
        logp = tabular_logprobs(theta, seqs)  # (N, T)
        weight = logp.sum(1).exp().detach()    # π(y), the sampling distribution
        rho = (logp - logq).detach()
        if name == "exact":
            objective = (logp.sum(1).exp() * (logp - logq).sum(1)).sum()
        else:
            if name == "returns":
                score = rho.flip(1).cumsum(1).flip(1)            # Σ_{s≥t} ρ_s
            elif name == "sequence reward":
                score = rho.sum(1, keepdim=True).expand_as(rho)  # Σ_s ρ_s at every t
            else:
                score = rho                                      # ρ_t alone
            objective = (weight * (score * logp).sum(1)).sum()
        (out[name],) = torch.autograd.grad(objective, theta)
    return out
