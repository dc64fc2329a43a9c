"""Loss-based regularizers on the toy world: notebook 05's DPO / DPO + NLL sweeps and notebook 06's margin study.

    python -m toyenv.experiments.preference                 # everything, writes toyenv/data/preference_study.json
    python -m toyenv.experiments.preference --part dpo      # only the α and β sweeps (notebook 05)
    python -m toyenv.experiments.preference --part margins  # only the reward-model margin study (notebook 06)
    python -m toyenv.experiments.preference --part policy_margins  # only DPO vs RPO vs REBEL (notebook 06)

`--part` rebuilds one part and keeps the others of the existing file as they are; the keys are always written in
the same order (`KEYS`), so rebuilding the parts one by one or all at once writes the same file.

DPO (`toyenv.trainers.dpo.train`) starts from the shipped base model on GeneralPoints pairs sampled from the
base model itself and graded by the verifier (`toyenv.pairs.general_points_pairs(model=base)`), the on-policy
setting of iterative DPO. Each run records, on a fixed set of held-out pairs, the sequence log-probs of chosen and
rejected completions before and after, the greedy accuracy of the policy on the task, and KL(π ‖ π_ref) of its
completions. The margin study trains reward models (`toyenv.trainers.reward_model`) on graded pairs built from the
environment (expert answers and graded corruptions of them) with no margin and with Llama 2's two margin tables,
and measures held-out accuracy per strength label and how the score gaps sit against the margins. The policy-margin
part trains the policy for 100 steps with DPO, RPO and REBEL on the same pairs (seed 0, notebook 06's section 3) and
keeps, besides the usual record, the log-ratio gap h of every monitor pair. On a 2-core CPU, 50 to 70 s per 200-step
DPO run and 20 to 45 s per reward model; the whole default study 20 to 40 minutes (39 on the slowest CPU measured, an
AMD EPYC with AVX2: the DPO sweeps 26, the margins about 10, the policy margins under 2; the margins 7 once the reward
model read each prompt once). The same machine and torch build give the same numbers.
"""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import load_base
from ..checkpoint import DATA_DIR
from ..envs import general_points as gp
from ..kl import completion_kl
from ..model import GPT
from ..pairs import (STRENGTHS, PreferencePair, general_points_pairs, margins_for, pairwise_accuracy, strength_counts,
                     strength_for_gap)
from ..tokenizer import Tokenizer
from ..trainers import dpo, reward_model
from ..trainers.dpo import PreferenceConfig, logratio_gaps
from ..trainers.reward_model import RewardConfig, RewardModel, score_texts
from . import common
from .common import machine, yes_no

PATH = DATA_DIR / "preference_study.json"
EVAL_SEED = 3        # deals for greedy evaluation
MONITOR_SEED = 100   # held-out pairs watched during training (never trained on)


@dataclass
class DPOExperiment:
    """Everything that defines one DPO run but its loss weights and seed: the data and measurements here, the
    optimization in `training` (`config` sets the loss, its coefficients and the seed)."""

    num_pairs: int = 512       # training pairs, sampled from the base model and graded
    monitor_pairs: int = 128   # held-out pairs whose log-probs are watched
    eval_episodes: int = 200   # greedy task-accuracy deals
    kl_prompts: int = 128      # monitor prompts on which KL(π ‖ π_ref) is measured at the end
    training: PreferenceConfig = field(default_factory=lambda: PreferenceConfig(
        max_steps=200, batch_size=32, learning_rate=1e-4, eval_every=50))

    def config(self, loss_type: str, beta: float, alpha: float, seed: int, **extra) -> PreferenceConfig:
        """`training` with the run's loss, its coefficients and seed."""
        return replace(self.training, loss_type=loss_type, beta=beta, alpha=alpha, seed=seed, **extra)


def sampled_pairs(base: GPT, tokenizer: Tokenizer, n: int, seed: int) -> list[PreferencePair]:
    """n graded pairs from 4 samples of the base model per hand (two with different verifier rewards)."""
    return general_points_pairs(n, seed=seed, model=base, tokenizer=tokenizer)


