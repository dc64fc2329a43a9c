"""Preference losses beyond plain DPO, and graded preference pairs on GeneralPoints.

Every loss here compares two completions of one prompt, a chosen y_c and a rejected y_r, through the
policy's log-ratio to a reference model. Write

    h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))

for that log-ratio gap (sequence log-probs: see `sequence_logprob`). β·log π/π_ref is the reward implied by
the KL-regularized optimum π* ∝ π_ref · exp(r / β) (`toyenv.kl.kl_regularized_optimum`), so β·h is the
policy's *implicit* reward gap. The losses differ in what they ask of it, and that is where their
regularization lives:

* `dpo_loss` (Rafailov et al. 2023): −log σ(β·h). Only the order matters; on separable data the loss keeps
  pushing h up without end, and both log-probs may fall as long as the rejected one falls faster.
* `dpo_nll_loss` (Pang et al. 2024): DPO plus α times the length-normalized NLL of the chosen completion, an
  anchor that keeps the chosen answer likely. TRL calls this weight `rpo_alpha` (its "RPO" is this loss, not
  Nemotron's RPO below).
* `margin_bt_loss` (Touvron et al. 2023, Llama 2): the reward-model side; −log σ(r_c − r_r − m) with a margin
  m that grows with how much better the chosen completion was judged (`LLAMA2_MARGINS`, `margins_for`).
* `rpo_loss` (Nvidia 2024, Nemotron-4 340B, "reward-aware preference optimization"): match β·h to a target
  gap η·(r_c − r_r) from a reward model, so a barely-better pair is not pushed as far apart as a clearly
  better one, and no pair is pushed to infinity.
* `rebel_loss` (Gao et al. 2024, REBEL): least squares of h/η onto the reward gap r_c − r_r.

The data side: `general_points_pairs` builds `GradedPair`s on GeneralPoints whose completions are graded by the
task's verifier (+5 correct, −1 wrong value, −2 wrong numbers, −3 illegal), with a strength label derived from
the reward gap (`strength_for_gap`), so the same pairs feed DPO (order only), the margin loss (strength) and
RPO / REBEL (reward values).
"""
from __future__ import annotations

import itertools
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .envs import general_points as gp
from .envs.sampling import sampling_generator
from .model import GPT, token_logprobs
from .reward_model import PreferencePair, bradley_terry_loss
from .tasks import Task, general_points_task
from .tokenizer import EOS_ID, PAD_ID, Tokenizer
from .train import collate, encode_pairs
from .utils import eval_mode

__all__ = [
    "sequence_logprob", "pair_logprobs", "dpo_loss", "dpo_nll_loss", "margin_bt_loss", "rpo_loss", "rebel_loss",
    "rebel_target", "STRENGTHS", "LLAMA2_MARGINS", "margins_for", "strength_for_gap", "GradedPair",
    "general_points_pairs", "strength_counts", "RPO_DIVERGENCES",
]


