"""RL's Razor (Shenfeld et al. 2025) on the toy world: notebook 09's runs.

    python -m toyenv.experiments.razor            # every run in RUNS, writes toyenv/data/razor.json
    python -m toyenv.experiments.razor --only "RL lr 1e-4" "SFT lr 1e-3"

The *new* task is GeneralPoints under J/Q/K = 10. Two *old* skills, which the base model has and no run trains:

* the primary one, GeneralPoints under the other rule (J=11 Q=12 K=13): greedy accuracy on 1,000 held-out deals.
  Its prompts differ from the new task's only in the rule sentence, so it shares the new task's inputs the way the
  paper's old benchmarks share a language model's inputs;
* navigation (per-step accuracy, absolute and relative turns averaged): prompts that share nothing with the new task.

Each run starts from the shipped base model and trains on the new task only, with SFT or RL in several settings.
For each run we record

* the new-task score (greedy accuracy on held-out deals),
* forgetting of each old skill: the base model's accuracy minus the run's,
* KL(π0 ‖ π) on the new task: `toyenv.kl.completion_kl(base, model, new-task prompts)`, completions from π0,
* the rejected predictor: how far the weights moved, ‖θ − θ0‖₂.

The runs vary the optimizer (learning rate, steps), the SFT data (the expert answers the base model was pretrained
on; another annotator's equally correct answers, which the base model never imitated; the base model's own
*correct* samples, the KL-minimal distribution that solves the task, "oracle SFT"; an RL policy's samples) and the
RL algorithm (RLOO with negative rewards, with a KL penalty, longer, and positive-only REINFORCE on 0/1 rewards,
which is on-policy SFT on the policy's own correct samples). About 8 minutes on a 2-core CPU for all of them.
"""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import load_base
from ..checkpoint import DATA_DIR
from ..drift import weight_changes
from ..envs import general_points as gp
from ..envs import navigation as nav
from ..kl import completion_kl, completion_tv
from ..model import GPT, complete, next_token_logprobs
from ..stats import predictor_table as stats_table
from ..stats import r_squared, spearman
from ..tasks import general_points_task
from ..tokenizer import Tokenizer
from ..trainers import rl, sft
from ..trainers.rl import RLConfig
from ..trainers.sft import SFTConfig
from ..utils import eval_mode
from . import common
from .common import machine

PATH = DATA_DIR / "razor.json"
EVAL_SEED = 6
NEW_RULE = "ten"
OLD_RULE = "ranked"
OLD_SKILL_DEALS = 1000
SFT_DATA = ("expert", "other_annotator", "oracle", "rl_samples")
SFT_SEED = 2000  # the deals SFT trains on are dealt with SFT_SEED + the run's seed
# What every run of a method shares; `run` sets each run's steps, learning rate and seed (and RazorRun.rl's fields).
SFT_CONFIG = SFTConfig(batch_size=32, warmup_steps=10, min_lr_ratio=1.0)
RL_CONFIG = RLConfig(algorithm="rloo", num_prompts=8, num_generations=8, max_new_tokens=20)


@dataclass
class RazorRun:
    """One way of learning the new task: `method` "sft" (with `data` one of SFT_DATA) or "rl"."""

    name: str
    method: str
    learning_rate: float
    steps: int
    data: str = "expert"
    rl: dict = field(default_factory=dict)   # RL_CONFIG's fields this run changes (algorithm, beta, ...)