def task_accuracy(model: GPT, tokenizer: Tokenizer, episodes: int = 200) -> dict:
    """Greedy accuracy on GeneralPoints ("ten"), on the fixed evaluation deals."""
    return {"task_accuracy": gp.evaluate(model, tokenizer, "ten", n_episodes=episodes, seed=EVAL_SEED)["accuracy"]}


def policy_kl(policy: GPT, ref: GPT, tokenizer: Tokenizer, pairs: list[PreferencePair]) -> float:
    """Mean KL(π ‖ π_ref) in nats of completions sampled from π, on the prompts of `pairs`."""
    return float(completion_kl(policy, ref, [p.prompt for p in pairs], tokenizer, max_new_tokens=24, seed=0).mean())


def run(loss_type: str = "dpo", beta: float = 0.1, alpha: float = 0.0, seed: int = 0,
        exp: DPOExperiment | None = None, base: GPT | None = None, tokenizer: Tokenizer | None = None,
        train_pairs: list | None = None, monitor: list | None = None, progress: bool = True,
        **extra) -> tuple[GPT, dict]:
    """One preference-optimization run from the base model; returns (policy, record).

    record: the settings, "eval" [(step, {chosen_logp, rejected_logp, chosen_delta, rejected_delta, margin,
    accuracy, task_accuracy}), ...] on the monitor pairs, "final" (the last of them plus "kl"), "seconds".
    `train_pairs` / `monitor` default to `sampled_pairs(seed)` and `sampled_pairs(MONITOR_SEED)`.
    """
    exp = exp or DPOExperiment()
    if base is None:
        base, tokenizer = load_base()
    tokenizer = tokenizer or Tokenizer()
    train_pairs = train_pairs if train_pairs is not None else sampled_pairs(base, tokenizer, exp.num_pairs, seed)
    monitor = monitor if monitor is not None else sampled_pairs(base, tokenizer, exp.monitor_pairs, MONITOR_SEED)
    policy = copy.deepcopy(base)
    start = time.perf_counter()
    label = f"{loss_type}, β = {beta}" + (f", α = {alpha}" if loss_type == "dpo_nll" else "")
    history = dpo.train(policy, train_pairs, exp.config(loss_type, beta, alpha, seed, **extra), tokenizer, ref=base,
                        monitor_pairs=monitor, eval_fn=lambda m: task_accuracy(m, tokenizer, exp.eval_episodes),
                        progress=progress, desc=label)
    evals = [(s, {k: round(float(v), 4) for k, v in row.items()}) for s, row in history["eval"]]
    final = dict(evals[-1][1], kl=round(policy_kl(policy, base, tokenizer, monitor[: exp.kl_prompts]), 4))
    record = {"loss_type": loss_type, "beta": beta, "alpha": alpha, "seed": seed, **extra, "eval": evals,
              "final": final, "seconds": round(time.perf_counter() - start, 1)}
    return policy, record


# --------------------------------------------------------------------------- reward-model margins (notebook 06)
@dataclass
class MarginExperiment:
    """The data of a reward-model run; its optimization is `training` (`run_margin` sets use_margin and the seed)."""

    num_train: int = 2000
    num_test: int = 1000
    training: RewardConfig = field(default_factory=lambda: RewardConfig(max_steps=150, learning_rate=3e-4))


def graded_pool_pairs(n: int, seed: int) -> list[PreferencePair]:
    """Environment-built graded pairs (expert vs graded corruptions), 10% "unsure" labels."""
    return general_points_pairs(n, seed=seed)


