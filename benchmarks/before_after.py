"""What `benchmarks.dpo_step` and `benchmarks.reward_model_step` share: one training step timed with the trainer's
scorer ("shared": each prompt read once for its chosen and rejected completion) and with the scorer it replaced
("full_rows": every row [prompt, completion] read whole), alternating in one process, and the command line that
prints the two as one table."""
from __future__ import annotations

import argparse
import statistics
from typing import Callable

from .generate import machine

SCORERS = ("shared", "full_rows")


def alternate(measure: Callable[..., dict], rounds: int, **kwargs) -> dict[str, dict]:
    """`measure(scoring=..., **kwargs)` for "full_rows" (before) and "shared" (after), alternating, `rounds` runs
    each; per variant the first run's record with "step" the median over all its runs' counted steps."""
    runs: dict[str, list[dict]] = {"full_rows": [], "shared": []}
    for _ in range(rounds):
        for scoring in runs:
            runs[scoring].append(measure(scoring=scoring, **kwargs))
    return {scoring: dict(rs[0], step=statistics.median(t for r in rs for t in r["times"]))
            for scoring, rs in runs.items()}


def main(doc: str, before_and_after: Callable[..., dict[str, dict]], step_name: str, setting: str, footer: str
         ) -> None:
    """The command line: --batch, --steps, --warmup, --rounds; prints tokens read and wall time, before and after.
    `setting` is formatted with the arguments (e.g. "{batch} pairs")."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each variant, alternating")
    args = ap.parse_args()
    for name in ("batch", "steps", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {args.warmup}")
    both = before_and_after(args.batch, args.steps, args.warmup, args.rounds)
    before, after = both["full_rows"], both["shared"]
    print(f"machine: {machine()}, device {after['device']}")
    print(f"{setting.format(**vars(args))}; median of {args.rounds} x {args.steps} steps after {args.warmup} warm-up "
          "each\n")
    print(f"| {step_name:<34} | {'before':>7} | {'after':>7} | {'ratio':>6} |")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    print(f"| {'tokens read per batch':<34} | {before['tokens']:7.0f} | {after['tokens']:7.0f} | "
          f"{before['tokens'] / after['tokens']:5.2f}x |")
    b, a = 1000 * before["step"], 1000 * after["step"]
    print(f"| {'wall time (ms)':<34} | {b:7.0f} | {a:7.0f} | {b / a:5.2f}x |")
    print(f"\n{footer}")
