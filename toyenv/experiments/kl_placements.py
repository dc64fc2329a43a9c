"""Where the KL estimate goes, measured on the tiny GPT: notebook 02's seven placements at the same β.

    python -m toyenv.experiments.kl_placements      # 16 RL runs, writes toyenv/data/kl_placements.json (about 9 min)

Notebook 02's atlas computes, exactly, what each placement of a KL estimator does to the expected gradient. This
study measures what that does to training: notebook 03's setup (`kl_penalty.CONFIG`: RLOO from the base model
against the proxy reward model, 80 steps, the fixed evaluation set), β = 1, and the penalty placed seven ways
(`PLACEMENTS`):

* k1, k2 or k3 in the reward: R = r − β Σ_t k_t, no gradient through k (PPO and RLOO use k1);
* k1, k2 or k3 as a loss: + β · mean_t k_t, differentiated (GRPO uses k3);
* k3 times π/π_old as a loss, the ratio differentiated (`use_bias_correction_kl`; DeepSeek-V3.2, TRL);

and one bug that shipped in public code (notebook 02's gallery), recreated here: k3 as a loss with its ratio upside
down, r = π/π_ref (`BUGS`; `flipped_k3` swaps it in for k3 for the length of a run).

Two seeds each. Every run records the exact reverse KL to the base model per step (`rl.train`'s "kl"), the proxy
reward of its rollouts, its gradient norms, and the final gold and proxy rewards on the evaluation set. A live run
against its shipped twin agrees within `kl_penalty.TWIN_RTOL` / `TWIN_ATOL` (bit for bit on the machine that built
the file).
"""
from __future__ import annotations

import argparse
import contextlib
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import kl
from ..checkpoint import DATA_DIR
from ..trainers.rl import RLConfig
from . import common, twins
from . import kl_penalty as K
from .common import machine

PATH = DATA_DIR / "kl_placements.json"
BETA = 1.0
SEEDS = (0, 1)
CONFIG = replace(K.CONFIG, eval_every=0)  # only the final evaluation: the comparison is at the end of training


@dataclass(frozen=True)
class Placement:
    """One way of placing the KL estimate, with the gradient notebook 02's atlas finds for it."""

    name: str
    kl_in: str
    kl_estimator: str
    use_bias_correction_kl: bool = False
    expected_gradient: str = ""
    flipped_ratio: bool = False  # the bug: k3 with r = π/π_ref (only through `flipped_k3`; no trainer option)

    def config(self, config: RLConfig = CONFIG, seed: int = 0) -> RLConfig:
        return replace(config, beta=BETA, kl_in=self.kl_in, kl_estimator=self.kl_estimator,
                       use_bias_correction_kl=self.use_bias_correction_kl, seed=seed)


PLACEMENTS = (
    Placement("k1 in the reward", "reward", "k1", expected_gradient="∇KL(π‖ref)"),
    Placement("k2 in the reward", "reward", "k2", expected_gradient="biased"),
    Placement("k3 in the reward", "reward", "k3", expected_gradient="biased"),
    Placement("k1 as a loss", "loss", "k1", expected_gradient="0"),
    Placement("k2 as a loss", "loss", "k2", expected_gradient="∇KL(π‖ref)"),
    Placement("k3 as a loss", "loss", "k3", expected_gradient="∇KL(ref‖π)"),
    Placement("k3 × π/π_old as a loss", "loss", "k3", True, expected_gradient="∇KL(π‖ref)"),
)


BUGS = (
    Placement("k3, ratio flipped, as a loss (bug)", "loss", "k3", expected_gradient="∇½χ²(π‖ref)",
              flipped_ratio=True),
)


@contextlib.contextmanager
def flipped_k3():
    """Recreates a bug for the length of a `with` block: `toyenv.kl`'s "k3" computes (r − 1) − log r with
    r = π/π_ref instead of π_ref/π, as public GRPO code (and the RLHF book's companion code) once did. The trainer
    looks the estimator up by name at the start of each run, so a run started inside the block uses the bug."""
    right = kl.ESTIMATORS["k3"]
    kl.ESTIMATORS["k3"] = lambda logp, logq: right(logq, logp)
    try:
        yield
    finally:
        kl.ESTIMATORS["k3"] = right


