"""Preference pairs: the one pair type, how pairs are sampled and graded, and how a ranking is scored.

Every preference method in the course learns from comparisons "for this prompt, `chosen` is better than
`rejected`". One `PreferencePair` carries everything any of them reads:

* the reward model (`toyenv.trainers.reward_model`) reads the order, and with `RewardConfig.use_margin` the
  pair's `margin` (Llama 2's margin loss);
* DPO and DPO+NLL (`toyenv.trainers.dpo`) read only the order;
* RPO and REBEL read the rewards that graded the pair, `reward_chosen` and `reward_rejected`.

Two samplers make pairs:

* `general_points_pairs`: graded pairs on GeneralPoints. The task's verifier grades each completion (+5
  correct, −1 wrong value, −2 wrong numbers, −3 illegal), and a strength label (Llama 2's four answers, from
  `strength_for_gap`) says how much better the chosen one is;
* `sample_preference_pairs`: two samples of a policy per prompt, ordered by any gold reward function, with the
  gold gap as the margin (the proxy-reward-model study of notebook 03).

`pairwise_accuracy` scores a ranking the same way for both: the fraction of pairs ordered right, ties half.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .envs import general_points as gp
from .envs.sampling import sampling_generator
from .model import GPT, complete
from .tasks import Task, general_points_task
from .tokenizer import EOS_ID, PAD_ID, Tokenizer

__all__ = [
    "PreferencePair", "as_pairs", "pairwise_accuracy", "STRENGTHS", "LLAMA2_MARGINS", "margins_for",
    "strength_for_gap", "strength_counts", "general_points_pairs", "sample_preference_pairs",
]


# --------------------------------------------------------------------------- the pair
@dataclass
class PreferencePair:
    """`chosen` is preferred to `rejected` as a completion of `prompt`.

    Optional, for the methods that read them:
    * `margin`: the margin of the reward model's loss when `RewardConfig.use_margin` is on (0: plain Bradley–Terry);
    * `strength`: one of STRENGTHS, how much better chosen is (Llama 2's label; `with_margin` turns it into a margin);
    * `reward_chosen` >= `reward_rejected`: the rewards that graded the pair (RPO and REBEL regress on their gap);
    * `info`: anything else (the hand, the verdict kinds, the gold rewards), for analysis.
    """

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    strength: str | None = None
    reward_chosen: float | None = None
    reward_rejected: float | None = None
    info: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.strength is not None:
            _check_strength(self.strength)
        if (self.reward_chosen is None) != (self.reward_rejected is None):
            raise ValueError("give both reward_chosen and reward_rejected, or neither")
        if self.reward_chosen is not None and not self.reward_chosen >= self.reward_rejected:  # `not >=`: NaN too
            raise ValueError(f"reward_chosen ({self.reward_chosen}) must be >= reward_rejected "
                             f"({self.reward_rejected})")

    @property
    def gap(self) -> float:
        """r_c − r_r, the reward gap (for graded pairs)."""
        if self.reward_chosen is None:
            raise ValueError("this pair has no rewards (reward_chosen / reward_rejected are None)")
        return self.reward_chosen - self.reward_rejected

    def with_margin(self, table: str = "small") -> "PreferencePair":
        """A copy whose `margin` is Llama 2's margin for this pair's strength in `table` (for `use_margin`)."""
        if self.strength is None:
            raise ValueError("with_margin needs a pair with a strength label")
        return dataclasses.replace(self, margin=float(margins_for([self.strength], table)[0]))


def as_pairs(pairs: Sequence, what: str = "pairs") -> list[PreferencePair]:
    """PreferencePairs from PreferencePairs or plain (prompt, chosen, rejected[, margin]) tuples."""
    out = []
    for i, p in enumerate(pairs):
        if isinstance(p, PreferencePair):
            out.append(p)
        elif isinstance(p, (tuple, list)) and len(p) in (3, 4):
            out.append(PreferencePair(*p))
        else:
            raise ValueError(
                f"{what}[{i}] should be a PreferencePair or a (prompt, chosen, rejected[, margin]) tuple, got {p!r}"
            )
    return out


def pairwise_accuracy(r_c: torch.Tensor, r_r: torch.Tensor) -> float:
    """Fraction of pairs ranked right; a tie counts half (a coin flip would be right half the time)."""
    return float(((r_c > r_r).double() + 0.5 * (r_c == r_r).double()).mean())


# --------------------------------------------------------------------------- strengths and margins
# Llama 2's four answers to "how much better is the chosen response?", strongest first.
STRENGTHS = ("significantly_better", "better", "slightly_better", "negligibly_better")

# Touvron et al. 2023, Table 27: the margin m of the reward model's loss
# (`toyenv.trainers.reward_model.bradley_terry_loss`) for each strength ("negligibly better / unsure": 0).
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
    """Margins (B,) float32 of Llama 2's `table` ("small" or "large") for strength labels, for the margin loss."""
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


def strength_counts(pairs: Sequence[PreferencePair]) -> dict[str, int]:
    """{strength: number of pairs}, every label of STRENGTHS present (0 if unused), strongest first."""
    counts = {s: 0 for s in STRENGTHS}
    for i, p in enumerate(pairs):
        counts[_check_strength(getattr(p, "strength", None), f"pairs[{i}].strength")] += 1
    return counts


# --------------------------------------------------------------------------- graded pairs on GeneralPoints
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
            rng: np.random.Generator, unsure_rate: float) -> PreferencePair:
    """The better of two (completion, reward) as chosen; strength from the gap, or "unsure" with prob. unsure_rate."""
    (a, ra), (b, rb) = sorted((first, second), key=lambda x: -x[1])
    strength = strength_for_gap(ra - rb)
    unsure = bool(rng.random() < unsure_rate)  # drawn for every pair, so the stream does not depend on the labels
    info = dict(info, kind_chosen=_KIND_OF_REWARD.get(ra, "other"), kind_rejected=_KIND_OF_REWARD.get(rb, "other"),
                gap_strength=strength, unsure=unsure)
    return PreferencePair(prompt, a, b, strength="negligibly_better" if unsure else strength, reward_chosen=ra,
                          reward_rejected=rb, info=info)