# --------------------------------------------------------------------------- sequence log-probs
def sequence_logprob(model: GPT, tokens: torch.Tensor, attention_mask: torch.Tensor | None,
                     completion_mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Log-probability (B,) of each row's completion: the sum over completion tokens t of log p(token t | tokens < t).

    `completion_mask` (B, T) is aligned with `tokens`: True at the tokens that are scored (the completion and its
    EOS), like `generate`'s generated_mask or `toyenv.train.collate`'s loss_mask. Column 0 can never be scored
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
    total = logps.masked_fill(~scored, 0.0).sum(-1)
    return total / n_scored if average else total


def pair_logprobs(model: GPT, pairs: Sequence[Any], tokenizer: Tokenizer | None = None,
                  average: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`(chosen_logps, rejected_logps)`, each (B,), of preference pairs, in one forward pass of 2B rows.

    `pairs` hold `.prompt`, `.chosen` and `.rejected` (GradedPair, `toyenv.reward_model.PreferencePair`). Each
    completion is encoded as SFT encodes it (`BOS prompt completion EOS`, `toyenv.train.encode_pairs`) and scored
    on its completion tokens and EOS. One pass of chosen and rejected together is cheaper than two.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pair_logprobs needs at least one pair")
    for i, p in enumerate(pairs):
        if not all(isinstance(getattr(p, k, None), str) for k in ("prompt", "chosen", "rejected")):
            raise ValueError(f"pairs[{i}] should have str .prompt, .chosen and .rejected (a GradedPair or "
                             f"PreferencePair), got {p!r}")
    examples = encode_pairs([(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs], tokenizer)
    tokens, completion_mask = collate(examples)  # right-padded: real tokens are exactly the non-PAD ones
    tokens, completion_mask = tokens.to(model.device), completion_mask.to(model.device)
    logps = sequence_logprob(model, tokens, tokens != PAD_ID, completion_mask, average)
    return logps[: len(pairs)], logps[len(pairs) :]


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


def margin_bt_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                   margin: float | torch.Tensor | None = None) -> torch.Tensor:
    """Llama 2's margin ranking loss for a reward model (Touvron et al. 2023, eq. 2).

        loss = mean over the batch of −log σ(r_c − r_r − m)

    m (a float, or one per pair (B,), e.g. `margins_for(strengths)`) makes the loss keep pushing until the
    chosen score leads by about m, so pairs judged clearly better end up further apart. m = None or 0 is exactly
    the plain Bradley–Terry loss: this is `toyenv.reward_model.bradley_terry_loss` with the margin checked.
    Margins are >= 0: a negative one would let the loss relax before the chosen completion even wins.
    """
    _check_batch(chosen_rewards=chosen_rewards, rejected_rewards=rejected_rewards)
    if margin is not None:
        m = torch.as_tensor(margin, dtype=chosen_rewards.dtype, device=chosen_rewards.device)
        if m.dim() > 0 and m.shape != chosen_rewards.shape:
            raise ValueError(f"margin has shape {tuple(m.shape)}; give one float or one per pair "
                             f"{tuple(chosen_rewards.shape)}")
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ValueError("margins must be finite and >= 0 (see LLAMA2_MARGINS)")
    return bradley_terry_loss(chosen_rewards, rejected_rewards, margin)


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


def rebel_target(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor, eta: float) -> torch.Tensor:
    """η · (r_c − r_r): the log-ratio gap h that `rebel_loss` regresses onto (its loss is zero there)."""
    _check_positive(eta=eta)
    r_c, r_r = torch.as_tensor(reward_chosen), torch.as_tensor(reward_rejected)
    if r_c.shape != r_r.shape:
        raise ValueError(f"reward_chosen has shape {tuple(r_c.shape)} but reward_rejected has {tuple(r_r.shape)}")
    return eta * (r_c - r_r)


def rebel_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
               ref_rejected_logps: torch.Tensor, reward_chosen: torch.Tensor, reward_rejected: torch.Tensor,
               eta: float) -> torch.Tensor:
    """REBEL (Gao et al. 2024, "REBEL: Reinforcement Learning via Regressing Relative Rewards").

        loss = mean over the batch of ( (1/η) · h − (r_c − r_r) )²      (h as in `dpo_loss`)

    A least-squares regression of the relative reward onto the log-ratio gap; it is zero where h = η · (r_c − r_r)
    (`rebel_target`). In REBEL the "reference" is the *previous* policy π_t, not a frozen SFT model: each
    iteration takes a step of size η from the last policy (a mirror-descent / natural-policy-gradient step), and
    the next iteration uses the new policy as reference. With a frozen reference the same formula is a
    squared-loss cousin of DPO. The pair needs no order: (r_c − r_r) may be negative.
    """
    _check_positive(eta=eta)
    h = _logratio_gap(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return ((h / eta - _reward_gap(reward_chosen, reward_rejected, like=h)) ** 2).mean()


# --------------------------------------------------------------------------- strengths and margins
# Llama 2's four answers to "how much better is the chosen response?", strongest first.
STRENGTHS = ("significantly_better", "better", "slightly_better", "negligibly_better")

# Touvron et al. 2023, Table 27: the margin m of `margin_bt_loss` for each strength ("negligibly better / unsure": 0).
LLAMA2_MARGINS: dict[str, dict[str, float]] = {
    "small": {"significantly_better": 1.0, "better": 2 / 3, "slightly_better": 1 / 3, "negligibly_better": 0.0},
    "large": {"significantly_better": 3.0, "better": 2.0, "slightly_better": 1.0, "negligibly_better": 0.0},
}

# Reward gap -> strength: the first threshold the gap reaches (see `strength_for_gap`).
STRENGTH_THRESHOLDS = ((4.0, "significantly_better"), (2.0, "better"), (1.0, "slightly_better"))


def _check_strength(strength: Any, where: str = "strength") -> str:
    if strength not in STRENGTHS:
        raise ValueError(f"{where} must be one of {STRENGTHS}, got {strength!r}")
    return strength


def margins_for(strengths: Sequence[str], table: str = "small") -> torch.Tensor:
    """Margins (B,) float32 of Llama 2's `table` ("small" or "large") for strength labels, for `margin_bt_loss`."""
    if table not in LLAMA2_MARGINS:
        raise ValueError(f"table must be one of {tuple(LLAMA2_MARGINS)}, got {table!r}")
    if isinstance(strengths, str):
        raise ValueError(f"strengths should be a sequence of labels, got the single string {strengths!r}")
    labels = [_check_strength(s, f"strengths[{i}]") for i, s in enumerate(strengths)]
    return torch.tensor([LLAMA2_MARGINS[table][s] for s in labels], dtype=torch.float32)


def strength_for_gap(gap: float) -> str:
    """The strength label of a reward gap r_c − r_r >= 0:

        gap >= 4 -> "significantly_better",  >= 2 -> "better",  >= 1 -> "slightly_better",  else "negligibly_better"

    On GeneralPoints (+5, −1, −2, −3) a correct answer beats any failure by 6 to 8 (significantly better), a
    wrong value beats an illegal answer by 2 (better), and the failures one step apart differ by 1 (slightly
    better). Two different verifier rewards are never less than 1 apart, so "negligibly_better" comes only from
    `general_points_pairs`' annotator noise (or from a finer reward).
    """
    if not (isinstance(gap, (int, float)) and math.isfinite(gap) and gap >= 0):
        raise ValueError(f"gap must be a finite number >= 0 (chosen minus rejected reward), got {gap!r}")
    for threshold, label in STRENGTH_THRESHOLDS:
        if gap >= threshold:
            return label
    return "negligibly_better"


# --------------------------------------------------------------------------- graded pairs
@dataclass
class GradedPair:
    """`chosen` is preferred to `rejected` as a completion of `prompt`, by `strength` (one of STRENGTHS).

    `reward_chosen` >= `reward_rejected` are the rewards that graded them (on GeneralPoints, the verifier's);
    `info` carries the rest (the hand, the verdict kinds, whether the annotator was "unsure").
    """

    prompt: str
    chosen: str
    rejected: str
    strength: str
    reward_chosen: float
    reward_rejected: float
    info: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_strength(self.strength)
        if not self.reward_chosen >= self.reward_rejected:  # `not >=` also catches NaN
            raise ValueError(f"reward_chosen ({self.reward_chosen}) must be >= reward_rejected "
                             f"({self.reward_rejected})")

    @property
    def gap(self) -> float:
        """r_c − r_r."""
        return self.reward_chosen - self.reward_rejected

    def as_preference_pair(self, table: str = "small") -> PreferencePair:
        """A `toyenv.reward_model.PreferencePair` whose margin is Llama 2's for this strength (for `use_margin`)."""
        margin = float(margins_for([self.strength], table)[0])
        return PreferencePair(self.prompt, self.chosen, self.rejected, margin=margin, info=self.info)


def strength_counts(pairs: Sequence[GradedPair]) -> dict[str, int]:
    """{strength: number of pairs}, every label of STRENGTHS present (0 if unused), strongest first."""
    counts = {s: 0 for s in STRENGTHS}
    for i, p in enumerate(pairs):
        counts[_check_strength(getattr(p, "strength", None), f"pairs[{i}].strength")] += 1
    return counts


# Streams of the seed. general_points uses 0 (SFT hands) and 1 (evaluation hands); 2 and 3 keep the preference
# hands from being the SFT hands in the same order.
_HAND_STREAM, _LABEL_STREAM = 2, 3
_KIND_OF_REWARD = {reward: kind for kind, reward in gp.REWARD_TABLE.items()}
_OPS = "+-*/"


def _wrong_value_candidates(expr: str) -> list[str]:
    """The expert formula with one operator changed: the right cards, (usually) not 24."""
    out = [expr[:i] + op + expr[i + 1 :] for i, ch in enumerate(expr) if ch in _OPS for op in _OPS if op != ch]
    numbers = re.findall(r"\d+", expr)
    return out + ["+".join(numbers), "*".join(numbers)]


def _wrong_numbers_candidates(expr: str) -> list[str]:
    """The expert formula with one number off by one: a card missing and a stranger in its place."""
    out = []
    for m in re.finditer(r"\d+", expr):
        for v in (int(m.group()) + 1, int(m.group()) - 1):
            if v >= 1:
                out.append(expr[: m.start()] + str(v) + expr[m.end() :])
    return out


def _illegal_candidates(expr: str) -> list[str]:
    """Garbled versions of the formula: cut after an operator, a doubled operator, a unary minus, nothing."""
    ops = [i for i, ch in enumerate(expr) if ch in _OPS]
    out = [expr[: i + 1] for i in ops] + [expr[:i] + expr[i] + expr[i:] for i in ops]
    return out + ["-" + expr, ""]


def _answer_pool(cards: Sequence[str], face_card_rule: str, target: int, rng: np.random.Generator) -> list[str]:
    """Up to one answer per verdict kind for a hand: the expert answer, then corruptions of it that the verifier
    grades "wrong_value", "wrong_numbers" and "illegal" (a random one of the candidates that get that grade).
    The empty answer is always illegal, so the pool has at least two answers with different rewards."""
    expert = gp.expert_answer(cards, face_card_rule, target)
    expr, claim = expert.split("=")
    pool = [expert]
    for kind, candidates in (("wrong_value", [c + "=" + claim for c in _wrong_value_candidates(expr)]),
                             ("wrong_numbers", [c + "=" + claim for c in _wrong_numbers_candidates(expr)]),
                             ("illegal", _illegal_candidates(expr))):
        for i in rng.permutation(len(candidates)):
            if gp.verify(cards, candidates[i], face_card_rule, target).kind == kind:
                pool.append(candidates[i])
                break
    return pool


def _graded(prompt: str, info: dict, first: tuple[str, float], second: tuple[str, float],
            rng: np.random.Generator, unsure_rate: float) -> GradedPair:
    """The better of two (completion, reward) as chosen; strength from the gap, or "unsure" with prob. unsure_rate."""
    (a, ra), (b, rb) = sorted((first, second), key=lambda x: -x[1])
    strength = strength_for_gap(ra - rb)
    unsure = bool(rng.random() < unsure_rate)  # drawn for every pair, so the stream does not depend on the labels
    info = dict(info, kind_chosen=_KIND_OF_REWARD.get(ra, "other"), kind_rejected=_KIND_OF_REWARD.get(rb, "other"),
                gap_strength=strength, unsure=unsure)
    return GradedPair(prompt, a, b, "negligibly_better" if unsure else strength, ra, rb, info)


def _pool_pairs(task: Task, n: int, face_card_rule: str, target: int, hand_rng: np.random.Generator,
                label_rng: np.random.Generator, unsure_rate: float) -> list[GradedPair]:
    """One pair per fresh hand: two answers of its pool with different kinds, uniformly among the pool's pairs."""
    prompts, infos = task.sample_prompts(hand_rng, n)
    out = []
    for prompt, info in zip(prompts, infos):
        pool = _answer_pool(info["cards"], face_card_rule, target, label_rng)
        rewards = [float(r) for r in task.reward_fn([prompt] * len(pool), pool, [info] * len(pool))]
        i, j = label_rng.choice(len(pool), size=2, replace=False)
        out.append(_graded(prompt, info, (pool[i], rewards[i]), (pool[j], rewards[j]), label_rng, unsure_rate))
    return out


def _sampled_pairs(model: Any, tokenizer: Tokenizer, task: Task, n: int, hand_rng: np.random.Generator,
                   label_rng: np.random.Generator, generator: torch.Generator | None, unsure_rate: float,
                   num_samples: int, temperature: float, max_new_tokens: int, batch_size: int,
                   max_rounds: int) -> list[GradedPair]:
    """Pairs from `num_samples` samples of `model` per fresh hand: two samples with different rewards, at random."""
    k, max_hands = num_samples, max_rounds * n
    out: list[GradedPair] = []
    n_hands = 0
    with eval_mode(model):
        while len(out) < n and n_hands < max_hands:
            prompts, infos = task.sample_prompts(hand_rng, min(batch_size, max_hands - n_hands))
            n_hands += len(prompts)
            ids = [tokenizer.encode(p, bos=True) for p in prompts]
            # num_return_sequences: rows h*k .. h*k+k-1 are the k samples of hand h, sharing one prompt pass.
            tokens, gen_mask = model.generate(ids, max_new_tokens, temperature=temperature, eos_id=EOS_ID,
                                              pad_id=PAD_ID, generator=generator, num_return_sequences=k)
            completions = tokenizer.decode_batch(tokens, mask=gen_mask)
            rewards = task.reward_fn([p for p in prompts for _ in range(k)], completions,
                                     [i for i in infos for _ in range(k)])
            rewards = [float(r) for r in rewards]
            for h, (prompt, info) in enumerate(zip(prompts, infos)):
                group = list(zip(completions[h * k : (h + 1) * k], rewards[h * k : (h + 1) * k]))
                differ = [(a, b) for a, b in itertools.combinations(range(k), 2) if group[a][1] != group[b][1]]
                if not differ:  # every sample graded the same: nothing to prefer
                    continue
                a, b = differ[int(label_rng.integers(len(differ)))]
                out.append(_graded(prompt, info, group[a], group[b], label_rng, unsure_rate))
                if len(out) == n:
                    break
    if len(out) < n:
        warnings.warn(f"only {len(out)} of the {n} requested pairs from {n_hands} hands: the {k} samples of every "
                      f"other hand got the same reward; returning {len(out)} (raise max_rounds or num_samples)",
                      stacklevel=3)
    return out


def general_points_pairs(
    n: int,
    seed: int = 0,
    face_card_rule: str = "ten",
    model: GPT | None = None,
    tokenizer: Tokenizer | None = None,
    unsure_rate: float = 0.1,
    target: int = 24,
    num_samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 24,
    batch_size: int = 64,
    max_rounds: int = 4,
) -> list[GradedPair]:
    """`n` GradedPairs on fresh GeneralPoints hands, graded by the verifier (`toyenv.tasks.general_points_task`).

    Without `model`, each hand gets a pool built from the environment: the expert answer (+5) and corruptions of
    it graded "wrong_value" (−1, one operator changed), "wrong_numbers" (−2, one number off by one) and "illegal"
    (−3, cut or garbled). Two pool answers are drawn at random, so every pair of kinds occurs: reward gaps of
    6 to 8, 2 and 1. With `model`, `num_samples` completions are sampled per hand and two with different rewards
    make the pair; a hand whose samples all score the same gives none, so more hands are dealt, up to
    `max_rounds` * n, after which the pairs found are returned with a warning. Either way chosen is the higher
    reward, and any completion is graded (garbage is "illegal"), never raised on.

    Strength: `strength_for_gap(reward_chosen − reward_rejected)`, except that with probability `unsure_rate` the
    annotator answers "negligibly_better" (Llama 2's "negligibly better / unsure") whatever the gap. This label
    noise is the only source of "negligibly_better" with the verifier's rewards (never 0 < gap < 1); the order
    of a pair is never flipped. info["gap_strength"] keeps the noiseless label and info["unsure"] says whether it
    was replaced. Deterministic in `seed` (hands, pools, pair choice, noise and sampling all derive from it).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if not (isinstance(unsure_rate, (int, float)) and 0.0 <= unsure_rate <= 1.0):
        raise ValueError(f"unsure_rate must be a probability in [0, 1], got {unsure_rate!r}")
    if face_card_rule not in gp.FACE_CARD_RULES:
        raise ValueError(f"face_card_rule must be one of {gp.FACE_CARD_RULES}, got {face_card_rule!r}")
    task = general_points_task(face_card_rule, target)
    hand_rng = np.random.default_rng([seed, _HAND_STREAM])
    label_rng = np.random.default_rng([seed, _LABEL_STREAM])
    if model is None:
        return _pool_pairs(task, n, face_card_rule, target, hand_rng, label_rng, unsure_rate)
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 (a pair needs two samples of a hand), got {num_samples}")
    if batch_size < 1 or max_rounds < 1:
        raise ValueError(f"batch_size and max_rounds must be >= 1, got {batch_size} and {max_rounds}")
    generator = sampling_generator(model, greedy=False, seed=seed)
    return _sampled_pairs(model, tokenizer or Tokenizer(), task, n, hand_rng, label_rng, generator, unsure_rate,
                          num_samples, temperature, max_new_tokens, batch_size, max_rounds)
