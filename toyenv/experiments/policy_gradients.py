"""Five policy-gradient algorithms on GeneralPoints: notebook A1's section 4 and its shipped study.

    python -m toyenv.experiments.policy_gradients    # five runs + the base model -> toyenv/data/policy_gradients.json
    python -m toyenv.experiments.policy_gradients --algorithms rloo ppo --out /tmp/pg.json

Each run copies the shipped base model and trains it with `toyenv.trainers.rl.train` on the verifier's reward under the
J/Q/K = 10 rule ("ten"): the same samples budget for every algorithm (30 steps of 8 hands x 8 completions), learning
rate 1e-4, no KL penalty, the same seed, so every run's first batch of rollouts is the same. PPO makes 2 passes
over each batch (on the second the ratio differs from 1, so its clip has something to clip); the others one. After
training, greedy accuracy on 300 evaluation deals, the same deals for every run and for the base model.

`run(algorithm, base, tokenizer)` is one run, exactly as notebook A1 ran them all live before it shipped them
(same RLConfig, same seeds): about 15 s on a 2-core CPU (PPO a little more: twice the updates). `study()` is all
five plus the base model's greedy accuracy, about 80 s. The notebook runs RLOO live and compares it with its shipped
twin (`compare_with_twin`): bit for bit on the machine and torch build that wrote the study
(`toyenv.experiments.same_machine`), within `TWIN_RTOL` / `TWIN_ATOL` elsewhere.
"""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from .. import load_base
from ..checkpoint import DATA_DIR
from ..envs import general_points as gp
from ..model import GPT
from ..tasks import general_points_task
from ..tokenizer import Tokenizer
from ..trainers.rl import RLConfig, train
from . import common, twins
from .common import machine

PATH = DATA_DIR / "policy_gradients.json"
ALGORITHMS = ("reinforce", "reinforce_baseline", "rloo", "grpo", "ppo")
RULE = "ten"
SERIES = ("reward", "kl", "entropy", "clip_frac")  # per-step histories the notebook plots and tabulates
# A live run against its shipped twin on another CPU. Measured on an AMD EPYC (AVX-512) against the Intel Xeon (AMX)
# that built the study, the live RLOO run matched every stored number (4 decimals); notebook 03's λ = 0 run, the same
# trainer, differed by one unit of the 4th decimal. The same tolerance as there: relative 1e-3, plus 2e-4 absolute.
TWIN_RTOL = 1e-3
TWIN_ATOL = 2e-4


# Everything that defines a run but the algorithm (`rl_config` sets it): 8 prompts x 8 completions = 64 per step,
# 1,920 per run; no KL penalty (beta 0), since this section compares the estimators, not the penalty; one seed for
# every run, so every algorithm starts from the same first batch of rollouts.
CONFIG = RLConfig(algorithm="rloo", max_steps=30, num_prompts=8, num_generations=8, max_new_tokens=20,
                  learning_rate=1e-4, seed=0)
PPO_ITERATIONS = 2   # PPO's passes over each batch; with 1 its ratio stays 1 and nothing is clipped
EVAL_EPISODES = 300  # greedy evaluation deals (gp.evaluate's default seed 0, the same for every model)


def rl_config(algorithm: str, config: RLConfig = CONFIG) -> RLConfig:
    """`config` for `algorithm`: PPO makes `PPO_ITERATIONS` passes over each batch, every other algorithm one."""
    return replace(config, algorithm=algorithm, num_iterations=PPO_ITERATIONS if algorithm == "ppo" else 1)


def greedy_accuracy(model: GPT, tokenizer: Tokenizer, episodes: int = 300) -> float:
    """The fraction of `episodes` evaluation deals whose greedy answer the verifier accepts."""
    return gp.evaluate(model, tokenizer, RULE, n_episodes=episodes)["accuracy"]


def _r4(xs) -> list[float]:
    return [round(float(x), 4) for x in xs]


def run(algorithm: str, base: GPT | None = None, tokenizer: Tokenizer | None = None,
        config: RLConfig = CONFIG, eval_episodes: int = EVAL_EPISODES, progress: bool = True) -> dict:
    """Train a copy of `base` with `algorithm`; return its record: the per-step "reward", "kl", "entropy" and
    "clip_frac" (rounded to 4 decimals, as shipped), "greedy_accuracy" after training, "seconds" (training and
    evaluation). The base model is left untouched; the trained policy is not kept (the notebook needs its numbers
    only)."""
    if base is None:
        base, tokenizer = load_base()
    tokenizer = tokenizer or Tokenizer()
    start = time.perf_counter()
    policy = copy.deepcopy(base)
    history = train(policy, general_points_task(RULE), rl_config(algorithm, config), tokenizer, ref=base,
                    progress=progress, desc=algorithm)
    record = {"algorithm": algorithm, **{k: _r4(history[k]) for k in SERIES},
              "greedy_accuracy": greedy_accuracy(policy, tokenizer, eval_episodes)}
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def summary(record: dict) -> dict:
    """The notebook's table row: mean reward of the first 5 and last 10 steps, KL over the last 5, greedy accuracy."""
    return {"reward_first": float(np.mean(record["reward"][:5])), "reward_last": float(np.mean(record["reward"][-10:])),
            "kl_end": float(np.mean(record["kl"][-5:])), "greedy_accuracy": record["greedy_accuracy"]}


def compare_with_twin(live: dict, shipped: dict, name: str = "rloo") -> twins.Comparison:
    """A live run's record against its shipped twin, number by number, within `TWIN_RTOL` / `TWIN_ATOL` (wall times
    left out)."""
    return twins.compare(live, shipped, name=name, rtol=TWIN_RTOL, atol=TWIN_ATOL, ignore=("seconds",))


def study(algorithms=ALGORITHMS, config: RLConfig = CONFIG, eval_episodes: int = EVAL_EPISODES,
          progress: bool = True) -> dict:
    base, tok = load_base()
    t0 = time.perf_counter()
    runs = {a: run(a, base, tok, config, eval_episodes, progress) for a in algorithms}
    return {
        "config": asdict(config),  # every run's RLConfig but its algorithm and num_iterations (`rl_config`)
        "ppo_iterations": PPO_ITERATIONS,
        "eval_episodes": eval_episodes,
        "base": {"greedy_accuracy": greedy_accuracy(base, tok, eval_episodes)},
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }


def load(path: Path = PATH) -> dict:
    """The shipped study (see `study`)."""
    return common.load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    result = study(tuple(args.algorithms), progress=False)
    common.save(result, args.out)
    for name, r in result["runs"].items():
        s = summary(r)
        print(f"{name:<20} reward {s['reward_first']:5.2f} -> {s['reward_last']:5.2f}  KL {s['kl_end']:.3f}  "
              f"greedy {s['greedy_accuracy']:.3f}  {r['seconds']:.0f} s")
    print(f"{'base model':<20} greedy {result['base']['greedy_accuracy']:.3f}")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
