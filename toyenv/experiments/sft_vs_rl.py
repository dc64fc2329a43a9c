"""SFT memorizes, RL generalizes (Chu et al. 2025) on the toy world: notebook 08's study.

    python -m toyenv.experiments.sft_vs_rl                      # both tasks, seeds 0-2, writes toyenv/data/sft_vs_rl.json
    python -m toyenv.experiments.sft_vs_rl --tasks general_points --seeds 0
    python -m toyenv.experiments.sft_vs_rl --cold-start-only   # only section 5's run, into the existing file

For each task, start from the shipped base model and train on the in-distribution (ID) rule only:

    task             ID (trained)                        OOD (held out)
    general_points   J, Q, K count as 10 ("ten")         J=11 Q=12 K=13 ("ranked")
    navigation       absolute turns (north, east, ...)   relative turns (left, slightly right, ...)

* **SFT** on expert (prompt, answer) pairs of the ID rule;
* **RL** (RLOO, on-policy samples, the verifier's reward on the ID rule, no KL penalty).

Both get the same training compute, counted in FLOPs with the usual estimate (Kaplan et al. 2020): 6·N per trained
token (forward + backward) and 2·N per token only read (sampling, scoring by the reference), N = the model's
parameters. RL's steps are fixed; the SFT run gets as many steps as its FLOPs allow. Each method is evaluated
(greedy, held-out episodes) at evenly spaced fractions of the budget, on ID and OOD, and at the end the KL from
the base model on ID prompts, KL(π_base ‖ π), is measured on completions (`toyenv.kl.completion_kl`).
"""
from __future__ import annotations

import argparse
import copy
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import load_base
from ..checkpoint import DATA_DIR
from ..envs import general_points as gp
from ..envs import navigation as nav
from ..kl import completion_kl
from ..model import GPT, GPTConfig, complete
from ..tasks import Task, general_points_task, navigation_task
from ..tokenizer import Tokenizer, encode_pairs
from ..trainers import rl, sft
from ..trainers.rl import RLConfig
from ..trainers.sft import SFTConfig
from ..utils import seed_everything
from . import common
from .common import machine

PATH = DATA_DIR / "sft_vs_rl.json"
EVAL_SEED = 5      # held-out deals / routes for evaluation
TASKS = ("general_points", "navigation")