def _pool_pairs(task: Task, n: int, face_card_rule: str, target: int, hand_rng: np.random.Generator,
                label_rng: np.random.Generator, unsure_rate: float) -> list[PreferencePair]:
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
                   max_rounds: int) -> list[PreferencePair]:
    """Pairs from `num_samples` samples of `model` per fresh hand: two samples with different rewards, at random."""
    k, max_hands = num_samples, max_rounds * n
    out: list[PreferencePair] = []
    n_hands = 0
    while len(out) < n and n_hands < max_hands:
        prompts, infos = task.sample_prompts(hand_rng, min(batch_size, max_hands - n_hands))
        n_hands += len(prompts)
        # num_return_sequences: rows h*k .. h*k+k-1 are the k samples of hand h, sharing one prompt pass.
        completions = complete(model, tokenizer, prompts, max_new_tokens, temperature=temperature, eos_id=EOS_ID,
                               pad_id=PAD_ID, generator=generator, num_return_sequences=k)
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
) -> list[PreferencePair]:
    """`n` PreferencePairs on fresh GeneralPoints hands, graded by the verifier (`toyenv.tasks.general_points_task`).

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


# --------------------------------------------------------------------------- pairs from a gold reward
def sample_preference_pairs(
    policy: GPT,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    gold_fn: Callable[[Sequence[str], Sequence[str], Sequence[dict]], Sequence[float]],
    n_pairs: int,
    seed: int = 0,
    temperature: float = 1.0,
    max_new_tokens: int = 24,
    infos: Sequence[dict] | None = None,
    batch_size: int = 256,
    max_rounds: int = 4,
) -> list[PreferencePair]:
    """Preference pairs labelled by a gold reward on two samples of `policy` per prompt.

    For each prompt, two completions are sampled (a `torch.Generator` seeded with `seed`, so the result
    is deterministic) and scored with `gold_fn(prompts, completions, infos)` (`infos` given as a list of
    empty dicts when None). A pair is kept only if the gold rewards differ; the higher one is `chosen`,
    `margin` is the gold gap, and `info` holds the prompt's info plus "gold_chosen" and "gold_rejected".

    Ties are discarded, so one pass over the prompts may give fewer than `n_pairs` pairs: the prompts are
    then cycled again with fresh samples, for at most `max_rounds` passes (a prompt may thus give several
    pairs). If that is still not enough, the pairs found are returned (fewer than `n_pairs`) with a
    warning: check `len(result)`. Sampling stops as soon as `n_pairs` are found, in prompt order.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    if len(prompts) == 0:
        raise ValueError("sample_preference_pairs needs at least one prompt")
    if infos is not None and len(infos) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(infos)} infos")
    if batch_size < 1 or max_rounds < 1:
        raise ValueError("batch_size and max_rounds must be >= 1")
    infos = [dict(i) for i in infos] if infos is not None else [{} for _ in prompts]
    generator = torch.Generator(device=policy.device).manual_seed(int(seed))
    out: list[PreferencePair] = []
    n_sampled = 0
    for _ in range(max_rounds):
        for start in range(0, len(prompts), batch_size):
            rows = range(start, min(start + batch_size, len(prompts)))
            batch_prompts = [prompts[i] for i in rows for _ in range(2)]  # rows 2j and 2j+1 share prompt j
            completions = complete(policy, tokenizer, batch_prompts, max_new_tokens, temperature=temperature,
                                   eos_id=EOS_ID, pad_id=PAD_ID, generator=generator)
            batch_infos = [infos[i] for i in rows for _ in range(2)]
            gold = [float(g) for g in gold_fn(batch_prompts, completions, batch_infos)]
            if len(gold) != len(completions):
                raise ValueError(f"gold_fn returned {len(gold)} rewards for {len(completions)} completions")
            n_sampled += len(rows)
            for j, i in enumerate(rows):
                (a, ga), (b, gb) = (completions[2 * j], gold[2 * j]), (completions[2 * j + 1], gold[2 * j + 1])
                if not (math.isfinite(ga) and math.isfinite(gb)):
                    raise ValueError(f"gold_fn returned a NaN or infinite reward for prompt {i}")
                if ga == gb:
                    continue
                if gb > ga:
                    (a, ga), (b, gb) = (b, gb), (a, ga)
                info = dict(infos[i], gold_chosen=ga, gold_rejected=gb)
                out.append(PreferencePair(prompts[i], a, b, margin=ga - gb, info=info))
                if len(out) == n_pairs:
                    return out
    warnings.warn(
        f"only {len(out)} of the {n_pairs} requested pairs had different gold rewards "
        f"({n_sampled} prompts sampled in {max_rounds} round(s)); returning {len(out)}",
        stacklevel=2,
    )
    return out