def run(placement: Placement, seed: int = 0, config: RLConfig = CONFIG, setup_: K.Setup | None = None,
        progress: bool = True) -> dict:
    """One run of the study: `rl.train`'s history plus "final" (gold and proxy on the evaluation set)."""
    S = setup_ or K.setup()
    cfg = placement.config(config, seed)
    with flipped_k3() if placement.flipped_ratio else contextlib.nullcontext():
        return K.run(cfg.beta, cfg.kl_in, config=cfg, setup_=S, progress=progress, kl_estimator=cfg.kl_estimator,
                     desc=f"{placement.name}, seed {seed}")


def record(placement: Placement, seed: int, history: dict) -> dict:
    return {
        "name": placement.name, "seed": seed, "kl_in": placement.kl_in, "kl_estimator": placement.kl_estimator,
        "use_bias_correction_kl": placement.use_bias_correction_kl, "flipped_ratio": placement.flipped_ratio,
        "expected_gradient": placement.expected_gradient,
        "kl": [K.r4(x) for x in history["kl"]],                # exact KL(π‖base) per step, nats per completion
        "reward": [K.r4(x) for x in history["reward"]],        # proxy reward of the training rollouts
        "grad_norm": [K.r4(x) for x in history["grad_norm"]],  # before clipping (max_grad_norm 1)
        "final": {k: K.r4(history["final"][k]) for k in ("gold", "proxy")},
        "fingerprint": K.fingerprint(history),
        "seconds": round(sum(history["seconds"]), 1),
    }


def study(placements=PLACEMENTS + BUGS, seeds=SEEDS, config: RLConfig = CONFIG, progress: bool = True) -> dict:
    S = K.setup()
    t0 = time.perf_counter()
    runs = [record(p, s, run(p, s, config, S, progress)) for p in placements for s in seeds]
    return {
        "config": asdict(config),  # every run's RLConfig but beta, kl_in, kl_estimator, the correction and seed
        "beta": BETA,
        "base": {k: K.r4(S.start[k]) for k in ("gold", "proxy")},
        "runs": runs,
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine(),
    }


def load(path: Path = PATH) -> dict:
    return common.load(path)


def summary(study_: dict, last: int = 10, names=None) -> list[dict]:
    """Per placement (those named in `names`, default all), over its seeds: the mean KL of the last `last` steps
    (mean and the range over seeds), the final gold and proxy rewards (mean), and the largest gradient norm of any
    step (stability)."""
    rows = []
    for name in names or dict.fromkeys(r["name"] for r in study_["runs"]):
        runs = [r for r in study_["runs"] if r["name"] == name]
        kls = [float(np.mean(r["kl"][-last:])) for r in runs]
        rows.append({"name": name, "expected_gradient": runs[0]["expected_gradient"],
                     "kl": float(np.mean(kls)), "kl_min": min(kls), "kl_max": max(kls),
                     "gold": float(np.mean([r["final"]["gold"] for r in runs])),
                     "proxy": float(np.mean([r["final"]["proxy"] for r in runs])),
                     "max_grad_norm": max(max(r["grad_norm"]) for r in runs), "seeds": len(runs)})
    return rows


def compare_with_twin(live: dict, shipped: dict) -> twins.Comparison:
    """A live run's `record` against its shipped twin within kl_penalty's tolerance (fingerprint and wall time
    left out)."""
    return twins.compare(live, shipped, name=live["name"], rtol=K.TWIN_RTOL, atol=K.TWIN_ATOL,
                         ignore=("seconds", "fingerprint"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=PATH)
    args = ap.parse_args(argv)
    result = study()
    common.save(result, args.out)
    for row in summary(result):
        print(f"{row['name']:<26} KL {row['kl']:5.2f} ({row['kl_min']:.2f} to {row['kl_max']:.2f})  "
              f"gold {row['gold']:5.2f}  proxy {row['proxy']:5.2f}  max grad norm {row['max_grad_norm']:.1f}")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
