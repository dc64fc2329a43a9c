"""Sampling throughput with and without the KV cache.

    python -m benchmarks.generate [--batch 64] [--new-tokens 64] [--prompt-len 100] [--repeats 3] [--profile]

Samples `--new-tokens` tokens for a batch of prompts of different lengths with the default GPTConfig, with the
cache (`use_cache=True`) and without it (every step re-runs the whole prefix), and prints tokens/s and the ratio.
EOS is disabled so both runs generate exactly the same number of tokens. `--profile` also prints where the cached
sampler's time goes, op by op (torch.profiler over `--repeats` calls; the profiler adds its own overhead per op).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from toyenv import GPT, GPTConfig, Tokenizer, seed_everything


def cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux (platform.processor() is often empty there)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def machine() -> str:
    return (f"{cpu_model()}, {cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread{'' if torch.get_num_threads() == 1 else 's'}")


def time_generate(model, prompts, new_tokens: int, use_cache: bool, repeats: int) -> float:
    best = float("inf")
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r)
        t0 = time.perf_counter()
        model.generate(prompts, new_tokens, eos_id=None, use_cache=use_cache, generator=gen)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=100, help="longest prompt; others are up to 30%% shorter")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    ap.add_argument("--profile", action="store_true", help="also print the cached sampler's time per op")
    args = ap.parse_args()
    for name in ("batch", "new_tokens", "prompt_len", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    seed_everything(0)
    model = GPT(GPTConfig()).eval()
    tok = Tokenizer()
    g = torch.Generator().manual_seed(0)
    prompts = []
    for _ in range(args.batch):
        n = args.prompt_len - int(torch.randint(0, max(1, args.prompt_len * 3 // 10), (1,), generator=g))
        prompts.append([tok.bos_id] + torch.randint(3, tok.vocab_size, (n - 1,), generator=g).tolist())
    time_generate(model, prompts[:4], 4, True, 1)  # warm-up

    n_tokens = args.batch * args.new_tokens
    t_cache = time_generate(model, prompts, args.new_tokens, True, args.repeats)
    t_plain = time_generate(model, prompts, args.new_tokens, False, args.repeats)
    print(f"machine: {machine()}")
    print(f"model: {model.num_params():,} parameters; batch {args.batch}, prompts <= {args.prompt_len} tokens, "
          f"{args.new_tokens} new tokens each (best of {args.repeats})\n")
    print(f"| {'sampler':<16} | {'seconds':>8} | {'tokens/s':>9} |")
    print(f"|{'-' * 18}|{'-' * 10}|{'-' * 11}|")
    print(f"| {'KV cache':<16} | {t_cache:8.3f} | {n_tokens / t_cache:9.0f} |")
    print(f"| {'no cache':<16} | {t_plain:8.3f} | {n_tokens / t_plain:9.0f} |")
    print(f"\nKV-cache speed-up: {t_plain / t_cache:.1f}x (target >= 5x)")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:  # the calls timed above, once more
            time_generate(model, prompts, args.new_tokens, True, args.repeats)
        print(f"\nKV-cache sampler, {args.repeats} calls, ops by their own CPU time:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
