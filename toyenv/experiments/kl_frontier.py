"""Gao et al.'s frontier on the toy world: gold reward against KL with and without the KL penalty, over seeds.

    python -m toyenv.experiments.kl_frontier        # six RL runs, writes toyenv/data/kl_frontier.json (about 3 min)

Gao, Schulman & Hilton (2022) report that a KL penalty does not move the gold-reward-vs-KL frontier of RL against a
proxy; it only changes where on it a run stops. This study tests that on notebook 03's setup (`kl_penalty.CONFIG`:
RLOO against the proxy reward model, the fixed evaluation set), with λ = 0 and λ = 1 (k1 in the reward), three
seeds each, and an evaluation every 10 steps instead of 20 so that each run gives 8 points of (KL, gold). Seed 0 is
`kl_penalty`'s own run with these settings, evaluated more often.

`bon_pool` samples the pool notebook 03 uses for best-of-n (live, about 15 s); `toyenv.overoptimization` holds the
analytic best-of-n KL and the fits of Gao et al.'s two functional forms.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import DATA_DIR
from ..model import complete
from . import common
from . import kl_penalty as K
from .common import machine

PATH = DATA_DIR / "kl_frontier.json"
BETAS = (0.0, 1.0)
SEEDS = (0, 1, 2)
CONFIG = replace(K.CONFIG, eval_every=10)
# Best-of-n: every evaluation hand (128) gets a pool of 32 base-model samples; n runs over the powers of 2 up to 32.
BON_POOL = 32
BON_SEED = 4321
BON_NS = (1, 2, 4, 8, 16, 32)
# KL bins (nats per completion) where the λ = 0 and λ = 1 runs are compared at equal KL.
BINS = (0.0, 0.2, 0.4, 0.7, 1.0)


def run_name(beta: float, seed: int) -> str:
    return f"λ = {beta:g}, seed {seed}"


def run(beta: float, seed: int = 0, config=CONFIG, setup_: K.Setup | None = None, progress: bool = True) -> dict:
    """One run of the study: notebook 03's RL against the proxy (`kl_penalty.run`) with KL coefficient `beta` (k1 in
    the reward) and `seed`, evaluated every `config.eval_every` steps."""
    return K.run(beta, config=replace(config, seed=seed), setup_=setup_, progress=progress, desc=run_name(beta, seed))


def record(beta: float, seed: int, history: dict) -> dict:
    """One run's evaluation points: step, gold, proxy and the training KL before it (`kl_penalty.at_evals`)."""
    steps, gold = K.at_evals(history, "gold")
    return {
        "name": run_name(beta, seed), "beta": beta, "seed": seed,
        "steps": steps,
        "gold": [K.r4(x) for x in gold],
        "proxy": [K.r4(x) for x in K.at_evals(history, "proxy")[1]],
        "kl": [K.r4(x) for x in K.at_evals(history, "kl")[1]],
        "fingerprint": K.fingerprint(history),
        "seconds": round(sum(history["seconds"]), 1),
    }


def study(betas=BETAS, seeds=SEEDS, config=CONFIG, progress: bool = True) -> dict:
    S = K.setup()
    t0 = time.perf_counter()
    runs = [record(b, s, run(b, s, config, S, progress)) for b in betas for s in seeds]
    return {
        "config": asdict(config),  # every run's RLConfig but beta and seed, which each run records
        "base": {k: K.r4(S.start[k]) for k in ("gold", "proxy")},
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }


def load(path: Path = PATH) -> dict:
    return common.load(path)


def points(study_: dict, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every evaluation after step 0 of the runs with coefficient `beta`: KL, gold gain over the base model, seed."""
    base = study_["base"]["gold"]
    kl, gain, seed = [], [], []
    for r in study_["runs"]:
        if r["beta"] == beta:
            kl += r["kl"][1:]
            gain += [g - base for g in r["gold"][1:]]
            seed += [r["seed"]] * (len(r["kl"]) - 1)
    return np.array(kl), np.array(gain), np.array(seed)


def by_bin(study_: dict, betas=BETAS, bins=BINS) -> list[dict]:
    """Gold gain at equal KL: for each KL bin and each β, the mean over seeds of each seed's mean gain in the bin,
    and the spread (standard deviation over those seeds; nan with fewer than two)."""
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        row = {"bin": (lo, hi)}
        for beta in betas:
            kl, gain, seed = points(study_, beta)
            inside = (kl >= lo) & (kl < hi)
            per_seed = [gain[inside & (seed == s)].mean() for s in np.unique(seed[inside])]
            row[beta] = {"mean": float(np.mean(per_seed)) if per_seed else float("nan"),
                         "spread": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan"),
                         "seeds": len(per_seed), "points": int(inside.sum())}
        rows.append(row)
    return rows


@torch.no_grad()
def bon_pool(pool: int = BON_POOL, seed: int = BON_SEED, setup_: K.Setup | None = None) -> dict:
    """`pool` base-model samples for each of the evaluation set's 128 hands, scored by the gold verifier and the
    proxy: {"gold", "proxy"} arrays shaped (128, pool), and the completions."""
    S = setup_ or K.setup()
    prompts, infos = S.eval_prompts[::K.EVAL_SAMPLES_PER_HAND], S.eval_infos[::K.EVAL_SAMPLES_PER_HAND]
    gen = torch.Generator(device=S.base.device).manual_seed(seed)
    completions = complete(S.base, S.tok, prompts, K.EVAL_NEW_TOKENS, generator=gen, num_return_sequences=pool,
                           batch_size=32)
    P = [p for p in prompts for _ in range(pool)]
    I = [i for i in infos for _ in range(pool)]
    gold = np.array(S.gold_task.reward_fn(P, completions, I), dtype=float).reshape(len(prompts), pool)
    proxy = np.array(S.proxy(P, completions, I), dtype=float).reshape(len(prompts), pool)
    return {"gold": gold, "proxy": proxy, "completions": completions}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    result = study()
    common.save(result, args.out)
    for r in result["runs"]:
        print(f"{r['name']:<16} gold {r['gold'][-1]:5.2f}  proxy {r['proxy'][-1]:5.2f}  KL {r['kl'][-1]:5.2f}  "
              f"{r['seconds']:.0f} s")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
