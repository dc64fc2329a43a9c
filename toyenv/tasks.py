"""Tiny warm-up tasks for the tour: small enough to learn in about a minute on a CPU.

`reverse_dataset` asks the model to spell a short lowercase word backwards, a
task that needs attention (the answer's i-th letter sits at a fixed offset in
the prompt) and is trivially checked.
"""
from __future__ import annotations

import random
import string


def reverse_prompt(word: str) -> str:
    return f"reverse {word}:"


def reverse_dataset(n: int, seed: int = 0, min_len: int = 3, max_len: int = 6) -> list[tuple[str, str]]:
    """`n` (prompt, completion) pairs like ("reverse abc:", "cba") from random lowercase words."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(min_len, max_len)))
        out.append((reverse_prompt(word), word[::-1]))
    return out


def reverse_accuracy(model, tokenizer, pairs: list[tuple[str, str]]) -> float:
    """Fraction of prompts whose greedy completion is exactly the reversed word."""
    import torch

    with torch.no_grad():
        tokens, mask = model.generate([tokenizer.encode(p, bos=True) for p, _ in pairs], max_new_tokens=10, greedy=True)
    outs = tokenizer.decode_batch(tokens, mask)
    return sum(o == c for o, (_, c) in zip(outs, pairs)) / len(pairs)
