"""InstructGPT's pretraining gradients (PPO-ptx) on the toy world: notebook 04's experiment and its seed sweep.

    python -m toyenv.experiments.ptx                  # 3 seeds x 5 values of γ, writes toyenv/data/ptx_sweep.json
    python -m toyenv.experiments.ptx --seeds 0 --gammas 0 1

RL with the verifier's reward on GeneralPoints under the J/Q/K = 10 rule ("ten") starts from the shipped base model,
which was pretrained on a mixture of four skills (both GeneralPoints rules, both navigation action spaces). The
pretraining-style data for the ptx term is a fresh sample of that same mixture (`ptx_data`); the "other skill" is
GeneralPoints under the J=11 Q=12 K=13 rule ("ranked", same prompt format, different card values) plus the
next-token loss on held-out pretraining text (`held_out_data`), the quantity the ptx term pulls on directly.

`run(gamma, seed)` is one RL run; `run_sft_only(seed)` is the control that takes the ptx batches without the RL
loss (how much the pretraining term teaches by itself, since the base model stopped early on purpose). About 50 s
(γ = 0) to 70 s (γ > 0) per run on a 2-core CPU; the whole default sweep about 19 minutes. The same machine and
torch build give the same numbers.
"""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .. import load_base
from ..checkpoint import DATA_DIR
from ..envs import general_points as gp
from ..model import GPT
from ..tasks import general_points_task
from ..tokenizer import Tokenizer, collate, encode_pairs
from ..trainers import rl, sft
from ..trainers.common import completion_loss
from ..trainers.rl import RLConfig
from ..trainers.sft import SFTConfig
from ..utils import eval_mode
from . import common
from .base_model import PretrainConfig, mixture
from .common import machine, yes_no

PATH = DATA_DIR / "ptx_sweep.json"
EVAL_SEED = 3  # deals for evaluation; RL samples its own fresh deals from its seed


# Everything that defines one run but γ (`ptx_coef`) and the seed, which `run` sets: RLOO, 8 prompts x 8 rollouts
# per step, no KL penalty, a learning rate pushed hard enough that RL alone starts to forget (1e-4: hardly any drift).
CONFIG = RLConfig(algorithm="rloo", max_steps=100, num_prompts=8, num_generations=8, max_new_tokens=20,
                  learning_rate=2e-4, beta=0.0, ptx_batch_size=16, eval_every=25, seed=0)
EVAL_EPISODES = 300  # greedy deals per rule; a standard error of about 0.025 on an accuracy near 0.25


def ptx_data() -> list[tuple[str, str]]:
    """Pretraining-style text: a fresh draw (seed 7) of the base model's pretraining mixture, 1,370 pairs."""
    return mixture(PretrainConfig(gp_ten=400, gp_ranked=400, nav_absolute=40, nav_relative=40, seed=7))


def held_out_data() -> list[tuple[str, str]]:
    """Another draw (seed 9) of the mixture, never trained on: its loss is the 'pretraining loss' we watch."""
    return mixture(PretrainConfig(gp_ten=100, gp_ranked=100, nav_absolute=10, nav_relative=10, seed=9))


@torch.no_grad()
def pretraining_loss(model: GPT, tokenizer: Tokenizer, data: list[tuple[str, str]]) -> float:
    """Mean next-token NLL (nats) of the completions in `data`, as the base model was trained on them."""
    tokens, mask = collate(encode_pairs(data, tokenizer), completion_only=True)
    with eval_mode(model):
        return completion_loss(model, tokens.to(model.device), mask.to(model.device)).item()


def skills(model: GPT, tokenizer: Tokenizer, held_out: list[tuple[str, str]], episodes: int = 300) -> dict:
    """Greedy accuracy under both GeneralPoints rules and the held-out pretraining loss."""
    return {
        "ten": gp.evaluate(model, tokenizer, "ten", n_episodes=episodes, seed=EVAL_SEED)["accuracy"],
        "ranked": gp.evaluate(model, tokenizer, "ranked", n_episodes=episodes, seed=EVAL_SEED)["accuracy"],
        "pretraining_loss": round(pretraining_loss(model, tokenizer, held_out), 5),
    }


