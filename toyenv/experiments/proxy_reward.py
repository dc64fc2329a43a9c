"""Build the proxy reward model of notebook 03 (reward over-optimization), deterministically.

    python -m toyenv.experiments.proxy_reward [--pairs 1000] [--held-out 500] [--steps 300] [--out toyenv/data/proxy_rm.pt]

Gao et al. (2022) study over-optimization with a *gold* reward that labels preferences and a *proxy* reward model
trained on a limited number of them. Here the gold reward is GeneralPoints' verifier (+5 correct, −1/−2/−3 for
the failure kinds, `face_card_rule="ten"`), the pairs are two samples of the shipped base model per hand (pairs
with equal gold reward dropped), and the proxy is a `RewardModel` on the base model's trunk trained with the
Bradley–Terry loss. Held-out pairs come from other hands. Takes 1½ to 2½ minutes on a 2-core CPU; the same
machine and torch version rebuild the same weights.

1000 pairs (held-out accuracy 0.80, training accuracy 1.0) is the default: RLOO against it at lr 7e-5 (8 prompts x
4 completions, beta 0) raises the proxy while gold ends below its start (`kl_frontier`, three seeds: gold 0.43 to
0.92 at step 80 against the base model's 1.43, never above 1.43 at an evaluation every 10 steps); beta = 1 (k1 in
the reward) holds gold up (1.48 to 1.74). 500 pairs is exploited from the first steps (gold never rises); 1500
pairs behaves like 1000 with a noisier proxy curve.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from .. import load_base, seed_everything
from ..checkpoint import DATA_DIR
from ..pairs import sample_preference_pairs
from ..tasks import general_points_task
from ..trainers import reward_model as rmod

PATH = DATA_DIR / "proxy_rm.pt"
SEED = 0


def preference_data(n_train: int, n_held_out: int, seed: int = SEED):
    """(train pairs, held-out pairs) labelled by the verifier, from base-model samples on disjoint hands."""
    base, tok = load_base(map_location="cpu")
    task = general_points_task("ten")
    # Three hands per wanted pair: about 38% of hands give two samples with different gold rewards.
    splits = []
    for stream, n in ((0, n_train), (1, n_held_out)):
        prompts, infos = task.sample_prompts(np.random.default_rng([seed, 29, stream]), 3 * n)
        splits.append(sample_preference_pairs(base, tok, prompts, task.reward_fn, n_pairs=n, infos=infos,
                                                   seed=seed + stream))
    return base, tok, splits[0], splits[1]


def run(n_train: int = 1000, n_held_out: int = 500, rm_steps: int = 300, progress: bool = True
        ) -> tuple[rmod.RewardModel, dict]:
    """The proxy reward model and its metrics: `n_train` verifier-labelled pairs, `rm_steps` Bradley–Terry steps."""
    t0 = time.perf_counter()
    base, tok, train_pairs, held_out = preference_data(n_train, n_held_out)
    seed_everything(SEED)
    rm = rmod.RewardModel.from_gpt(base)
    config = rmod.RewardConfig(max_steps=rm_steps, seed=SEED)
    history = rmod.train(rm, train_pairs, config, tok, eval_pairs=held_out, progress=progress)
    metrics = {
        "train_pairs": len(train_pairs),
        "held_out_pairs": len(held_out),
        "train_accuracy": rmod.preference_accuracy(rm, train_pairs, tok),
        "held_out_accuracy": history["eval"][-1][1]["accuracy"],
        "config": history["config"],
        "gold": "general_points verifier, face_card_rule='ten'",
        "seconds": round(time.perf_counter() - t0, 1),
        "torch": torch.__version__,
    }
    return rm, metrics


def study(n_train: int = 1000, n_held_out: int = 500, out: Path = PATH, progress: bool = True,
          rm_steps: int = 300) -> dict:
    """This study is one run: train the proxy (`run`), write it to `out` and its metrics beside it; the metrics."""
    rm, metrics = run(n_train, n_held_out, rm_steps, progress)
    rmod.save_reward_model(out, rm, **metrics)
    Path(out).with_name(Path(out).stem + "_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def load(path: Path = PATH, map_location="cpu") -> tuple[rmod.RewardModel, dict]:
    """The shipped proxy reward model and its metadata (rebuild it with `python -m toyenv.experiments.proxy_reward`)."""
    return rmod.load_reward_model(path, map_location=map_location)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1000, help="training pairs")
    ap.add_argument("--held-out", type=int, default=500)
    ap.add_argument("--steps", type=int, default=300, help="reward-model training steps")
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    metrics = study(args.pairs, args.held_out, args.out, rm_steps=args.steps)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
