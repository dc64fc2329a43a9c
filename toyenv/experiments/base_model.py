"""Build the course's base model: `python -m toyenv.experiments.base_model`.

Real post-training starts from a pretrained LLM that is decent at many things and
great at none. The course's stand-in is a tiny GPT trained with SFT on a mixture of
both toy tasks under *both* of their rules, the rule stated in each prompt:

    GeneralPoints, J/Q/K = 10 (ID)      GeneralPoints, J=11 Q=12 K=13 (OOD)
    Navigation, absolute turns (ID)     Navigation, relative turns (OOD)

Training stops early, on purpose, so the base model has partial skill everywhere:
improvable in distribution, mediocre out of distribution, which is where Chu et al.
(2025) start. Everything is seeded; the same machine and PyTorch build give the same
weights. The checkpoint and its measured metrics land in `toyenv/data/`, where
`toyenv.load_base()` finds them, with the verdict on each answer behind them; a test replays the first
100 episodes of each task from the weights and compares them answer by answer.

    python -m toyenv.experiments.base_model                 # rebuild toyenv/data/base.pt and base_metrics.json
    python -m toyenv.experiments.base_model --out /tmp/b    # somewhere else
    python -m toyenv.experiments.base_model --eval-only     # re-measure the shipped checkpoint

Like every study module it has `PATH` (the checkpoint), `run` (train one base model), `study` (train and measure
it), `load` (the shipped model) and `main`.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..checkpoint import DATA_DIR, CheckpointError, load_checkpoint, save_checkpoint
from ..envs import general_points as gp
from ..envs import navigation as nav
from ..model import GPT, GPTConfig
from ..tokenizer import Tokenizer
from ..trainers import sft
from ..trainers.sft import SFTConfig
from ..utils import device, seed_everything
from ..validation import check_int

PATH = DATA_DIR / "base.pt"
METRICS_PATH = DATA_DIR / "base_metrics.json"
EVAL_SEED = 0  # evaluation deals/routes; training data uses seeds >= 100 (disjoint streams)
EVAL_EPISODES = 500


@dataclass
class PretrainConfig:
    seed: int = 0
    # (prompt, answer) pairs per component. Navigation counts routes; each yields ~6-12 step examples.
    # About half the training tokens go to each game (a navigation example is twice as long), split evenly
    # between the two rules: each rule ends up partly learned.
    gp_ten: int = 14_000
    gp_ranked: int = 14_000
    nav_absolute: int = 1_000
    nav_relative: int = 1_000
    # A constant learning rate after warmup (min_lr_ratio=1): the weights after k steps do not depend on
    # max_steps, so the stopping step could be chosen from one long run's evaluations.
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(
        max_steps=1750, batch_size=64, learning_rate=1e-3, warmup_steps=100, min_lr_ratio=1.0, seed=0))
    model: GPTConfig = field(default_factory=GPTConfig)

    def __post_init__(self) -> None:
        check_int(self, "seed")
        check_int(self, ("gp_ten", "gp_ranked", "nav_absolute", "nav_relative"), minimum=0)
        if not isinstance(self.sft, SFTConfig):
            raise ValueError(f"PretrainConfig.sft must be an SFTConfig, got {self.sft!r}")
        if not isinstance(self.model, GPTConfig):
            raise ValueError(f"PretrainConfig.model must be a GPTConfig, got {self.model!r}")


def mixture(cfg: PretrainConfig) -> list[tuple[str, str]]:
    """The pretraining data: every component's expert pairs, shuffled together (seeded)."""
    data = (
        gp.expert_dataset(cfg.gp_ten, "ten", seed=100 + cfg.seed)
        + gp.expert_dataset(cfg.gp_ranked, "ranked", seed=200 + cfg.seed)
        + nav.expert_dataset(cfg.nav_absolute, "absolute", seed=300 + cfg.seed)
        + nav.expert_dataset(cfg.nav_relative, "relative", seed=400 + cfg.seed)
    )
    random.Random(cfg.seed).shuffle(data)
    return data


