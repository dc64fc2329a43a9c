"""Wall time of one RL step (sample + score + update) on the shipped base model, and its speed-up over scoring
every row whole.

    python -m benchmarks.rl_step [--prompts 8] [--generations 8] [--steps 10] [--algorithm grpo] [--rounds 2]

Runs `toyenv.trainers.rl.train` on GeneralPoints (verifier reward) with a KL penalty to the base model, and prints
the median step time with its phases: sampling (KV cache), scoring, and the rest (old/reference log-probs,
advantages, the update). The first step of each run is a warm-up and is not counted. `measure` returns the
numbers (`python -m benchmarks.run` puts them in its table).

"before" is the trainer as it was until 2026-12-02: the policy and the reference read every row [prompt,
completion] whole, so each prompt was read k = num_generations times. `full_row_logprobs` below recreates that
scoring and is swapped in for the trainer's `completion_logprobs` (which reads each prompt once); everything else
is the same code, so the ratio isolates the change. The two variants alternate, `--rounds` runs each.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import toyenv
from toyenv.model import next_token_logprobs
from toyenv.tasks import general_points_task
from toyenv.trainers import rl

from .generate import machine


def full_row_logprobs(model, prompts, prompt_mask, completions, completion_mask, prompt_index=None,
                      temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's scoring before 2026-12-02, with `completion_logprobs`' signature and results: each completion's
    row [its prompt, completion] is read whole, so a prompt with k completions is read k times."""
    Bp, P = prompts.shape
    if prompt_index is None:
        prompt_index = torch.arange(Bp).repeat_interleave(completions.shape[0] // Bp)
    tokens = torch.cat((prompts[prompt_index], completions), dim=1)
    attn = torch.cat((prompt_mask[prompt_index].bool(), completion_mask.bool()), dim=1)
    picked, logdist = next_token_logprobs(model, tokens, attn, temperature)
    return picked[:, P - 1:], logdist[:, P - 1:]  # the columns that score completion tokens


def measure(prompts: int = 8, generations: int = 8, steps: int = 10, algorithm: str = "grpo",
            max_new_tokens: int = 24, seed: int = 0, scoring: str = "shared") -> dict:
    """Median seconds of one RL step and of its phases, over `steps` steps after one warm-up step. `scoring`:
    "shared" (the trainer as it is) or "full_rows" (before: `full_row_logprobs`).

    Returns {"step", "sample", "score", "rest"} (seconds), "rollouts" (per step), "mean_length" (generated tokens
    per completion), "total" (seconds, warm-up included), "steps", "device", "times" (every counted step).
    """
    if scoring not in ("shared", "full_rows"):
        raise ValueError(f"scoring must be 'shared' or 'full_rows', got {scoring!r}")
    toyenv.seed_everything(seed)
    base, tok = toyenv.load_base()
    policy = copy.deepcopy(base)
    task = general_points_task("ten")
    phases = {"sample": [], "score": []}
    original_rollout, original_scoring = rl.rollout, rl.completion_logprobs

    def timed_rollout(*a, **k):
        ro = original_rollout(*a, **k)
        phases["sample"].append(ro.gen_seconds)
        phases["score"].append(ro.score_seconds)
        return ro

    rl.rollout = timed_rollout  # record the phases without changing the trainer
    if scoring == "full_rows":
        rl.completion_logprobs = full_row_logprobs
    try:
        cfg = rl.RLConfig(algorithm=algorithm, max_steps=steps + 1, num_prompts=prompts,
                          num_generations=generations, max_new_tokens=max_new_tokens, beta=0.05,
                          learning_rate=1e-5, seed=seed)
        t0 = time.perf_counter()
        h = rl.train(policy, task, cfg, tok, ref=base, progress=False)
        total = time.perf_counter() - t0
    finally:
        rl.rollout, rl.completion_logprobs = original_rollout, original_scoring
    step = statistics.median(h["seconds"][1:])
    sample = statistics.median(phases["sample"][1:])
    score = statistics.median(phases["score"][1:])
    return {"step": step, "sample": sample, "score": score, "rest": step - sample - score,
            "rollouts": cfg.batch_size, "mean_length": statistics.mean(h["length"]), "total": total,
            "steps": steps, "device": str(policy.device), "times": h["seconds"][1:]}


def before_and_after(prompts: int = 8, generations: int = 8, steps: int = 10, algorithm: str = "grpo",
                     max_new_tokens: int = 24, rounds: int = 2) -> dict[str, dict]:
    """`measure` for "full_rows" (before) and "shared" (after), alternating, `rounds` runs each; per variant the
    median over all its counted steps and phases (both variants train the same seed, so they sample the same first
    batch and nearly the same later ones)."""
    runs: dict[str, list[dict]] = {"full_rows": [], "shared": []}
    for _ in range(rounds):
        for scoring in runs:
            runs[scoring].append(measure(prompts, generations, steps, algorithm, max_new_tokens, scoring=scoring))
    out = {}
    for scoring, rs in runs.items():
        r = dict(rs[0])
        for key in ("step", "sample", "score", "rest"):
            r[key] = statistics.median(x[key] for x in rs)
        r["step"] = statistics.median(t for x in rs for t in x["times"])
        r["total"] = sum(x["total"] for x in rs)
        out[scoring] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--algorithm", default="grpo", choices=rl.ALGORITHMS)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each variant, alternating")
    args = ap.parse_args()

    both = before_and_after(args.prompts, args.generations, args.steps, args.algorithm, args.max_new_tokens,
                            args.rounds)
    before, after = both["full_rows"], both["shared"]
    print(f"machine: {machine()}, device {after['device']}")
    print(f"{args.algorithm}: {after['rollouts']} rollouts per step ({args.prompts} prompts x {args.generations}), "
          f"<= {args.max_new_tokens} new tokens, mean completion {after['mean_length']:.1f} tokens; "
          f"median of {args.rounds} x {args.steps} steps after a warm-up each "
          f"({before['total'] + after['total']:.1f} s in all)\n")
    print(f"| {'phase (ms)':<34} | {'before':>7} | {'after':>7} | {'ratio':>6} |")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 9}|{'-' * 8}|")
    for key, label in (("sample", "sample (KV cache)"), ("score", "score (verifier)"),
                       ("rest", "log-probs, reference, update"), ("step", "one RL step")):
        b, a = 1000 * before[key], 1000 * after[key]
        ratio = f"{b / a:5.2f}x" if a > 0.5 else "-"
        print(f"| {label:<34} | {b:7.0f} | {a:7.0f} | {ratio:>6} |")
    print("\nbefore: every row [prompt, completion] read whole by the policy and the reference (the trainer until "
          "2026-12-02); after: each prompt read once for its completions (toyenv.model.completion_logprobs)")


if __name__ == "__main__":
    main()