def run(gamma: float, seed: int = 0, config: RLConfig = CONFIG, base: GPT | None = None,
        tokenizer: Tokenizer | None = None, progress: bool = True, initial_eval: dict | None = None,
        eval_episodes: int = EVAL_EPISODES) -> tuple[GPT, dict]:
    """RL from the base model with ptx coefficient γ, the rest as in `config`; returns (policy, record).
    record["eval"] holds (step, skills) every `config.eval_every` steps, step 0 included; pass the base model's
    `skills` as `initial_eval` if you already have them, to skip measuring them again."""
    if base is None:
        base, tokenizer = load_base()
    tokenizer = tokenizer or Tokenizer()
    held_out = held_out_data()
    policy = copy.deepcopy(base)
    history = rl.train(policy, general_points_task("ten"), replace(config, ptx_coef=gamma, seed=seed), tokenizer,
                    ref=base, eval_fn=lambda m: skills(m, tokenizer, held_out, eval_episodes), progress=progress,
                    desc=f"RL, γ = {gamma}", ptx_data=ptx_data() if gamma > 0 else None, initial_eval=initial_eval)
    def r4(xs):
        return [round(float(x), 4) for x in xs]

    record = {"gamma": gamma, "seed": seed, "reward": r4(history["reward"]), "kl": r4(history["kl"]),
              "ptx_loss": r4(history["ptx_loss"]), "eval": history["eval"], "final": history["eval"][-1][1],
              "seconds": round(sum(history["seconds"]), 1)}
    return policy, record


def run_sft_only(seed: int = 0, config: RLConfig = CONFIG, base: GPT | None = None,
                 tokenizer: Tokenizer | None = None, progress: bool = True,
                 eval_episodes: int = EVAL_EPISODES) -> tuple[GPT, dict]:
    """The control: as many ptx batches as `config` has RL steps (same size, same learning rate), without any RL
    loss."""
    if base is None:
        base, tokenizer = load_base()
    tokenizer = tokenizer or Tokenizer()
    model = copy.deepcopy(base)
    cfg = SFTConfig(max_steps=config.max_steps, batch_size=config.ptx_batch_size, learning_rate=config.learning_rate,
                    warmup_steps=0, min_lr_ratio=1.0, weight_decay=0.0, seed=seed)
    sft.train(model, ptx_data(), cfg, tokenizer, progress=progress, desc="pretraining data only")
    return model, {"seed": seed, "final": skills(model, tokenizer, held_out_data(), eval_episodes)}


METRICS = ("reward", "kl", "ten", "ranked", "pretraining_loss")


def final_metrics(record: dict) -> dict:
    """One run's end point: reward and KL averaged over the last 10 steps, the skills at the last evaluation."""
    return {"reward": float(np.mean(record["reward"][-10:])), "kl": float(np.mean(record["kl"][-10:])),
            **{k: record["final"][k] for k in ("ten", "ranked", "pretraining_loss")}}


def summary(records: list[dict]) -> dict[float, dict[str, tuple[float, float]]]:
    """γ -> metric -> (mean, standard deviation over seeds) of `final_metrics`."""
    out = {}
    for gamma in sorted({r["gamma"] for r in records}):
        finals = [final_metrics(r) for r in records if r["gamma"] == gamma]
        out[gamma] = {m: (float(np.mean([f[m] for f in finals])), float(np.std([f[m] for f in finals])))
                      for m in METRICS}
    return out


def per_seed(study: dict) -> dict[float, dict[int, dict]]:
    """γ -> seed -> `final_metrics` of that run, from a sweep such as the shipped `ptx_sweep.json`."""
    out: dict[float, dict[int, dict]] = {}
    for r in study["runs"]:
        out.setdefault(r["gamma"], {})[r["seed"]] = final_metrics(r)
    return {g: dict(sorted(out[g].items())) for g in sorted(out)}