def bucket_metrics(rm: RewardModel, tokenizer: Tokenizer, pairs: list[PreferencePair]) -> dict:
    """Held-out accuracy (ties count half) and mean score gap r(y_c) − r(y_r), overall and per strength label.

    "all" also has, from the same scores: "median_gap"; "below_small" / "below_large", the fraction of pairs whose
    gap is still below their margin in Llama 2's small / large table (where a margin would still pull); "wrong",
    the fraction ranked wrong (gap < 0; with no ties, 1 − accuracy)."""
    r_c, r_r = score_pairs(rm, tokenizer, pairs)
    gap = (r_c - r_r).double()
    labels = np.array([p.strength for p in pairs])
    out = {"all": {"accuracy": round(pairwise_accuracy(r_c, r_r), 4), "gap": round(float(gap.mean()), 4),
                   "n": len(pairs), "median_gap": round(float(np.median(gap.numpy())), 4)}}
    for table in ("small", "large"):
        margin = margins_for([p.strength for p in pairs], table).double()
        out["all"][f"below_{table}"] = round(float((gap < margin).double().mean()), 4)
    out["all"]["wrong"] = round(float((gap < 0).double().mean()), 4)
    for s in STRENGTHS:
        idx = torch.as_tensor(np.flatnonzero(labels == s))
        if len(idx):
            out[s] = {"accuracy": round(pairwise_accuracy(r_c[idx], r_r[idx]), 4),
                      "gap": round(float(gap[idx].mean()), 4),
                      "n": int(len(idx))}
    return out


def run_margin(table: str | None, seed: int = 0, exp: MarginExperiment | None = None, base: GPT | None = None,
               tokenizer: Tokenizer | None = None, train_pairs: list | None = None, test_pairs: list | None = None,
               progress: bool = True) -> tuple[RewardModel, dict]:
    """A reward model from the base model's weights, trained with Llama 2's margin `table` ("small", "large") or
    without a margin (None); returns (rm, record with per-strength held-out metrics)."""
    exp = exp or MarginExperiment()
    if base is None:
        base, tokenizer = load_base()
    tokenizer = tokenizer or Tokenizer()
    train_pairs = train_pairs if train_pairs is not None else graded_pool_pairs(exp.num_train, seed)
    test_pairs = test_pairs if test_pairs is not None else graded_pool_pairs(exp.num_test, 1000 + seed)
    torch.manual_seed(seed)  # the reward head's initialization
    rm = RewardModel.from_gpt(base)
    cfg = replace(exp.training, use_margin=table is not None, seed=seed)
    reward_model.train(rm, [p.with_margin(table or "small") for p in train_pairs], cfg, tokenizer,
                       progress=progress, desc=f"reward model, margin {table}")
    return rm, {"table": table, "seed": seed, "test": bucket_metrics(rm, tokenizer, test_pairs)}


# --------------------------------------------------------------------------- policy margins (notebook 06)
POLICY_METHODS = {"DPO": dict(loss_type="dpo", beta=0.1),
                  "RPO": dict(loss_type="rpo", beta=0.1, eta=0.1),
                  "REBEL": dict(loss_type="rebel", beta=0.1, eta=1.0)}
POLICY_SEED = 0  # the policy-margin part runs one seed, notebook 06's


def policy_margin_experiment() -> DPOExperiment:
    """Notebook 06's section 3: notebook 05's setting, 100 steps, evaluated before and after."""
    exp = DPOExperiment()
    return replace(exp, training=replace(exp.training, max_steps=100, eval_every=100))


def run_policy_margin(method: str, seed: int = POLICY_SEED, exp: DPOExperiment | None = None,
                      base: GPT | None = None, tokenizer: Tokenizer | None = None, train_pairs: list | None = None,
                      monitor: list | None = None, progress: bool = True) -> tuple[GPT, dict]:
    """One of `POLICY_METHODS` ("DPO", "RPO", "REBEL") with `run`; the record also has "method" and "h", the
    log-ratio gap of every monitor pair (`toyenv.trainers.dpo.logratio_gaps`, 4 decimals)."""
    exp = exp or policy_margin_experiment()
    if base is None:
        base, tokenizer = load_base()
    tokenizer = tokenizer or Tokenizer()
    monitor = monitor if monitor is not None else sampled_pairs(base, tokenizer, exp.monitor_pairs, MONITOR_SEED)
    kw = dict(POLICY_METHODS[method])
    policy, record = run(kw.pop("loss_type"), kw.pop("beta"), 0.0, seed, exp, base, tokenizer, train_pairs,
                         monitor, progress, **kw)
    h = logratio_gaps(policy, base, monitor, tokenizer)
    evals = [[s, row] for s, row in record["eval"]]  # as JSON stores them, so a live record == its shipped twin
    return policy, {"method": method, **record, "eval": evals, "h": [round(float(v), 4) for v in h]}


