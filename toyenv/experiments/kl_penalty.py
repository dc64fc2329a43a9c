"""Reward over-optimization and the KL penalty on the toy world: notebook 03's five RL runs.

    python -m toyenv.experiments.kl_penalty                     # the five runs, writes toyenv/data/kl_penalty.json
    python -m toyenv.experiments.kl_penalty --only "λ = 0" "λ = 1"

RLOO from the shipped base model optimizes a **proxy** reward model (`toyenv/data/proxy_rm.pt`, built from 1,000
preferences by `python -m toyenv.experiments.proxy_reward`) on GeneralPoints under the J/Q/K = 10 rule, while the
**gold** reward (the verifier) is only watched: every `eval_every` steps both are measured on a fixed evaluation set
(128 hands x 2 samples, re-sampled with the same seed each time). The five runs (`RUNS`) differ only in the KL
penalty to the base model:

* λ = 0, 0.3 and 1 with k1 in the reward (PPO / RLOO's placement),
* λ = 1 with k3 in the loss (GRPO's placement),
* Ziegler et al.'s adaptive controller, starting at λ = 1, target 1 nat, horizon 320 completions.

`run(beta, ...)` is one run (about 25 s on a 2-core CPU); `study()` runs all five (about 2 minutes) and `main()`
writes what notebook 03 plots and prints: per step the exact KL and λ, the evaluation curves, the final proxy and
gold rewards. The notebook runs λ = 0 live and compares it with its shipped twin (`compare_with_twin`): on the
machine and torch build that wrote the study the two are bit-identical (`toyenv.experiments.same_machine`); on another
CPU the last bits round differently, so they agree within `TWIN_RTOL` / `TWIN_ATOL`.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .. import load_base
from ..checkpoint import DATA_DIR
from ..model import GPT, complete
from ..tasks import general_points_task
from ..tokenizer import Tokenizer
from ..trainers import reward_model as rmod
from ..trainers.rl import AdaptiveKLController, RLConfig, train
from . import common, proxy_reward, twins
from .common import machine

PATH = DATA_DIR / "kl_penalty.json"
EVAL_HANDS = 128           # hands of the fixed evaluation set ...
EVAL_SAMPLES_PER_HAND = 2  # ... sampled twice each: 256 completions, enough same-hand pairs to test the proxy
EVAL_DEAL_SEED = (1234, 99)
EVAL_SAMPLE_SEED = 1234    # the sampler's seed, the same at every evaluation: curves differ only by the policy
EVAL_NEW_TOKENS = 20
# A live run against its shipped twin on another CPU: measured on an AMD EPYC (AVX-512) against the Intel Xeon (AMX)
# that built the study, the λ = 0 run's largest difference was 1e-4 (one unit of the record's 4th decimal, relative
# 6.5e-5). The tolerance leaves room for a few such units: relative 1e-3, plus 2e-4 absolute for values near 0.
TWIN_RTOL = 1e-3
TWIN_ATOL = 2e-4


# Everything that defines a run but its KL penalty (`run` replaces beta, kl_in and kl_estimator): RLOO, 8 prompts x 4
# completions = 32 per step, a learning rate fast enough that λ = 0 over-optimizes the proxy within 80 steps, the
# evaluation every 20 steps (and always after the last).
CONFIG = RLConfig(algorithm="rloo", max_steps=80, num_prompts=8, num_generations=4, max_new_tokens=20,
                  learning_rate=7e-5, eval_every=20, seed=0)


@dataclass(frozen=True)
class RunSpec:
    """One run of the study: λ and where it goes, or the adaptive controller (λ is then its starting value)."""

    name: str
    beta: float
    kl_in: str = "reward"
    target: float | None = None    # adaptive control: the target KL (nats per completion) ...
    horizon: float | None = None   # ... and the horizon (completions)

    def controller(self) -> AdaptiveKLController | None:
        if self.target is None:
            return None
        return AdaptiveKLController(init_kl_coef=self.beta, target=self.target, horizon=self.horizon)


RUNS = (
    RunSpec("λ = 0", 0.0),
    RunSpec("λ = 0.3", 0.3),
    RunSpec("λ = 1", 1.0),
    RunSpec("λ = 1, k3 in the loss", 1.0, kl_in="loss"),
    RunSpec("adaptive, target 1", 1.0, target=1.0, horizon=320),
)


class Setup:
    """What every run shares: the base model, the gold and proxy rewards, and the fixed evaluation set."""

    def __init__(self, base: GPT | None = None, tokenizer: Tokenizer | None = None) -> None:
        if base is None:
            base, tokenizer = load_base()
        self.base, self.tok = base, tokenizer or Tokenizer()
        self.proxy_rm, self.proxy_meta = proxy_reward.load(map_location=base.device)
        self.proxy = rmod.as_reward_fn(self.proxy_rm, self.tok)
        self.gold_task = general_points_task("ten")
        self.proxy_task = self.gold_task.with_reward(self.proxy, name="proxy reward model")
        prompts, infos = self.gold_task.sample_prompts(np.random.default_rng(list(EVAL_DEAL_SEED)), EVAL_HANDS)
        self.eval_prompts = [p for p in prompts for _ in range(EVAL_SAMPLES_PER_HAND)]
        self.eval_infos = [i for i in infos for _ in range(EVAL_SAMPLES_PER_HAND)]
        self._start: dict | None = None

    @torch.no_grad()
    def evaluate(self, policy: GPT) -> dict:
        """Gold and proxy rewards of `policy` on the fixed evaluation set: means, per-sample values, completions."""
        gen = torch.Generator(device=policy.device).manual_seed(EVAL_SAMPLE_SEED)
        completions = complete(policy, self.tok, self.eval_prompts, EVAL_NEW_TOKENS, generator=gen)
        g = np.array(self.gold_task.reward_fn(self.eval_prompts, completions, self.eval_infos))
        p = np.array(self.proxy(self.eval_prompts, completions, self.eval_infos))
        return {"gold": g.mean(), "proxy": p.mean(), "gold_all": g, "proxy_all": p, "completions": completions}

    @property
    def start(self) -> dict:
        """The base model's evaluation, computed once: every run's step 0."""
        if self._start is None:
            self._start = self.evaluate(self.base)
        return self._start


@lru_cache(maxsize=1)
def setup() -> Setup:
    """The shared `Setup` on the default device, loaded once per process."""
    return Setup()


def run(beta: float, kl_in: str = "reward", kl_controller: AdaptiveKLController | None = None,
        desc: str | None = None, config: RLConfig = CONFIG, setup_: Setup | None = None,
        progress: bool = True, kl_estimator: str | None = None) -> dict:
    """RLOO against the proxy from the base model with KL coefficient `beta` placed in `kl_in` (or steered by
    `kl_controller`), the rest as in `config`; returns `rl.train`'s history plus "final", the last evaluation
    (completions included). `kl_estimator` None is RLConfig's default for `kl_in` (k1 in the reward, k3 in the loss).

    history["eval"] holds (step, {"gold", "proxy"}) every `config.eval_every` steps, step 0 included."""
    cfg = replace(config, beta=beta, kl_in=kl_in, kl_estimator=kl_estimator)
    S = setup_ or setup()
    last = {}

    def eval_fn(policy: GPT) -> dict:
        # The evaluation after the last step is the run's final one: keep its completions, so nothing is
        # evaluated twice.
        last["eval"] = S.evaluate(policy)
        return {"gold": last["eval"]["gold"], "proxy": last["eval"]["proxy"]}

    policy = copy.deepcopy(S.base)
    # Step 0's evaluation is the base model's (the policy is still an exact copy of it), which we already have.
    history = train(policy, S.proxy_task, cfg, S.tok, ref=S.base, kl_controller=kl_controller,
                    progress=progress, desc=desc or f"lambda = {beta}", eval_fn=eval_fn if cfg.eval_every else None,
                    initial_eval={"gold": S.start["gold"], "proxy": S.start["proxy"]})
    history["final"] = last["eval"] if cfg.eval_every else S.evaluate(policy)
    return history


def run_spec(spec: RunSpec, config: RLConfig = CONFIG, setup_: Setup | None = None, progress: bool = True) -> dict:
    """`run` with the settings of one of the study's `RUNS`."""
    return run(spec.beta, spec.kl_in, spec.controller(), desc=spec.name, config=config, setup_=setup_,
               progress=progress)