def seed_counts(study: dict) -> dict[float, dict[str, int]]:
    """For each γ, on how many seeds (of "seeds") the run ended: with its held-out pretraining loss above the base
    model's ("loss_above_base"), below it ("loss_below_base"), below the γ = 0 run of the same seed
    ("loss_below_gamma0"), and with its 'ranked' accuracy above the base model's ("ranked_above_base") or at or
    below it ("ranked_at_or_below_base"). The base model is the sweep's "base" record; γ = 0 must be in the sweep."""
    table, base = per_seed(study), study["base"]
    if 0.0 not in table:
        raise ValueError("seed_counts needs the γ = 0 runs of the sweep")
    out = {}
    for gamma, seeds in table.items():
        zero = table[0.0]
        out[gamma] = {
            "seeds": len(seeds),
            "loss_above_base": sum(f["pretraining_loss"] > base["pretraining_loss"] for f in seeds.values()),
            "loss_below_base": sum(f["pretraining_loss"] < base["pretraining_loss"] for f in seeds.values()),
            "loss_below_gamma0": sum(f["pretraining_loss"] < zero[s]["pretraining_loss"] for s, f in seeds.items()),
            "ranked_above_base": sum(f["ranked"] > base["ranked"] for f in seeds.values()),
            "ranked_at_or_below_base": sum(f["ranked"] <= base["ranked"] for f in seeds.values()),
        }
    return out


def verdicts(study: dict) -> list[str]:
    """Notebook 04's headline, as lines that read the same on every CPU (they come from the shipped sweep): the
    tax at γ = 0 and, for the smallest γ from which it holds on every seed, the fix. For example
    "γ = 0: pretraining loss above the base on 3/3 seeds: yes"."""
    counts = seed_counts(study)
    gammas = [g for g in counts if g > 0]

    def from_on(key: str) -> float | None:
        """The smallest γ > 0 such that `key` holds on every seed for it and every larger γ."""
        first = None
        for g in reversed(gammas):
            if counts[g][key] != counts[g]["seeds"]:
                break
            first = g
        return first

    c0 = counts[0.0]
    n = c0["seeds"]
    lines = [f"γ = 0: pretraining loss above the base on {c0['loss_above_base']}/{n} seeds: "
             f"{yes_no(c0['loss_above_base'] == n)}",
             f"γ = 0: 'ranked' at or below the base on {c0['ranked_at_or_below_base']}/{n} seeds: "
             f"{yes_no(c0['ranked_at_or_below_base'] == n)}"]
    for g in gammas:
        c = counts[g]
        lines.append(f"γ = {g:g}: pretraining loss below γ = 0 on {c['loss_below_gamma0']}/{c['seeds']} seeds, "
                     f"below the base on {c['loss_below_base']}/{c['seeds']}; 'ranked' above the base on "
                     f"{c['ranked_above_base']}/{c['seeds']}")
    for key, what in (("loss_below_gamma0", "pretraining loss below γ = 0"),
                      ("loss_below_base", "pretraining loss below the base"),
                      ("ranked_above_base", "'ranked' above the base")):
        g = from_on(key)
        lines.append(f"{what} on every seed for every γ ≥ {g:g}: yes" if g is not None
                     else f"{what} on every seed for the largest γ: no")
    return lines


def study(gammas=(0.0, 0.1, 0.3, 1.0, 3.0), seeds=(0, 1, 2), config: RLConfig = CONFIG,
          eval_episodes: int = EVAL_EPISODES, progress: bool = True) -> dict:
    base, tok = load_base()
    t0 = time.perf_counter()
    runs = [run(g, s, config, base, tok, progress, eval_episodes=eval_episodes)[1] for s in seeds for g in gammas]
    controls = [run_sft_only(s, config, base, tok, progress, eval_episodes)[1] for s in seeds]
    return {
        "config": asdict(config),  # every run's RLConfig but ptx_coef (γ) and seed, which each run records
        "eval_episodes": eval_episodes,
        "base": skills(base, tok, held_out_data(), eval_episodes),
        "runs": runs,
        "sft_only": controls,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }


def load(path: Path = PATH) -> dict:
    """The shipped sweep (see `study`; rebuild it with `python -m toyenv.experiments.ptx`)."""
    return common.load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0, 3.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    result = study(tuple(args.gammas), tuple(args.seeds))
    common.save(result, args.out)
    for r in result["runs"]:
        f = r["final"]
        print(f"γ {r['gamma']:>4}  seed {r['seed']}  reward {np.mean(r['reward'][-10:]):5.2f}  ten {f['ten']:.3f}  "
              f"ranked {f['ranked']:.3f}  pretraining loss {f['pretraining_loss']:.4f}")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
