"""Reward over-optimization measured the way Gao, Schulman & Hilton (2022) measure it.

Gao et al. plot the gold reward gained over the initial policy, R, against the distance d = sqrt(KL(π ‖ π_init))
and fit two functional forms, both linear in their coefficients:

    best-of-n:  R(d) = d (α − β d)          with  KL_BoN(n) = log n − (n − 1) / n
    RL:         R(d) = d (α − β log d)

`bon_kl` is that analytic KL. It is exact for a continuous score with no ties; Beirami et al. (2024) show that in
general it is an upper bound (a discrete policy that repeats completions gets less far from π_init than it says).
`best_of_n` scores best-of-n selection from a pool of samples per prompt, and `fit_bon` / `fit_rl` are the two
least-squares fits. Notebook 03 measures both on the tiny GPT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FORMS = {"bon": "d (α − β d)", "rl": "d (α − β log d)"}


def _count(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be an int >= 1, got {n!r}")
    return int(n)


def bon_kl(n: int) -> float:
    """KL(best-of-n ‖ π_init) as Gao et al. (and Stiennon et al., Hilton's note) compute it: log n − (n − 1) / n nats.

    Exact when the selection score has no ties; an upper bound otherwise (Beirami et al. 2024)."""
    n = _count(n, "n")
    return math.log(n) - (n - 1) / n


def best_of_n(proxy: np.ndarray, gold: np.ndarray, n: int) -> dict:
    """Best-of-n selection by `proxy` from a pool of samples per prompt, both arrays shaped (prompts, pool).

    Each prompt's pool is cut into pool // n disjoint groups of n consecutive samples (a remainder is left out), and
    in each group the sample with the highest proxy score is kept (the first one on a tie). Returns the mean proxy
    and gold rewards of the kept samples and how many groups they came from. Averaging over every group, rather than
    drawing one, is the unbiased estimate from a fixed pool that Gao et al. use, with less noise."""
    proxy, gold = np.asarray(proxy, dtype=float), np.asarray(gold, dtype=float)
    if proxy.ndim != 2 or proxy.shape != gold.shape:
        raise ValueError(f"proxy and gold must both be (prompts, pool) arrays of one shape, got {proxy.shape} and "
                         f"{gold.shape}")
    n = _count(n, "n")
    if n > proxy.shape[1]:
        raise ValueError(f"n must be at most the pool size {proxy.shape[1]}, got {n}")
    if not (np.isfinite(proxy).all() and np.isfinite(gold).all()):
        raise ValueError("proxy and gold scores must be finite")
    groups = proxy.shape[1] // n
    p = proxy[:, : groups * n].reshape(len(proxy), groups, n)
    g = gold[:, : groups * n].reshape(len(gold), groups, n)
    pick = p.argmax(-1)[..., None]  # argmax keeps the first maximum
    return {"proxy": float(np.take_along_axis(p, pick, -1).mean()),
            "gold": float(np.take_along_axis(g, pick, -1).mean()), "groups": groups * len(proxy)}


@dataclass(frozen=True)
class Fit:
    """A fitted functional form: R(d) = d (α − β d) ("bon") or d (α − β log d) ("rl"), with its RMS residual."""

    form: str
    alpha: float
    beta: float
    rmse: float
    points: int

    def __call__(self, d) -> np.ndarray:
        d = np.asarray(d, dtype=float)
        return d * self.alpha - self.beta * _second(self.form, d)

    def __str__(self) -> str:
        return (f"R(d) = {FORMS[self.form]}: α = {self.alpha:.3f}, β = {self.beta:.3f} "
                f"(RMS residual {self.rmse:.3f} over {self.points} points)")


def _second(form: str, d: np.ndarray) -> np.ndarray:
    """The term β multiplies (with a minus sign): d² for best-of-n, d log d for RL (0 at d = 0, its limit)."""
    if form == "bon":
        return d * d
    safe = np.where(d > 0, d, 1.0)
    return np.where(d > 0, d * np.log(safe), 0.0)


def fit(form: str, d, reward) -> Fit:
    """Least-squares α, β of Gao et al.'s `form` ("bon" or "rl") to gold-reward gains `reward` at distances
    `d` = sqrt(KL). Both forms are linear in (α, β), so this is one `lstsq` on the columns [d, −d²] or [d, −d log d].
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {sorted(FORMS)}, got {form!r}")
    d, reward = np.asarray(d, dtype=float).ravel(), np.asarray(reward, dtype=float).ravel()
    if d.shape != reward.shape:
        raise ValueError(f"d and reward must have the same length, got {d.size} and {reward.size}")
    if not (np.isfinite(d).all() and np.isfinite(reward).all()) or (d < 0).any():
        raise ValueError("d must be finite and >= 0 (it is sqrt(KL)), and reward finite")
    X = np.stack([d, -_second(form, d)], axis=1)
    if np.linalg.matrix_rank(X) < 2:
        raise ValueError(f"fitting α and β needs at least two distinct d > 0, got {sorted(set(d.tolist()))}")
    (alpha, beta), *_ = np.linalg.lstsq(X, reward, rcond=None)
    rmse = float(np.sqrt(np.mean((X @ np.array([alpha, beta]) - reward) ** 2)))
    return Fit(form, float(alpha), float(beta), rmse, int(d.size))


def fit_bon(d, reward) -> Fit:
    """`fit("bon", d, reward)`: R(d) = d (α − β d)."""
    return fit("bon", d, reward)


def fit_rl(d, reward) -> Fit:
    """`fit("rl", d, reward)`: R(d) = d (α − β log d)."""
    return fit("rl", d, reward)
