"""RL's Razor in the paper's own kind of setting: a small classifier, two tasks, many ways to learn the new one.

    python -m toyenv.experiments.razor_classifier      # both settings, writes toyenv/data/razor_classifier.json

The world is `toyenv.two_tasks`: 8×8 glyphs, a new task that stands in for ParityMNIST (name a label of the digit's
parity) and an old task that stands in for FashionMNIST, in two settings:

* "shapes": the old task's inputs are ten shapes the new task never shows (the paper's setting);
* "shared": the old task's inputs are the new task's own digit images, labelled 9 − digit (as the tiny GPT's old
  skill, the ranked rule, shares the new task's card deals).

In each setting one base model π0 is pretrained on both tasks, then every run in RUNS fine-tunes a copy on the new
task alone: SFT on five label distributions (one label per parity, two, any correct label, the digit itself, the
oracle π0(· | x, correct)) at several learning rates and epochs, and RL on the 0/1 reward with and without a KL
penalty and a baseline. For each run: new-task accuracy, forgetting (the old task's accuracy drop), and every
predictor of PREDICTORS, exactly (a softmax over 10 labels). About 20 seconds on 2 cores for both settings.
"""
from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .. import two_tasks as T
from ..checkpoint import DATA_DIR
from ..drift import weight_changes
from ..stats import predictor_table
from ..utils import progress_bar
from . import common
from .common import machine
from .razor import PREDICTORS  # the same candidates, under the same keys, as the tiny GPT's study

PATH = DATA_DIR / "razor_classifier.json"
SETTINGS = {"shapes": T.OLD_SHAPES, "shared": T.OLD_SHARED}
NOISE = 0.3                   # pixel noise: the base model reads about 2 digits in 3, and gets the parity right ~87%
FINETUNE_EXAMPLES = 1000      # the new task's fine-tuning images (none of them seen in pretraining)
EVAL_EXAMPLES = 2000          # held-out images of each task for every measurement
FISHER_EXAMPLES = 500         # the first held-out new-task images, on which π0's Fisher information is summed
PRETRAIN = T.PretrainConfig()
SAME_SCORE = 0.9              # "reached the same new-task score": greedy accuracy >= this on the new task

@dataclass
class ClassifierRun:
    """One way of learning the new task: a `T.SFTConfig` or a `T.RLConfig`."""

    name: str
    config: T.SFTConfig | T.RLConfig

    @property
    def method(self) -> str:
        return "sft" if isinstance(self.config, T.SFTConfig) else "rl"


def _sft_runs() -> list[ClassifierRun]:
    runs = []
    for target in T.TARGETS:
        for lr, epochs in ((3e-4, 1), (1e-3, 1), (1e-3, 3), (3e-3, 3), (3e-3, 10)):
            runs.append(ClassifierRun(f"SFT {target}, lr {lr:g}, {epochs} ep",
                                      T.SFTConfig(target=target, learning_rate=lr, epochs=epochs)))
    return runs


def _rl_runs() -> list[ClassifierRun]:
    runs = []
    for lr, steps in ((3e-4, 300), (1e-3, 100), (1e-3, 300), (3e-3, 300), (3e-3, 1000)):
        runs.append(ClassifierRun(f"RL lr {lr:g}, {steps} steps", T.RLConfig(learning_rate=lr, max_steps=steps)))
    runs.append(ClassifierRun("RL lr 0.003, 300 steps, KL beta 0.1",
                              T.RLConfig(learning_rate=3e-3, max_steps=300, beta=0.1)))
    runs.append(ClassifierRun("RL lr 0.003, 300 steps, KL beta 1",
                              T.RLConfig(learning_rate=3e-3, max_steps=300, beta=1.0)))
    runs.append(ClassifierRun("RL positive-only, lr 0.001, 300 steps",
                              T.RLConfig(learning_rate=1e-3, max_steps=300, baseline=False)))
    return runs


RUNS = _sft_runs() + _rl_runs()


@dataclass
class World:
    """One setting's data and base model: fine-tuning images, held-out images of both tasks, π0 and its Fisher."""

    old_task: str
    finetune: T.Data
    new_eval: T.Data
    old_eval: T.Data
    base: T.Classifier
    fisher: list


def world(setting: str, seed: int = 0) -> World:
    """Build setting `setting` ("shapes" or "shared"): data from seeds derived from `seed`, and π0 pretrained on
    PRETRAIN.examples images of each task."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {tuple(SETTINGS)}, got {setting!r}")
    old = SETTINGS[setting]
    base = T.pretrain([T.make_data(T.NEW, PRETRAIN.new_examples, seed, NOISE),
                       T.make_data(old, PRETRAIN.old_examples, seed, NOISE)], replace(PRETRAIN, seed=seed))
    new_eval = T.make_data(T.NEW, EVAL_EXAMPLES, seed + 1, NOISE)
    return World(old, T.make_data(T.NEW, FINETUNE_EXAMPLES, seed + 2, NOISE), new_eval,
                 T.make_data(old, EVAL_EXAMPLES, seed + 1, NOISE), base, T.fisher_diagonal(base, new_eval.x[:FISHER_EXAMPLES]))


def run(spec: ClassifierRun, w: World) -> T.Classifier:
    """The fine-tuned model of one run (π0 is left untouched)."""
    model = copy.deepcopy(w.base)
    if spec.method == "sft":
        return T.sft(model, w.finetune, spec.config, base=w.base)
    return T.rl(model, w.finetune, spec.config, base=w.base)


def measure(model: T.Classifier, w: World) -> dict:
    """A model's new-task accuracy, old-task accuracy and forgetting, and every predictor of PREDICTORS."""
    old = T.accuracy(model, w.old_eval)
    div = T.divergences(w.base, model, w.new_eval.x)
    return {"new_task": T.accuracy(model, w.new_eval), "old_task": old,
            "forgetting": T.accuracy(w.base, w.old_eval) - old, "kl": div["forward_kl"],
            "reverse_kl": div["reverse_kl"], "total_variation": div["total_variation"],
            **weight_changes(model, w.base, w.fisher),
            "activation_change": T.activation_change(model, w.base, w.new_eval.x)}