@dataclass
class TaskSpec:
    """How one task is trained and measured."""

    name: str
    id_rule: str
    ood_rule: str
    max_new_tokens: int
    eval_episodes: int   # deals (general_points) or routes (navigation, ~8 states each) per rule

    def rl_task(self) -> Task:
        return general_points_task(self.id_rule) if self.name == "general_points" else navigation_task(self.id_rule)

    def expert_data(self, n: int, seed: int) -> list[tuple[str, str]]:
        if self.name == "general_points":
            return gp.expert_dataset(n, self.id_rule, seed=1000 + seed)
        return nav.expert_dataset(max(1, n // 8), self.id_rule, seed=1000 + seed)  # about 8 steps per route

    def accuracy(self, model: GPT, tokenizer: Tokenizer, rule: str) -> float:
        if self.name == "general_points":
            return gp.evaluate(model, tokenizer, rule, n_episodes=self.eval_episodes, seed=EVAL_SEED)["accuracy"]
        return nav.evaluate(model, tokenizer, rule, n_episodes=self.eval_episodes, seed=EVAL_SEED)["per_step_accuracy"]

    def id_prompts(self, n: int) -> list[str]:
        """Held-out ID prompts for the KL measurement."""
        prompts, _ = self.rl_task().sample_prompts(np.random.default_rng([EVAL_SEED, 77]), n)
        return prompts


SPECS = {
    "general_points": TaskSpec("general_points", "ten", "ranked", max_new_tokens=20, eval_episodes=500),
    "navigation": TaskSpec("navigation", "absolute", "relative", max_new_tokens=32, eval_episodes=40),
}


@dataclass
class StudyConfig:
    """What the two methods share and how they are measured; each method's optimization is its trainer's config.
    RL's `max_steps` sets the compute budget; SFT gets as many steps as that compute buys (`run_sft`). The task
    sets `max_new_tokens`, `run_rl` / `run_sft` the seed and the evaluation schedule."""

    num_evals: int = 3               # evaluations after 1/3, 2/3 and all of the budget (plus the start)
    kl_prompts: int = 128
    expert_pairs: int = 4000         # SFT data (general_points: deals; navigation: about this many steps)
    rl: RLConfig = field(default_factory=lambda: RLConfig(  # RLOO, 64 rollouts per step, no KL penalty
        algorithm="rloo", max_steps=60, num_prompts=8, num_generations=8, learning_rate=1e-4))
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(  # a constant learning rate after the warmup
        batch_size=32, learning_rate=1e-3, min_lr_ratio=1.0))


def _mean_tokens(pairs: list[tuple[str, str]], tokenizer: Tokenizer) -> float:
    return float(np.mean([len(ids) for ids, _ in encode_pairs(pairs, tokenizer)]))


def skills(spec: TaskSpec, model: GPT, tokenizer: Tokenizer) -> dict:
    return {"id": spec.accuracy(model, tokenizer, spec.id_rule), "ood": spec.accuracy(model, tokenizer, spec.ood_rule)}


def run_rl(spec: TaskSpec, cfg: StudyConfig, seed: int, base: GPT, tokenizer: Tokenizer,
           progress: bool = True, initial_eval: dict | None = None) -> tuple[GPT, dict]:
    """RL on the ID rule; returns (policy, record) with evaluations [(flops, {"id", "ood"})] (`run` adds the KL)."""
    policy = copy.deepcopy(base)
    if cfg.rl.max_steps % cfg.num_evals:
        raise ValueError(f"StudyConfig.rl.max_steps ({cfg.rl.max_steps}) must be a multiple of num_evals "
                         f"({cfg.num_evals})")
    every = cfg.rl.max_steps // cfg.num_evals
    rl_cfg = replace(cfg.rl, max_new_tokens=spec.max_new_tokens, eval_every=every, seed=seed)
    history = rl.train(policy, spec.rl_task(), rl_cfg, tokenizer, ref=base, eval_fn=lambda m: skills(spec, m, tokenizer),
                    progress=progress, desc=f"RL on {spec.name} [{spec.id_rule}]", initial_eval=initial_eval)
    # FLOPs per step: sampling reads prompt + completion (2N per token), the update trains them (6N), the
    # reference scores them (2N). Prompt length from this task's prompts, completion length from the history.
    n = policy.num_params()
    prompt_tokens = float(np.mean([len(tokenizer.encode(p, bos=True)) for p in spec.id_prompts(64)]))
    per_step = [rl_cfg.batch_size * (prompt_tokens + length) * 10 * n for length in history["length"]]
    flops = np.concatenate([[0.0], np.cumsum(per_step)])
    record = {"method": "rl", "task": spec.name, "seed": seed, "steps": rl_cfg.max_steps,
              "eval": [(float(flops[step]), s) for step, s in history["eval"]], "reward": history["reward"],
              "seconds": round(sum(history["seconds"]), 1)}
    return policy, record


def run_sft(spec: TaskSpec, cfg: StudyConfig, seed: int, base: GPT, tokenizer: Tokenizer, flops_budget: float,
            progress: bool = True, initial_eval: dict | None = None) -> tuple[GPT, dict]:
    """SFT on ID expert data with as many steps as `flops_budget` buys (6N per trained token)."""
    model = copy.deepcopy(base)
    data = spec.expert_data(cfg.expert_pairs, seed)
    per_step = 6 * model.num_params() * cfg.sft.batch_size * _mean_tokens(data, tokenizer)
    every = max(1, int(round(flops_budget / per_step / cfg.num_evals)))  # evaluate at the same fractions as RL
    steps = every * cfg.num_evals
    sft_cfg = replace(cfg.sft, max_steps=steps, warmup_steps=min(20, steps // 10), eval_every=every, seed=seed)
    t0 = time.perf_counter()
    history = sft.train(model, data, sft_cfg, tokenizer, eval_fn=lambda m: skills(spec, m, tokenizer), progress=progress,
                  desc=f"SFT on {spec.name} [{spec.id_rule}]", initial_eval=initial_eval)
    record = {"method": "sft", "task": spec.name, "seed": seed, "steps": steps,
              "eval": [(float(step * per_step), s) for step, s in history["eval"]], "loss": history["loss"],
              "seconds": round(time.perf_counter() - t0, 1)}
    return model, record


def run(spec: TaskSpec, cfg: StudyConfig, seed: int, base: GPT, tokenizer: Tokenizer,
        progress: bool = True, base_skills: dict | None = None) -> dict:
    """One seed of one task: RL, then SFT at RL's compute, then KL(base ‖ model) on ID prompts for both.
    `base_skills`: the base model's `skills(spec, ...)`, if you already have them (both runs start there)."""
    base_skills = base_skills if base_skills is not None else skills(spec, base, tokenizer)
    policy, rl_record = run_rl(spec, cfg, seed, base, tokenizer, progress, initial_eval=base_skills)
    sft_model, sft_record = run_sft(spec, cfg, seed, base, tokenizer, rl_record["eval"][-1][0], progress,
                                    initial_eval=base_skills)
    prompts = spec.id_prompts(cfg.kl_prompts)
    for record, model in ((rl_record, policy), (sft_record, sft_model)):
        kl = completion_kl(base, model, prompts, tokenizer, spec.max_new_tokens, seed=seed)
        record["kl_from_base"] = float(kl.mean())
        record["why"] = why(spec, model, tokenizer)
    return {"rl": rl_record, "sft": sft_record, "models": {"rl": policy, "sft": sft_model}}


COLD_START_STEPS = 30


def run_cold_start(tokenizer: Tokenizer, device: str | torch.device = "cpu", seed: int = 0,
                   progress: bool = True) -> dict:
    """Notebook 08's section 5: the same RL on GeneralPoints for 30 steps, from an untrained GPT of the base model's
    size (weights drawn after `seed_everything(seed)`, so the run is the same every time)."""
    seed_everything(seed)
    untrained = GPT(GPTConfig()).to(device)
    cfg = StudyConfig()
    cfg = replace(cfg, rl=replace(cfg.rl, max_steps=COLD_START_STEPS))
    _, record = run_rl(SPECS["general_points"], cfg, seed, untrained, tokenizer, progress)
    return record


# --------------------------------------------------------------------------- reading the results
def curves(runs: list[dict], task: str, method: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(TFLOPs, mean, std over seeds) of `key` ("id" or "ood") at each evaluation of one method on one task."""
    chosen = [r for r in runs if r["task"] == task and r["method"] == method]
    if not chosen:
        raise ValueError(f"no {method} runs for {task}")
    flops = np.mean([[f for f, _ in r["eval"]] for r in chosen], axis=0) / 1e12
    values = np.array([[e[key] for _, e in r["eval"]] for r in chosen])
    return flops, values.mean(0), values.std(0)


def direction(runs: list[dict], base: dict, task: str, tolerance: float = 0.03) -> list[dict]:
    """Per seed, at the end of the budget, against the base model: did SFT end below it OOD; did RL end above it
    OOD ("up", the paper's result) or at least no more than `tolerance` below it ("kept")? Did both raise ID?"""
    out = []
    for seed in sorted({r["seed"] for r in runs if r["task"] == task}):
        end = {r["method"]: r["eval"][-1][1] for r in runs if r["task"] == task and r["seed"] == seed}
        out.append({"seed": seed, "sft_id_up": end["sft"]["id"] > base["id"], "rl_id_up": end["rl"]["id"] > base["id"],
                    "sft_ood_down": end["sft"]["ood"] < base["ood"],
                    "rl_ood_up": end["rl"]["ood"] > base["ood"],
                    "rl_ood_kept": end["rl"]["ood"] >= base["ood"] - tolerance})
    return out


def rule_usage(model: GPT, tokenizer: Tokenizer, n: int = 300, seed: int = EVAL_SEED) -> dict:
    """GeneralPoints under "ranked" (J=11 Q=12 K=13), on hands with a face card: how often the greedy answer is
    right under the rule the prompt states, how often it would be right under the training rule (J/Q/K = 10), and
    how often it writes the number 10 although no card is worth 10 under the stated rule (a face card read with the
    training rule). Returns fractions and the first answers for inspection."""
    hands = [h for h in gp.eval_hands(4 * n, "ranked", seed) if any(c in ("J", "Q", "K") for c in h)][:n]
    answers = complete(model, tokenizer, [gp.make_prompt(h, "ranked") for h in hands], 24, greedy=True)
    stated = [gp.verify(h, a, "ranked") for h, a in zip(hands, answers)]
    training = [gp.verify(h, a, "ten") for h, a in zip(hands, answers)]
    # A 10 in the answer when no card is worth 10 under the stated rule: a face card read as the training rule's 10.
    no_ten = [i for i, h in enumerate(hands) if 10 not in gp.hand_values(h, "ranked")]
    writes_ten = [bool(re.search(r"(?<!\d)10(?!\d)", answers[i])) for i in no_ten]
    return {"n": len(hands), "correct_under_stated_rule": float(np.mean([v.correct for v in stated])),
            "correct_under_training_rule": float(np.mean([v.correct for v in training])),
            "writes_ten": float(np.mean(writes_ten)) if writes_ten else float("nan"),
            "samples": [(" ".join(h), a, v.reason) for h, a, v in zip(hands, answers, stated)][:8]}


def action_space_usage(model: GPT, tokenizer: Tokenizer, n_routes: int = 40, seed: int = EVAL_SEED) -> dict:
    """Navigation with relative turns (OOD): the per-step accuracy, and how often the answer is an *absolute* turn
    (the ID action space) although the prompt says relative."""
    r = nav.evaluate(model, tokenizer, "relative", n_episodes=n_routes, seed=seed, n_samples=10**9)
    absolute = [s for s in r["samples"] if "is an absolute direction" in s["reason"]]
    turns = [s for s in r["samples"] if s["expected"].startswith("turn")]
    return {"steps": len(r["samples"]), "per_step_accuracy": r["per_step_accuracy"],
            "absolute_answers": len(absolute) / len(r["samples"]),
            "turn_accuracy": float(np.mean([s["correct"] for s in turns])) if turns else float("nan"),
            "samples": [(s["prompt"].splitlines()[-3], s["completion"], s["expected"]) for s in turns][:6]}


def why(spec: TaskSpec, model: GPT, tokenizer: Tokenizer) -> dict:
    """The OOD failure signature: `rule_usage` (general_points) or `action_space_usage` (navigation)."""
    return rule_usage(model, tokenizer) if spec.name == "general_points" else action_space_usage(model, tokenizer)


def study(tasks=TASKS, seeds=(0, 1, 2), cfg: StudyConfig | None = None, progress: bool = True) -> dict:
    cfg = cfg or StudyConfig()
    base, tok = load_base()
    t0 = time.perf_counter()
    out = {"config": asdict(cfg), "base": {}, "runs": []}
    for name in tasks:
        spec = SPECS[name]
        base_skills = skills(spec, base, tok)
        out["base"][name] = {**base_skills, "why": why(spec, base, tok)}
        for seed in seeds:
            result = run(spec, cfg, seed, base, tok, progress, base_skills)
            out["runs"] += [result["rl"], result["sft"]]
    out["cold_start"] = run_cold_start(tok, base.device, progress=progress)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["machine"] = machine()
    return out


def load(path: Path = PATH) -> dict:
    """The shipped study (see `study`; rebuild it with `python -m toyenv.experiments.sft_vs_rl`)."""
    return common.load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=PATH)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--cold-start-only", action="store_true",
                    help="rerun only the untrained-model RL run and replace it in the existing file")
    args = ap.parse_args(argv)
    if args.cold_start_only:
        result = common.load(args.out)
        base, tok = load_base()
        result["cold_start"] = run_cold_start(tok, base.device, progress=not args.quiet)
        common.save(result, args.out)
        print(f"wrote the cold start into {args.out}")
        return
    result = study(tuple(args.tasks), tuple(args.seeds), progress=not args.quiet)
    common.save(result, args.out)
    for name, b in result["base"].items():
        print(f"{name}: base ID {b['id']:.3f} OOD {b['ood']:.3f}")
    for r in result["runs"]:
        end = r["eval"][-1][1]
        print(f"{r['task']:<15} {r['method']:<4} seed {r['seed']}  ID {end['id']:.3f}  OOD {end['ood']:.3f}  "
              f"KL(base‖model) on ID {r['kl_from_base']:.2f}  {r['eval'][-1][0] / 1e12:.2f} TFLOPs")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