RUNS = [
    RazorRun("RL lr 1e-4", "rl", 1e-4, 60),
    RazorRun("RL lr 3e-4", "rl", 3e-4, 60),
    RazorRun("RL lr 1e-4, 150 steps", "rl", 1e-4, 150),
    RazorRun("RL lr 1e-4, KL beta 0.1", "rl", 1e-4, 60, rl={"beta": 0.1}),
    RazorRun("RL positive-only lr 1e-4", "rl", 1e-4, 60, rl={"algorithm": "reinforce"}),
    RazorRun("SFT lr 1e-4, 20 steps", "sft", 1e-4, 20),
    RazorRun("SFT lr 1e-4", "sft", 1e-4, 150),
    RazorRun("SFT lr 3e-4", "sft", 3e-4, 150),
    RazorRun("SFT lr 1e-3", "sft", 1e-3, 150),
    RazorRun("SFT lr 3e-4, 2x steps", "sft", 3e-4, 300),
    RazorRun("SFT other annotator lr 1e-4", "sft", 1e-4, 150, data="other_annotator"),
    RazorRun("SFT other annotator lr 3e-4, 2x", "sft", 3e-4, 300, data="other_annotator"),
    RazorRun("oracle SFT lr 3e-4", "sft", 3e-4, 150, data="oracle"),
    RazorRun("SFT on RL samples lr 3e-4", "sft", 3e-4, 150, data="rl_samples"),
]
SAMPLES_FROM = "RL lr 1e-4"  # the RL run whose correct samples "SFT on RL samples" imitates


def new_task_prompts(n: int = 128) -> list[str]:
    prompts, _ = general_points_task(NEW_RULE).sample_prompts(np.random.default_rng([EVAL_SEED, 11]), n)
    return prompts


def new_task_score(model: GPT, tokenizer: Tokenizer, n: int = 300) -> float:
    return gp.evaluate(model, tokenizer, NEW_RULE, n_episodes=n, seed=EVAL_SEED)["accuracy"]


def old_skill(model: GPT, tokenizer: Tokenizer, n: int = OLD_SKILL_DEALS) -> float:
    """The primary old skill: greedy accuracy on GeneralPoints under J=11 Q=12 K=13, which no run trains."""
    return gp.evaluate(model, tokenizer, OLD_RULE, n_episodes=n, seed=EVAL_SEED)["accuracy"]


def navigation_skill(model: GPT, tokenizer: Tokenizer, n_routes: int = 40) -> float:
    """The second old skill: navigation per-step accuracy, absolute and relative turns averaged."""
    return float(np.mean([nav.evaluate(model, tokenizer, kind, n_episodes=n_routes, seed=EVAL_SEED)["per_step_accuracy"]
                          for kind in ("absolute", "relative")]))


def old_skills(model: GPT, tokenizer: Tokenizer) -> dict:
    return {"ranked": old_skill(model, tokenizer), "navigation": navigation_skill(model, tokenizer)}


def sft_hands(n: int, seed: int = 0) -> list[list[str]]:
    """The new task's deals that SFT trains on (the same for the expert and the other annotator)."""
    return gp.expert_hands(n, NEW_RULE, seed=SFT_SEED + seed)