# --------------------------------------------------------------------------- reading the results (notebooks 05, 06)
def displacement_verdicts(record: dict, base_task_accuracy: float, min_drop: float = 5.0,
                          min_margin: float = 5.0) -> list[str]:
    """Notebook 05's headline on one DPO record, as lines that read the same on every CPU: likelihood displacement
    holds when the chosen log-prob fell by more than `min_drop` nats, the rejected one fell further, and the mean
    margin h ended above `min_margin`; the greedy task accuracy "fell with them" when it ended below half of
    `base_task_accuracy`. The thresholds sit far from the shipped run's values (−18, −31, +12.7), so that rounding
    on another CPU cannot flip a line."""
    f = record["final"]

    return [f"chosen log-prob fell by more than {min_drop:g} nats: {yes_no(f['chosen_delta'] < -min_drop)}",
            f"rejected log-prob fell further than the chosen: {yes_no(f['rejected_delta'] < f['chosen_delta'])}",
            f"margin h grew above {min_margin:g}: {yes_no(f['margin'] > min_margin)}",
            f"greedy task accuracy below half the base model's: {yes_no(f['task_accuracy'] < base_task_accuracy / 2)}"]


def kinds_accuracy(pairs: list[PreferencePair], r_c, r_r) -> list[dict]:
    """Held-out accuracy per kind of pair, from the scores r_c, r_r (B,) of chosen and rejected: one row per
    (chosen kind, rejected kind) (verifier verdicts, e.g. ("correct", "wrong_value")), with "reward_gap",
    "strength" (the label the gap gives, `strength_for_gap`, before annotator noise), "n" and "accuracy" (ties count
    half). Sorted by reward gap, largest first. This is what the strength buckets mix: each label is a set of kinds."""
    r_c, r_r = torch.as_tensor(r_c, dtype=torch.float64), torch.as_tensor(r_r, dtype=torch.float64)
    if not (len(pairs) == len(r_c) == len(r_r)):
        raise ValueError(f"{len(pairs)} pairs but {len(r_c)} chosen and {len(r_r)} rejected scores")
    groups: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault((p.info["kind_chosen"], p.info["kind_rejected"]), []).append(i)
    rows = []
    for (kc, kr), idx in groups.items():
        gap = pairs[idx[0]].gap
        rows.append({"chosen": kc, "rejected": kr, "reward_gap": gap, "strength": strength_for_gap(gap),
                     "n": len(idx), "accuracy": pairwise_accuracy(r_c[idx], r_r[idx])})
    return sorted(rows, key=lambda r: (-r["reward_gap"], r["chosen"], r["rejected"]))


def score_pairs(rm: RewardModel, tokenizer: Tokenizer, pairs: list[PreferencePair]) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_c, r_r): the reward model's scores of the chosen and rejected completions of `pairs`."""
    prompts = [p.prompt for p in pairs]
    return (score_texts(rm, prompts, [p.chosen for p in pairs], tokenizer),
            score_texts(rm, prompts, [p.rejected for p in pairs], tokenizer))


