"""The statistics the course reads its studies with: a straight-line fit's R², ranks, and Spearman's ρ.

RL's Razor asks which number predicts forgetting. Two questions, two statistics:

* `r_squared(x, y)`: how well a *straight line* y ≈ a·x + b fits (1 = perfectly, 0 = no better than the mean);
* `spearman(x, y)`: whether y grows with x by *some* monotone function, whatever its shape (±1 = perfectly).

`predictor_table` applies both to every predictor of a study's runs. Written out with numpy (no scipy, no
sklearn), and checked against hand computations in `tests/test_stats.py`.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = ["r_squared", "ranks", "spearman", "predictor_table", "subsample_r2"]


def r_squared(x, y) -> float:
    """R² of the least-squares line y ≈ a·x + b (nan when y is constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    a, b = np.polyfit(x, y, 1)
    residual = ((y - (a * x + b)) ** 2).sum()
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - residual / total) if total > 0 else float("nan")


def ranks(x) -> np.ndarray:
    """Ranks 1..n of the values of x (1 = smallest); tied values share the average of the ranks they span."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="stable")
    out = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        out[order[i:j + 1]] = (i + j) / 2 + 1  # positions i..j hold ranks i+1..j+1: their mean
        i = j + 1
    return out


def spearman(x, y) -> float:
    """Spearman's rank correlation ρ: the Pearson correlation of the ranks (average ranks for ties). It asks only
    whether y grows with x, by *some* monotone function, not by a straight line."""
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def predictor_table(rows: Sequence[dict], outcome: str, predictors: Iterable[str],
                    subsets: dict[str, Callable[[dict], bool]] | None = None) -> list[dict]:
    """For each subset of `rows` (name -> which rows it keeps; default: all of them) and each predictor key, the R²
    of a straight line and Spearman's ρ of `outcome` against it: one dict per (subset, predictor) with "subset",
    "predictor", "n", "r2" and "spearman"."""
    subsets = subsets or {"all": lambda r: True}
    out = []
    for name, keep in subsets.items():
        pick = [r for r in rows if keep(r)]
        y = [r[outcome] for r in pick]
        for key in predictors:
            x = [r[key] for r in pick]
            enough = len(pick) >= 3
            out.append({"subset": name, "predictor": key, "n": len(pick),
                        "r2": r_squared(x, y) if enough else float("nan"),
                        "spearman": spearman(x, y) if enough else float("nan")})
    return out


def subsample_r2(x, y, size: int, draws: int = 2000, seed: int = 0) -> np.ndarray:
    """The straight-line R² of y on x over `draws` random subsets of `size` of the points (each drawn without
    replacement, from a generator seeded with `seed`): how much R² moves with which runs a study happens to have."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if not (isinstance(size, int) and 3 <= size <= len(x)):
        raise ValueError(f"size must be an integer in [3, {len(x)}] (the number of points), got {size!r}")
    rng = np.random.default_rng(seed)
    picks = (rng.choice(len(x), size, replace=False) for _ in range(draws))
    return np.array([r_squared(x[p], y[p]) for p in picks])
