"""Wall time of one RL step (sample + score + update) on the shipped base model.

    python -m benchmarks.rl_step [--prompts 8] [--generations 8] [--steps 10] [--algorithm grpo]

Runs `toyenv.trainers.rl.train` on GeneralPoints (verifier reward) with a KL penalty to the base model, and prints
the median step time with its phases: sampling (KV cache), scoring, and the rest (old/reference log-probs,
advantages, the update). The first step is a warm-up and is not counted. `measure` returns the numbers
(`python -m benchmarks.run` puts them in its table).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import toyenv
from toyenv.trainers import rl
from toyenv.tasks import general_points_task

from .generate import machine


def measure(prompts: int = 8, generations: int = 8, steps: int = 10, algorithm: str = "grpo",
            max_new_tokens: int = 24, seed: int = 0) -> dict:
    """Median seconds of one RL step and of its phases, over `steps` steps after one warm-up step.

    Returns {"step", "sample", "score", "rest"} (seconds), "rollouts" (per step), "mean_length" (generated tokens
    per completion), "total" (seconds, warm-up included), "steps", "device".
    """
    toyenv.seed_everything(seed)
    base, tok = toyenv.load_base()
    policy = copy.deepcopy(base)
    task = general_points_task("ten")
    phases = {"sample": [], "score": []}
    original = rl.rollout

    def timed_rollout(*a, **k):
        ro = original(*a, **k)
        phases["sample"].append(ro.gen_seconds)
        phases["score"].append(ro.score_seconds)
        return ro

    rl.rollout = timed_rollout  # record the phases without changing the trainer
    try:
        cfg = rl.RLConfig(algorithm=algorithm, max_steps=steps + 1, num_prompts=prompts,
                          num_generations=generations, max_new_tokens=max_new_tokens, beta=0.05,
                          learning_rate=1e-5, seed=seed)
        t0 = time.perf_counter()
        h = rl.train(policy, task, cfg, tok, ref=base, progress=False)
        total = time.perf_counter() - t0
    finally:
        rl.rollout = original
    step = statistics.median(h["seconds"][1:])
    sample = statistics.median(phases["sample"][1:])
    score = statistics.median(phases["score"][1:])
    return {"step": step, "sample": sample, "score": score, "rest": step - sample - score,
            "rollouts": cfg.batch_size, "mean_length": statistics.mean(h["length"]), "total": total,
            "steps": steps, "device": str(policy.device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--algorithm", default="grpo", choices=rl.ALGORITHMS)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    args = ap.parse_args()

    r = measure(args.prompts, args.generations, args.steps, args.algorithm, args.max_new_tokens)
    print(f"machine: {machine()}, device {r['device']}")
    print(f"{args.algorithm}: {r['rollouts']} rollouts per step ({args.prompts} prompts x {args.generations}), "
          f"<= {args.max_new_tokens} new tokens, mean completion {r['mean_length']:.1f} tokens; "
          f"median of {args.steps} steps after a warm-up ({r['total']:.1f} s in all)\n")
    print(f"| {'phase':<34} | {'ms':>7} |")
    print(f"|{'-' * 36}|{'-' * 9}|")
    print(f"| {'sample (KV cache)':<34} | {1000 * r['sample']:7.0f} |")
    print(f"| {'score (verifier)':<34} | {1000 * r['score']:7.0f} |")
    print(f"| {'log-probs, reference, update':<34} | {1000 * r['rest']:7.0f} |")
    print(f"| {'one RL step':<34} | {1000 * r['step']:7.0f} |")


if __name__ == "__main__":
    main()