def measure(model: GPT, tokenizer: Tokenizer, n_episodes: int = EVAL_EPISODES, seed: int = EVAL_SEED,
            return_outcomes: bool = False) -> dict | tuple[dict, dict]:
    """Greedy ID/OOD metrics on held-out episodes: the numbers the base model's JSON records.

    With `return_outcomes`, also (metrics, outcomes): the verdict behind each number, as the JSON's "outcomes" records
    them, one string per task of "1" (right) and "0" (wrong), one character per deal ("general_points_ten", ...) or
    per route step ("navigation_absolute", ...), in the order played. The first n episodes of a longer measurement
    are the same episodes, so a test can replay a few of them and compare them answer by answer."""
    r, outcomes = {}, {}
    for rule in ("ten", "ranked"):
        m = gp.evaluate(model, tokenizer, rule, n_episodes=n_episodes, seed=seed)
        r[f"general_points_{rule}"], outcomes[f"general_points_{rule}"] = m["accuracy"], _bits(m["correct"])
    for kind in ("absolute", "relative"):
        m = nav.evaluate(model, tokenizer, kind, n_episodes=n_episodes, seed=seed)
        r[f"navigation_{kind}_per_step"] = m["per_step_accuracy"]
        r[f"navigation_{kind}_route_success"] = m["route_success"]
        outcomes[f"navigation_{kind}"] = _bits(m["correct"])
    metrics = {k: round(v, 4) for k, v in r.items()}
    return (metrics, outcomes) if return_outcomes else metrics


def _bits(correct: list[bool]) -> str:
    return "".join("1" if ok else "0" for ok in correct)


def run(cfg: PretrainConfig | None = None, progress: bool = True) -> GPT:
    """Train a fresh GPT on the mixture; deterministic given `cfg.seed` on a given machine and torch build."""
    cfg = cfg or PretrainConfig()
    seed_everything(cfg.seed)
    data = mixture(cfg)
    model = GPT(cfg.model)
    sft.train(model, data, cfg.sft, progress=progress, desc="pretraining the base model")
    return model


def study(cfg: PretrainConfig | None = None, episodes: int = EVAL_EPISODES, progress: bool = True
          ) -> tuple[GPT, dict]:
    """Train the base model (`run`) and measure it: (model, the metadata `save` writes with it)."""
    cfg = cfg or PretrainConfig()
    t0 = time.perf_counter()
    model = run(cfg, progress)
    return model, describe(model, cfg, time.perf_counter() - t0, episodes)


def describe(model: GPT, cfg: PretrainConfig, train_seconds: float, episodes: int = EVAL_EPISODES) -> dict:
    """The metadata of a trained base model: its measured metrics, how they were measured, how it was built, and the
    verdict on each answer behind the metrics ("outcomes", kept out of the checkpoint by `save`)."""
    metrics, outcomes = measure(model, Tokenizer(), episodes, return_outcomes=True)
    return {
        "metrics": metrics,
        "eval": {"seed": EVAL_SEED, "episodes": episodes, "decoding": "greedy"},
        "train": {"seconds": round(train_seconds, 1), "config": asdict(cfg)},
        "built_with": {"torch": str(torch.__version__), "python": platform.python_version(),
                       "threads": torch.get_num_threads(), "machine": platform.machine()},
        "outcomes": outcomes,
    }


def save(model: GPT, meta: dict, out: Path = DATA_DIR) -> None:
    """Write `out/base.pt` (the model with `meta`, less its per-answer outcomes) and `out/base_metrics.json`
    (`meta`)."""
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / PATH.name, model, Tokenizer(), **{k: v for k, v in meta.items() if k != "outcomes"})
    (out / METRICS_PATH.name).write_text(json.dumps(meta, indent=2) + "\n")


def load(path: Path = PATH, map_location=None) -> tuple[GPT, Tokenizer]:
    """The shipped base model and its tokenizer, in eval mode on `map_location` (default: `toyenv.device()`)."""
    if not Path(path).exists():
        raise CheckpointError(f"the base model {path} is missing; rebuild it with "
                              "`python -m toyenv.experiments.base_model`")
    model, tokenizer, _ = load_checkpoint(path, map_location=map_location or device())
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toyenv.experiments.base_model", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DATA_DIR, help="folder for base.pt and base_metrics.json")
    ap.add_argument("--steps", type=int, default=None, help="override the number of SFT steps")
    ap.add_argument("--eval-only", action="store_true", help="measure the checkpoint in --out, do not train")
    ap.add_argument("--episodes", type=int, default=EVAL_EPISODES, help="held-out episodes per metric")
    args = ap.parse_args(argv)

    if args.eval_only:
        model, tok, _ = load_checkpoint(args.out / "base.pt")
        print(json.dumps(measure(model, tok, args.episodes), indent=2))
        return 0
    cfg = PretrainConfig()
    if args.steps:
        cfg.sft.max_steps = args.steps
    model, meta = study(cfg, args.episodes)
    save(model, meta, args.out)
    print(json.dumps(meta["metrics"], indent=2))
    path = args.out / PATH.name
    print(f"trained in {meta['train']['seconds'] / 60:.1f} min; wrote {path} ({path.stat().st_size / 1e6:.1f} MB) "
          f"and {METRICS_PATH.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