def setting_study(setting: str, runs=RUNS, progress: bool = True) -> dict:
    """Every run of `runs` in one setting: the base model's numbers, the oracle's two KLs, one record per run."""
    w = world(setting)
    out = {"old_task": w.old_task,
           "base": {"new_task": T.accuracy(w.base, w.new_eval), "old_task": T.accuracy(w.base, w.old_eval)},
           "oracle": T.oracle_kl(w.base, w.new_eval), "runs": []}
    for spec in progress_bar(runs, desc=f"setting {setting!r}", enabled=progress):
        record = {"name": spec.name, "method": spec.method, "config": asdict(spec.config),
                  **measure(run(spec, w), w)}
        out["runs"].append(record)
    return out


def same_score(record: dict) -> bool:
    """Did the run reach the common new-task score (greedy accuracy >= SAME_SCORE)?"""
    return record["new_task"] >= SAME_SCORE


def table(setting: dict) -> list[dict]:
    """`toyenv.stats.predictor_table` of one setting's forgetting, over all runs and over those that reached
    SAME_SCORE on the new task."""
    return predictor_table(setting["runs"], "forgetting", [k for k, _ in PREDICTORS],
                           {"all": lambda r: True, "same new-task score": same_score})


WEIGHT_SPACE = ("weight_l1", "weight_change", "weight_fisher")
PAPER_R2 = 0.96  # Shenfeld et al. (2025): R² of forgetting on KL(π0 ‖ π) in their ParityMNIST/FashionMNIST toy


def forgetting_by_method(setting: dict) -> dict:
    """Mean forgetting of the RL and of the SFT runs that reached SAME_SCORE: {"rl": (n, mean), "sft": (n, mean)}."""
    out = {}
    for method in ("rl", "sft"):
        values = [r["forgetting"] for r in setting["runs"] if r["method"] == method and same_score(r)]
        out[method] = (len(values), sum(values) / len(values) if values else float("nan"))
    return out


def headline(study: dict) -> list[str]:
    """The study's headline as verdict lines (numbers to 2 decimals, read from `study`, so that the shipped file
    reads the same on every CPU): per setting, KL's R² against the paper's and against the best weight-space
    predictor, over all runs and at the same new-task score, and RL against SFT at that score; then whether sharing
    the new task's inputs lowers KL's R², and the oracle's two KLs."""
    yes = common.yes_no
    lines = []
    for name, setting in study["settings"].items():
        cells = {(t["subset"], t["predictor"]): t for t in table(setting)}
        for subset, what in (("all", "all"), ("same new-task score", f"new-task accuracy >= {SAME_SCORE:g},")):
            kl = cells[subset, "kl"]
            weights = max(cells[subset, k]["r2"] for k in WEIGHT_SPACE)
            lines.append(f"classifier, {name}: {what} {kl['n']} runs: R² of forgetting on KL(π0 ‖ π) {kl['r2']:.2f} "
                         f"(the paper: {PAPER_R2}), best weight change {weights:.2f}; KL fits better: "
                         f"{yes(kl['r2'] > weights)}")
        (n_rl, rl), (n_sft, sft) = forgetting_by_method(setting).values()
        lines.append(f"classifier, {name}: at new-task accuracy >= {SAME_SCORE:g} RL forgets less than SFT "
                     f"({n_rl} RL, {n_sft} SFT runs): mean forgetting {rl:.2f} vs {sft:.2f}: {yes(rl < sft)}")
    r2 = {name: next(t["r2"] for t in table(s) if t["subset"] == "all" and t["predictor"] == "kl")
          for name, s in study["settings"].items()}
    lines.append(f"sharing the new task's inputs lowers KL's R² (shapes {r2['shapes']:.2f}, shared "
                 f"{r2['shared']:.2f}): {yes(r2['shared'] < r2['shapes'])}")
    oracle = study["settings"]["shapes"]["oracle"]
    lines.append(f"the oracle, shapes: KL(q ‖ π0) {oracle['kl_oracle_base']:.2f} nats, KL(π0 ‖ q) "
                 f"{oracle['kl_base_oracle']}; finite in one direction only: "
                 f"{yes(oracle['kl_oracle_base'] < float('inf') == oracle['kl_base_oracle'])}")
    return lines


def study(runs=RUNS, progress: bool = True) -> dict:
    t0 = time.perf_counter()
    out = {"settings": {name: setting_study(name, runs, progress) for name in SETTINGS}}
    out["noise"], out["pretrain"] = NOISE, asdict(PRETRAIN)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["machine"] = machine()
    return out


def load(path: Path = PATH) -> dict:
    """The shipped study (see `study`; rebuild it with `python -m toyenv.experiments.razor_classifier`)."""
    return common.load(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    result = study(progress=False)
    common.save(result, args.out)
    for name, s in result["settings"].items():
        for t in table(s):
            print(f"{name:<7} {t['subset']:<20} n={t['n']:<3} {t['predictor']:<18} R² {t['r2']:.3f}  "
                  f"ρ {t['spearman']:.3f}")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