def at_evals(h: dict, key: str) -> tuple[list[int], list[float]]:
    """The eval curve of `key` ("gold" or "proxy"), or for "kl" the training KL averaged over the 5 steps before
    each evaluation (0 at step 0). Works on a live history and on a shipped record alike."""
    steps = [s for s, _ in h["eval"]]
    if key != "kl":
        return steps, [e[key] for _, e in h["eval"]]
    return steps, [np.mean(h["kl"][max(0, s - 5):s]) if s else 0.0 for s in steps]


def r4(x) -> float:
    return round(float(x), 4)


def fingerprint(history: dict) -> str:
    """A digest of a run's numbers at full precision (per-step KL, λ, reward, loss, gradient norm and the
    evaluations): two runs with the same fingerprint are bit-identical, where the rounded record could hide a
    difference in the last digits."""
    numbers = [history[k] for k in ("kl", "beta", "reward", "loss", "grad_norm")]
    numbers.append([[s, float(e["gold"]), float(e["proxy"])] for s, e in history["eval"]])
    return hashlib.sha256(repr(numbers).encode()).hexdigest()[:16]


def record(spec: RunSpec, history: dict) -> dict:
    """What the notebook needs of one run, floats rounded to 4 decimals, and its `fingerprint`."""
    return {
        "name": spec.name, "init_kl_coef": spec.beta, "kl_in": spec.kl_in,
        "kl_estimator": history["config"]["kl_estimator"], "target": spec.target,
        "horizon": spec.horizon,
        "kl": [r4(x) for x in history["kl"]],          # exact KL to the base model per step, nats per completion
        "beta": [r4(x) for x in history["beta"]],      # λ per step, as rl.train names it (the controller's choice)
        "reward": [r4(x) for x in history["reward"]],  # the proxy reward of the training rollouts
        "eval": [[s, {k: r4(v) for k, v in e.items()}] for s, e in history["eval"]],
        "final": {k: r4(history["final"][k]) for k in ("gold", "proxy")},
        "fingerprint": fingerprint(history),
        "seconds": round(sum(history["seconds"]), 1),
    }