def margin_summary(study: dict) -> dict:
    """The shipped margin study in numbers: for each table (None, "small", "large"), the held-out accuracy per seed
    ("all" and each strength, in seed order) with its mean and standard deviation over seeds."""
    out: dict = {}
    for rec in sorted(study["margins"], key=lambda r: r["seed"]):
        t = out.setdefault(rec["table"], {"seeds": [], **{s: [] for s in ("all",) + STRENGTHS}})
        t["seeds"].append(rec["seed"])
        for s in ("all",) + STRENGTHS:
            t[s].append(rec["test"][s]["accuracy"])
    for t in out.values():
        t["mean"] = {s: float(np.mean(t[s])) for s in ("all",) + STRENGTHS}
        t["std"] = {s: float(np.std(t[s])) for s in ("all",) + STRENGTHS}
    return out


def margin_verdicts(study: dict) -> list[str]:
    """Notebook 06's reward-model headline from the shipped 3-seed study, as lines that read the same on every CPU:
    how each margin table compares with no margin in mean held-out accuracy and seed by seed (the spread is the
    no-margin model's standard deviation over seeds), and which strength bucket is the hardest."""
    m = margin_summary(study)
    none, n = m[None], len(m[None]["seeds"])

    lines = []
    for table in ("small", "large"):
        t = m[table]
        diff = t["mean"]["all"] - none["mean"]["all"]
        below = sum(a < b for a, b in zip(t["all"], none["all"]))
        lines.append(f"{table} margin vs no margin, mean held-out accuracy {t['mean']['all']:.3f} vs "
                     f"{none['mean']['all']:.3f} ({diff:+.3f}); lower on {below}/{n} seeds; within the no-margin "
                     f"seed-to-seed spread (std {none['std']['all']:.3f}): {yes_no(abs(diff) <= none['std']['all'])}")
    large = m["large"]
    below = sum(a < b for a, b in zip(large["all"], none["all"]))
    lines.append(f"large margin below no margin in mean held-out accuracy and on every seed: "
                 f"{yes_no(large['mean']['all'] < none['mean']['all'] and below == n)}")
    hardest = {table: min(STRENGTHS, key=lambda s: t["mean"][s]) for table, t in m.items()}
    lines.append("hardest bucket in mean held-out accuracy, for every table: " +
                 (hardest[None].replace("_", " ") if len(set(hardest.values())) == 1 else "differs by table"))
    lines.append("'better' pairs ranked right by every model on every seed: "
                 f"{yes_no(all(a == 1.0 for t in m.values() for a in t['better']))}")
    return lines


def target_gap(method: str, reward_gap):
    """Where `POLICY_METHODS[method]`'s loss is zero: h = η·Δr/β for RPO, h = η·Δr for REBEL; DPO has no target
    (None)."""
    kw = POLICY_METHODS[method]
    if kw["loss_type"] == "rpo":
        return kw["eta"] * np.asarray(reward_gap, dtype=float) / kw["beta"]
    if kw["loss_type"] == "rebel":
        return kw["eta"] * np.asarray(reward_gap, dtype=float)
    return None


def gaps_by_reward_gap(h, reward_gap, method: str) -> list[dict]:
    """For each reward gap Δr of the monitor pairs: "n", the "median_h" of the log-ratio gaps h, the method's
    "target" h (`target_gap`, None for DPO) and "reached", the fraction of those pairs with h at or past it."""
    h, dr = np.asarray(h, dtype=float), np.asarray(reward_gap, dtype=float)
    if h.shape != dr.shape:
        raise ValueError(f"h {h.shape} and reward_gap {dr.shape} differ in shape")
    rows = []
    for g in np.unique(dr):
        sel = h[dr == g]
        target = target_gap(method, g)
        target = None if target is None else round(float(target), 9)  # 0.1 * 6 / 0.1 is 6.000000000000001
        rows.append({"reward_gap": float(g), "n": int(len(sel)), "median_h": float(np.median(sel)),
                     "target": target,
                     "reached": None if target is None else float(np.mean(sel >= target))})
    return rows


