"""What a trainer trains on: the RL tasks (where prompts come from and how completions are scored) and the tour's
warm-up.

`Task` pairs a prompt sampler with a reward function; `general_points_task` and `navigation_task` build one from
each environment's public API. `reverse_dataset`, the tour's warm-up, asks the model to spell a short lowercase word
backwards, a task that needs attention (the answer's i-th letter sits at a fixed offset in the prompt) and is
trivially checked.
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

from .model import complete


def reverse_prompt(word: str) -> str:
    return f"reverse {word}:"


def reverse_dataset(n: int, seed: int = 0, min_len: int = 3, max_len: int = 6) -> list[tuple[str, str]]:
    """`n` (prompt, completion) pairs like ("reverse abc:", "cba") from random lowercase words."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(min_len, max_len)))
        out.append((reverse_prompt(word), word[::-1]))
    return out


def reverse_accuracy(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    """Fraction of prompts whose greedy completion is exactly the reversed word."""
    outs = complete(model, tokenizer, [p for p, _ in pairs], 10, greedy=True)
    return sum(o == c for o, (_, c) in zip(outs, pairs)) / len(pairs)


@dataclass
class Task:
    """What to train on: where prompts come from and how completions are scored.

    sample_prompts(rng: np.random.Generator, n) -> (prompts: list[str], infos: list[dict])
    reward_fn(prompts, completions, infos) -> list[float]   (untrusted completions: never raise on garbage)
    """

    sample_prompts: Callable[[np.random.Generator, int], tuple[list[str], list[dict]]]
    reward_fn: Callable[[Sequence[str], Sequence[str], Sequence[dict]], Sequence[float]]
    name: str = "task"

    def with_reward(self, reward_fn: Callable, name: str | None = None) -> "Task":
        """The same prompts scored by another reward (e.g. a proxy reward model instead of the verifier)."""
        return replace(self, reward_fn=reward_fn, name=name or self.name)


def general_points_task(face_card_rule: str = "ten", target: int = 24) -> Task:
    """GeneralPoints hands (fresh deals) scored by the verifier: +5 correct, −1/−2/−3 for the failure kinds."""
    from .envs import general_points as gp

    def sample_prompts(rng: np.random.Generator, n: int) -> tuple[list[str], list[dict]]:
        hands = [gp.deal(rng, face_card_rule, target) for _ in range(n)]
        infos = [{"cards": h, "face_card_rule": face_card_rule, "target": target} for h in hands]
        return [gp.make_prompt(h, face_card_rule, target) for h in hands], infos

    def reward_fn(prompts, completions, infos) -> list[float]:
        return gp.rollout_rewards(completions, infos)

    return Task(sample_prompts, reward_fn, name=f"general_points[{face_card_rule}]")


def navigation_task(action_space_kind: str = "absolute", routes_per_call: int = 4) -> Task:
    """Navigation steps scored against the oracle: +1 for the oracle action, −1 for anything else.

    Prompts are states of fresh oracle routes (one state per prompt, drawn from `routes_per_call` routes per call),
    so RL here is on single steps with the oracle's history, the setting `navigation.evaluate` scores per step."""
    from .envs import navigation as nav

    kind = nav.check_kind(action_space_kind)

    def sample_prompts(rng: np.random.Generator, n: int) -> tuple[list[str], list[dict]]:
        states = [s for ep in nav.oracle_episodes(routes_per_call, kind, int(rng.integers(2**31)), None) for s in ep]
        picks = rng.integers(len(states), size=n)
        return [states[i].prompt for i in picks], [{"expected": states[i].action, "kind": kind} for i in picks]

    def reward_fn(prompts, completions, infos) -> list[float]:
        return [1.0 if nav.parse_action(c, i["kind"])[0] == i["expected"] else -1.0 for c, i in zip(completions, infos)]

    return Task(sample_prompts, reward_fn, name=f"navigation[{kind}]")