def expert_dataset(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`sft_hands(n, seed)` with the expert's answers: the style the base model was pretrained on."""
    return gp.expert_dataset(n, NEW_RULE, seed=SFT_SEED + seed)


def other_annotator_dataset(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """The expert's deals answered by another annotator: among the solutions with the fewest parentheses, the
    lexicographically *largest* instead of the smallest. As correct and as regular as the expert's answers, but a
    style the base model never saw (it differs from the expert's on 99% of deals)."""
    out = []
    for cards in sft_hands(n, seed):
        solutions = gp.solve(gp.hand_values(cards, NEW_RULE))
        shortest = [s for s in solutions if len(s) == len(solutions[0])]
        out.append((gp.make_prompt(cards, NEW_RULE), f"{shortest[-1]}=24"))
    return out


@torch.no_grad()
def correct_samples(model: GPT, tokenizer: Tokenizer, n: int, seed: int = 0, per_prompt: int = 8,
                    max_new_tokens: int = 20) -> list[tuple[str, str]]:
    """(prompt, completion) pairs sampled from `model` on fresh deals and kept when the verifier accepts them.

    From the base model this is rejection sampling from π0(y | x, correct), the distribution that solves the task
    with the least KL from π0 (the "oracle" of RL's Razor); from an RL policy, its own successful behaviour."""
    task = general_points_task(NEW_RULE)
    rng = np.random.default_rng([seed, 23])
    gen = torch.Generator(device=model.device).manual_seed(seed)
    out: list[tuple[str, str]] = []
    for _ in range(50):
        prompts, infos = task.sample_prompts(rng, 64)
        completions = complete(model, tokenizer, prompts, max_new_tokens, generator=gen,
                               num_return_sequences=per_prompt)
        for i, c in enumerate(completions):
            prompt, info = prompts[i // per_prompt], infos[i // per_prompt]
            if gp.verify(info["cards"], c, NEW_RULE).correct:
                out.append((prompt, c))
        if len(out) >= n:
            break
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} correct samples found, wanted {n}")
    return out[:n]


def run(spec: RazorRun, base: GPT, tokenizer: Tokenizer, seed: int = 0, progress: bool = True,
        rl_policy: GPT | None = None) -> GPT:
    """The fine-tuned model of one run (the base model is left untouched)."""
    model = copy.deepcopy(base)
    if spec.method == "sft":
        if spec.data == "expert":
            data = expert_dataset(4000, seed)
        elif spec.data == "other_annotator":
            data = other_annotator_dataset(4000, seed)
        elif spec.data == "oracle":
            data = correct_samples(base, tokenizer, 2000, seed)
        elif spec.data == "rl_samples":
            if rl_policy is None:
                raise ValueError("data='rl_samples' needs rl_policy (the RL run whose samples to imitate)")
            data = correct_samples(rl_policy, tokenizer, 2000, seed)
        else:
            raise ValueError(f"unknown data {spec.data!r}")
        cfg = replace(SFT_CONFIG, max_steps=spec.steps, learning_rate=spec.learning_rate, seed=seed)
        sft.train(model, data, cfg, tokenizer, progress=progress, desc=spec.name)
    elif spec.method == "rl":
        cfg = replace(RL_CONFIG, max_steps=spec.steps, learning_rate=spec.learning_rate, seed=seed, **spec.rl)
        task = general_points_task(NEW_RULE)
        if cfg.algorithm == "reinforce":  # positive-only: reward 1 for a correct answer, 0 otherwise
            task = task.with_reward(lambda p, c, infos: [float(gp.verify(i["cards"], x, NEW_RULE).correct)
                                                         for x, i in zip(c, infos)], name="correct = 1, else 0")
        rl.train(model, task, cfg, tokenizer, ref=base, progress=progress, desc=spec.name)
    else:
        raise ValueError(f"unknown method {spec.method!r}")
    return model


def new_task_kl(base: GPT, model: GPT, tokenizer: Tokenizer, seed: int = 0) -> float:
    """E_{x ~ new task} KL(π0(·|x) ‖ π(·|x)) in nats per completion, on completions sampled from the base model."""
    return float(completion_kl(base, model, new_task_prompts(), tokenizer, max_new_tokens=20, seed=seed).mean())


def _base_samples(base: GPT, tokenizer: Tokenizer, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, generated mask, attention mask) of one completion per new-task prompt, sampled from π0 (seeded)."""
    ids = [tokenizer.encode(p, bos=True) for p in new_task_prompts()]
    with eval_mode(base), torch.no_grad():
        tokens, generated = base.generate(ids, 20, generator=torch.Generator(device=base.device).manual_seed(seed))
    return tokens, generated, (tokens != tokenizer.pad_id) | generated


def fisher_diagonal(base: GPT, tokenizer: Tokenizer, seed: int = 0) -> list[torch.Tensor]:
    """The diagonal of π0's Fisher information on the new task, from samples: the mean over new-task prompts x of
    (∂ log π0(y|x) / ∂θ)², one completion y ~ π0 per prompt, one tensor per parameter (`base.parameters()` order).
    (The classifier's is exact; here the completions are too many to sum over.)"""
    tokens, generated, attention = _base_samples(base, tokenizer, seed)
    total = [torch.zeros_like(p) for p in base.parameters()]
    with eval_mode(base):
        for i in range(len(tokens)):
            base.zero_grad(set_to_none=True)
            picked, _ = next_token_logprobs(base, tokens[i:i + 1], attention[i:i + 1])
            (picked * generated[i:i + 1, 1:]).sum().backward()
            for t, p in zip(total, base.parameters()):
                t += p.grad.detach() ** 2
    base.zero_grad(set_to_none=True)
    return [t / len(tokens) for t in total]


@torch.no_grad()
def activation_change(model: GPT, base: GPT, tokenizer: Tokenizer, seed: int = 0) -> float:
    """Mean ‖h − h0‖₂ of the last hidden state (what the LM head reads) at the positions that predict the generated
    tokens of π0's new-task completions."""
    tokens, generated, attention = _base_samples(base, tokenizer, seed)
    with eval_mode(model, base):
        gap = (model.features(tokens, attention) - base.features(tokens, attention)).norm(dim=-1)[:, :-1]
    where = generated[:, 1:].to(gap.dtype)  # position t predicts token t+1
    return float((gap * where).sum() / where.sum())


def measure(spec: RazorRun, model: GPT, base: GPT, tokenizer: Tokenizer, base_old: dict,
            fisher: list[torch.Tensor] | None = None, seed: int = 0) -> dict:
    """One run's numbers; `base_old` is `old_skills(base)`. "forgetting" is the primary old skill's drop.

    Without `fisher`: the scores, forgetting, KL(π0 ‖ π) and the weight change, what notebook 09's live runs compare
    with their shipped twins. With `fisher` (`fisher_diagonal(base, tokenizer)`), as the study records it: every
    predictor of PREDICTORS, adding KL(π ‖ π0) on π's new-task completions, total variation and activation change
    on π0's, and the L1 and Fisher-weighted weight changes."""
    kl = new_task_kl(base, model, tokenizer, seed)
    old = old_skills(model, tokenizer)
    record = {"name": spec.name, "method": spec.method, "data": spec.data, "learning_rate": spec.learning_rate,
              "steps": spec.steps, "new_task": new_task_score(model, tokenizer), "old_skill": old["ranked"],
              "forgetting": base_old["ranked"] - old["ranked"], "old_navigation": old["navigation"],
              "forgetting_navigation": base_old["navigation"] - old["navigation"], "kl": kl}
    if fisher is None:
        record["weight_change"] = weight_changes(model, base)["weight_change"]
        return record
    prompts = new_task_prompts()
    record["reverse_kl"] = float(completion_kl(model, base, prompts, tokenizer, max_new_tokens=20, seed=seed).mean())
    record["total_variation"] = float(completion_tv(base, model, prompts, tokenizer, max_new_tokens=20,
                                                    seed=seed).mean())
    record.update(weight_changes(model, base, fisher))
    record["activation_change"] = activation_change(model, base, tokenizer, seed)
    return record


LEARNED_MARGIN = 0.05  # a run "learned the new task" if it scores at least this much above the base model


def learned(record: dict, base_new_task: float) -> bool:
    """Did the run learn the new task: new-task score >= the base model's + LEARNED_MARGIN (5 points)."""
    return record["new_task"] >= base_new_task + LEARNED_MARGIN


SKILLS = (("ranked rule", "forgetting"), ("navigation", "forgetting_navigation"))  # (old skill, its forgetting key)

# (key in a run's record, what it measures): the candidate predictors of forgetting that both razor studies record
# (this one and `razor_classifier`), after the paper's own list and a public replication's table.
PREDICTORS = (
    ("kl", "KL(π0 ‖ π)"),
    ("reverse_kl", "KL(π ‖ π0)"),
    ("total_variation", "total variation"),
    ("weight_l1", "weight change L1"),
    ("weight_change", "weight change L2"),
    ("weight_fisher", "Fisher-weighted"),
    ("activation_change", "activation change"),
)


def predictors(rows: list[dict], forgot: str = "forgetting") -> dict:
    """How well KL(π0 ‖ π) and weight change predict the forgetting `forgot` over `rows` (runs of the study):
    straight-line R² on KL, on log KL and on weight change, and Spearman ρ (any monotone function) on each."""
    y = [r[forgot] for r in rows]
    kl, w = [r["kl"] for r in rows], [r["weight_change"] for r in rows]
    return {"r2_kl": r_squared(kl, y), "r2_log_kl": r_squared(np.log(kl), y), "r2_weight_change": r_squared(w, y),
            "spearman_kl": spearman(kl, y), "spearman_weight_change": spearman(w, y)}


def predictor_table(study: dict) -> list[dict]:
    """`predictors` for each old skill, over all runs and over the runs that learned the new task: one dict per
    row with "skill", "subset" ("all" / "learned"), "n" and the five numbers."""
    base_new = study["base"]["new_task"]
    subsets = (("all", study["runs"]), ("learned", [r for r in study["runs"] if learned(r, base_new)]))
    return [{"skill": skill, "subset": subset, "n": len(rows), **predictors(rows, forgot)}
            for skill, forgot in SKILLS for subset, rows in subsets]


def every_predictor(study: dict, skill: str = "ranked rule") -> list[dict]:
    """`toyenv.stats.predictor_table` of one old skill's forgetting against every predictor of PREDICTORS, over all
    runs and over the runs that learned the new task (the paper compares runs at similar new-task scores)."""
    base_new = study["base"]["new_task"]
    forgot = dict(SKILLS)[skill]
    return stats_table(study["runs"], forgot, [k for k, _ in PREDICTORS],
                       {"all": lambda r: True, "learned": lambda r: learned(r, base_new)})


def format_predictors(tables: dict[str, list[dict]], subset: str = "all") -> str:
    """Predictor tables (`every_predictor`, `razor_classifier.table`) side by side as text, for one subset of runs
    ("all", or the runs at a common new-task score: each table's second subset): one line per predictor of
    PREDICTORS, one column pair (R², Spearman ρ) per table, the best of each column marked with *."""
    picked = {}
    for name, rows in tables.items():
        subsets = list(dict.fromkeys(t["subset"] for t in rows))
        want = subsets[0] if subset == "all" else subsets[-1]
        picked[name] = {t["predictor"]: t for t in rows if t["subset"] == want}
    lines = [f"{'predictor':<20}" + "".join(f"{name:>22.22}" for name in picked),
             f"{'':<20}" + "".join(f"{'n=' + str(p['kl']['n']):>6} {'R²':>7} {'ρ':>7}" for p in picked.values())]
    best = {(name, stat): max(t[stat] for t in p.values() if t[stat] == t[stat])
            for name, p in picked.items() for stat in ("r2", "spearman")}
    for key, label in PREDICTORS:
        row = f"{label:<20}"
        for name, p in picked.items():
            t = p[key]
            r2_mark = "*" if t["r2"] == best[name, "r2"] else " "
            rho_mark = "*" if t["spearman"] == best[name, "spearman"] else " "
            row += f"{'':>6} {t['r2']:6.2f}{r2_mark} {t['spearman']:6.2f}{rho_mark}"
        lines.append(row)
    return "\n".join(lines)


def forgetting_by_method(study: dict) -> dict:
    """Forgetting of each old skill by method ("rl", "sft"), over all runs and over those that learned the new
    task: {method: {subset: {"n", "mean", "max"} for "forgetting" and "forgetting_navigation"}}."""
    base_new = study["base"]["new_task"]
    out = {}
    for method in ("rl", "sft"):
        runs = [r for r in study["runs"] if r["method"] == method]
        out[method] = {}
        for subset, pick in (("all", runs), ("learned", [r for r in runs if learned(r, base_new)])):
            out[method][subset] = {"n": len(pick)}
            for _, forgot in SKILLS:
                values = [r[forgot] for r in pick]
                out[method][subset][forgot] = {"mean": float(np.mean(values)), "max": float(np.max(values))}
    return out


def headline(study: dict) -> list[str]:
    """The study's headline as verdict lines that read the same on every CPU (computed from the shipped file; fits
    to 2 decimals, mean forgetting to 3): the ranked rule's straight-line R² and Spearman ρ on KL and on weight
    change, and "RL forgets less than SFT" on both old skills, by mean forgetting over all runs and over those that
    learned the new task."""
    rows = {t["subset"]: t for t in predictor_table(study) if t["skill"] == "ranked rule"}
    a = rows["all"]
    yes = lambda ok: "yes" if ok else "NO"  # noqa: E731
    lines = [
        f"ranked rule, all {a['n']} runs: straight-line R² on KL {a['r2_kl']:.2f}, on weight change "
        f"{a['r2_weight_change']:.2f}; weight change fits a line better: {yes(a['r2_weight_change'] > a['r2_kl'])}",
        f"ranked rule, all {a['n']} runs: R² on log KL {a['r2_log_kl']:.2f}; Spearman ρ on KL {a['spearman_kl']:.2f}, "
        f"on weight change {a['spearman_weight_change']:.2f}; KL ranks the runs better: "
        f"{yes(a['spearman_kl'] > a['spearman_weight_change'])}",
    ]
    by = forgetting_by_method(study)
    for subset, what in (("all", "all runs"), ("learned", "runs that learned the new task")):
        rl_runs, sft_runs = by["rl"][subset], by["sft"][subset]
        for skill, forgot in SKILLS:
            r, s = rl_runs[forgot]["mean"], sft_runs[forgot]["mean"]
            lines.append(f"RL forgets less than SFT, {skill}, {what} ({rl_runs['n']} RL, {sft_runs['n']} SFT): "
                         f"mean forgetting {r:+.3f} vs {s:+.3f}: {yes(r < s)}")
    return lines


def study(runs=RUNS, progress: bool = True) -> dict:
    base, tok = load_base()
    t0 = time.perf_counter()
    base_old = old_skills(base, tok)
    fisher = fisher_diagonal(base, tok)
    out = {"base": {"new_task": new_task_score(base, tok), "old_skill": base_old["ranked"],
                    "old_navigation": base_old["navigation"]}, "runs": []}
    policies: dict[str, GPT] = {}
    for spec in runs:
        start = time.perf_counter()
        rl_policy = None
        if spec.data == "rl_samples":  # imitate the samples of the RL run with the same learning-rate regime
            if SAMPLES_FROM not in policies:
                policies[SAMPLES_FROM] = run(next(r for r in RUNS if r.name == SAMPLES_FROM), base, tok,
                                             progress=progress)
            rl_policy = policies[SAMPLES_FROM]
        model = run(spec, base, tok, progress=progress, rl_policy=rl_policy)
        if spec.method == "rl":
            policies[spec.name] = model
        record = measure(spec, model, base, tok, base_old, fisher)
        record["seconds"] = round(time.perf_counter() - start, 1)
        out["runs"].append(record)
        print(f"{spec.name:<32} new {record['new_task']:.3f}  forgetting {record['forgetting']:+.3f} "
              f"(navigation {record['forgetting_navigation']:+.3f})  KL {record['kl']:.3f}  "
              f"|dθ| {record['weight_change']:.2f}  {record['seconds']:.0f} s", flush=True)
    rows = out["runs"]
    out["r2"] = {skill: {key: r_squared([r[key] for r in rows], [r[forgot] for r in rows])
                         for key in ("kl", "weight_change")}
                 for skill, forgot in (("ranked", "forgetting"), ("navigation", "forgetting_navigation"))}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["machine"] = machine()
    return out


def load(path: Path = PATH) -> dict:
    """The shipped study (see `study`; rebuild it with `python -m toyenv.experiments.razor`)."""
    return common.load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", help="names of runs in RUNS")
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    runs = [r for r in RUNS if not args.only or r.name in args.only]
    result = study(runs, progress=False)
    common.save(result, args.out)
    for skill, r2 in result["r2"].items():
        print(f"R² forgetting ({skill}) ~ KL: {r2['kl']:.3f};  ~ weight change: {r2['weight_change']:.3f}")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