def policy_verdicts(runs: dict[str, dict], fraction: float = 0.25) -> list[str]:
    """Notebook 06's policy headline, as lines that read the same on every CPU: RPO and REBEL moved the chosen
    log-probs less than `fraction` as far as DPO, and ended with a KL to the reference below `fraction` of DPO's
    (the shipped runs sit near 0.1 of DPO's on both, far from the threshold)."""
    d = runs["DPO"]["final"]

    lines = []
    for name in ("RPO", "REBEL"):
        f = runs[name]["final"]
        lines.append(f"{name}: |Δ log π(y_c)| below {fraction:g} of DPO's: "
                     f"{yes_no(abs(f['chosen_delta']) < fraction * abs(d['chosen_delta']))}")
        lines.append(f"{name}: KL(π ‖ π_ref) below {fraction:g} of DPO's: {yes_no(f['kl'] < fraction * d['kl'])}")
    return lines


# --------------------------------------------------------------------------- the whole study
ALPHAS = (0.0, 0.3, 1.0, 3.0, 10.0)
BETAS = (0.03, 0.1, 0.3, 1.0)
TABLES = (None, "small", "large")
PARTS = ("dpo", "margins", "policy_margins")
KEYS = ("margin_experiment", "margins", "strength_counts", "machine", "dpo_experiment", "alpha_sweep", "beta_sweep",
        "policy_margin_experiment", "policy_margins")  # the order the file is written in


def study(parts=PARTS, seeds=(0, 1, 2), progress: bool = True) -> dict:
    base, tokenizer = load_base()
    out: dict = {}
    if "dpo" in parts:
        exp = DPOExperiment()
        monitor = sampled_pairs(base, tokenizer, exp.monitor_pairs, MONITOR_SEED)
        out["dpo_experiment"], out["alpha_sweep"], out["beta_sweep"] = asdict(exp), [], []
        for seed in seeds:
            train_pairs = sampled_pairs(base, tokenizer, exp.num_pairs, seed)
            for alpha in ALPHAS:
                loss_type = "dpo" if alpha == 0 else "dpo_nll"
                _, rec = run(loss_type, 0.1, alpha, seed, exp, base, tokenizer, train_pairs, monitor, progress)
                out["alpha_sweep"].append(rec)
            for beta in BETAS:
                if beta == 0.1:
                    continue  # the α = 0 run of the α sweep
                _, rec = run("dpo", beta, 0.0, seed, exp, base, tokenizer, train_pairs, monitor, progress)
                out["beta_sweep"].append(rec)
    if "margins" in parts:
        exp = MarginExperiment()
        out["margin_experiment"], out["margins"] = asdict(exp), []
        for seed in seeds:
            train_pairs, test_pairs = graded_pool_pairs(exp.num_train, seed), graded_pool_pairs(exp.num_test, 1000 + seed)
            out.setdefault("strength_counts", strength_counts(train_pairs))
            for table in TABLES:
                _, rec = run_margin(table, seed, exp, base, tokenizer, train_pairs, test_pairs, progress)
                out["margins"].append(rec)
    if "policy_margins" in parts:
        exp = policy_margin_experiment()
        train_pairs = sampled_pairs(base, tokenizer, exp.num_pairs, POLICY_SEED)
        monitor = sampled_pairs(base, tokenizer, exp.monitor_pairs, MONITOR_SEED)
        out["policy_margin_experiment"], out["policy_margins"] = asdict(exp), []
        for method in POLICY_METHODS:
            _, rec = run_policy_margin(method, POLICY_SEED, exp, base, tokenizer, train_pairs, monitor, progress)
            out["policy_margins"].append(rec)
    out["machine"] = machine()
    return out


def load(path: Path = PATH) -> dict:
    """The shipped study (rebuild it with `python -m toyenv.experiments.preference`)."""
    return common.load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=PARTS + ("all",), default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    parts = PARTS if args.part == "all" else (args.part,)
    start = time.perf_counter()
    result = study(parts, tuple(args.seeds))
    if args.out.exists() and args.part != "all":  # keep the other parts of an existing study
        result = {**common.load(args.out), **result}
    result = {**{k: result[k] for k in KEYS if k in result}, **result}  # the same key order however it was built
    common.save(result, args.out)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