def compare_with_twin(live: dict, shipped: dict, name: str = "λ = 0") -> twins.Comparison:
    """A live run's `record` against its shipped twin, number by number, within `TWIN_RTOL` / `TWIN_ATOL` (the
    fingerprint, bit-exact only on the same machine, and the wall time are left out)."""
    return twins.compare(live, shipped, name=name, rtol=TWIN_RTOL, atol=TWIN_ATOL, ignore=("seconds", "fingerprint"))


def study(specs=RUNS, config: RLConfig = CONFIG, progress: bool = True) -> dict:
    S = setup()
    t0 = time.perf_counter()
    runs = [record(spec, run_spec(spec, config, S, progress)) for spec in specs]
    return {
        "config": asdict(config),  # every run's RLConfig but beta, kl_in and kl_estimator, which each run records
        "base": {k: r4(S.start[k]) for k in ("gold", "proxy")},
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }


def load(path: Path = PATH) -> dict:
    """The shipped study. A run's record has the keys of a live history that the notebook reads ("kl", "beta",
    "eval", "final"), so `at_evals` and the plots treat both alike."""
    return common.load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", help="names of runs in RUNS (default: all five)")
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    specs = [s for s in RUNS if not args.only or s.name in args.only]
    if args.only and len(specs) != len(args.only):
        ap.error(f"unknown run name(s); choose from {[s.name for s in RUNS]}")
    result = study(tuple(specs))
    common.save(result, args.out)
    print(f"base: gold {result['base']['gold']:.2f}, proxy {result['base']['proxy']:.2f}")
    for r in result["runs"]:
        print(f"{r['name']:<24} proxy {r['final']['proxy']:5.2f}  gold {r['final']['gold']:5.2f}  "
              f"KL (last 5 steps) {np.mean(r['kl'][-5:]):5.2f}  {r['seconds']:.0f} s")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
