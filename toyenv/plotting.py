"""Small matplotlib helpers so notebooks stay about the experiment, not the plotting."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .mixtures import DIRECTIONS, DTYPE, RetainConfig, at_gain, bimodal, fit_gaussian, policy_at


def smooth(values, weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard's smoothing slider); 0 <= weight < 1."""
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smooth: weight is the EMA's decay, 0 <= weight < 1 (0: no smoothing), got {weight}")
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return np.asarray(out)


def plot_curve(history: dict, key: str = "loss", ax=None, label: str | None = None, log: bool = False,
               weight: float = 0.9, title: str | None = None):
    """Raw values of `history[key]` per step, faint, with a smoothed line on top."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    steps, values = history["step"], history[key]
    line, = ax.plot(steps, smooth(values, weight), label=label or key)
    ax.plot(steps, values, color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def label_offsets(x, y, log_x: bool = False, near: float = 0.04) -> list[tuple[int, int]]:
    """Offsets in points for numbering the points (x, y) of a scatter so that labels of close points do not sit on
    each other: a point within `near` (a fraction of each axis' range; x in log scale if `log_x`) of k earlier points
    gets the k-th of right-above, right-below, left-above, left-below."""
    x = np.log(np.asarray(x, float)) if log_x else np.asarray(x, float)
    y = np.asarray(y, float)
    sx, sy = max(np.ptp(x), 1e-12), max(np.ptp(y), 1e-12)
    spots = [(4, 3), (4, -10), (-11, 3), (-11, -10)]
    out = []
    for i in range(len(x)):
        k = sum(abs(x[j] - x[i]) < near * sx and abs(y[j] - y[i]) < near * sy for j in range(i))
        out.append(spots[k % len(spots)])
    return out


# ------------------------------------------------------------------------------- notebook 07: the 1-D Gaussian world
def plot_gaussian_fit(separation: float = 8.0, weight: float = 0.5, direction: str = "both", ax=None,
                      steps: int = 300):
    """Fit one Gaussian to `bimodal(separation, weight)` and draw the target with every optimum found.

    `direction` is "forward", "reverse" or "both". This is what notebook 07's widget redraws.
    """
    target = bimodal(separation, weight)
    ax = ax or plt.subplots(figsize=(7, 3.6))[1]
    half = 3.5 * target.std() + 1.0  # the moment-matching fit's tails fit in, and the modes are not squeezed
    x = torch.linspace(target.mean() - half, target.mean() + half, 800, dtype=DTYPE)
    ax.fill_between(x, target.prob(x), color="gray", alpha=0.3, label=f"target: {target.describe()}")
    dirs = DIRECTIONS if direction == "both" else (direction,)
    styles = {"forward": ("C0", "-"), "reverse": ("C3", "--")}
    top = float(target.prob(x).max())
    for d in dirs:
        for i, o in enumerate(fit_gaussian(target, d, steps=steps)):
            color, ls = styles[d]
            y = o.mixture().prob(x).detach()
            top = max(top, float(y.max()))
            ax.plot(x, y, color=color, ls=ls, lw=2, alpha=1.0 if i == 0 else 0.5,
                    label=f"{d}{' (best)' if i == 0 else ''}: μ={round(o.mu, 2) + 0.0:+.2f}, σ={o.sigma:.2f}, KL={o.kl:.3f}")
    ax.set_ylim(0, 1.45 * top)  # room for the legend above the curves
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(f"One Gaussian fitted to two modes {separation:g} apart")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    return ax


def plot_snapshots(history: dict, n: int = 6, ax=None, title: str | None = None):
    """The target (gray) and the policy at `n` evaluations spread over a `train_retaining` run (light to dark)."""
    cfg = RetainConfig(**history["config"])
    target = cfg.target()
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    lo, hi = min(cfg.old_mean, cfg.new_init) - 4 * cfg.sigma, max(cfg.new_mean, cfg.new_init) + 4 * cfg.sigma
    x = torch.linspace(lo, hi, 600, dtype=DTYPE)
    ax.fill_between(x, target.prob(x), color="gray", alpha=0.3, label="target π*")
    idx = np.unique(np.linspace(0, len(history["step"]) - 1, n).round().astype(int))
    colors = plt.cm.viridis(np.linspace(0.9, 0.0, len(idx)))
    for c, i in zip(colors, idx):
        ax.plot(x, policy_at(history, int(i)).prob(x), color=c, lw=1.6, label=f"step {history['step'][i]}")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(title or history["method"])
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax


def plot_retaining(histories: dict, level: float = 0.9, axes=None):
    """Two panels for runs {label: history}: retained and gained per step; retained against gained (equal gain)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax1, ax2 = axes
    for i, (label, h) in enumerate(histories.items()):
        c = f"C{i}"
        ax1.plot(h["step"], h["retained"], color=c, lw=2, label=f"{label}: retained (old mode)")
        ax1.plot(h["step"], h["gained"], color=c, lw=1.5, ls=":", label=f"{label}: gained (new mode)")
        ax2.plot(h["gained"], h["retained"], color=c, lw=2, label=label)
        hit = at_gain(h, level)
        if hit:
            ax2.plot([hit["gained"]], [hit["retained"]], "o", color=c, ms=7)
            ax2.annotate(f"{hit['retained']:.2f}", (hit["gained"], hit["retained"]), textcoords="offset points",
                         xytext=(-30, -14), color=c)
    ax1.set_xlabel("training step")
    ax1.set_ylabel("coverage of the target's mode")
    ax1.set_title("Retained (solid) and gained (dotted) per step")
    ax1.set_ylim(-0.03, 1.03)
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.axvline(level, color="gray", lw=1, ls="--")
    ax2.set_xlabel("gained: coverage of the new mode")
    ax2.set_ylabel("retained: coverage of the old mode")
    ax2.set_title(f"Old mode kept vs new mode learned (dots: gain = {level})")
    ax2.set_xlim(0, 1.02)
    ax2.set_ylim(-0.03, 1.03)
    ax2.legend(fontsize=8, loc="lower left")
    ax2.grid(alpha=0.3)
    return axes


def forgetting_panel(ax, runs: list[dict], key: str, xlabel: str, log_x: bool = True,
                     highlight=lambda r: True, forgot: str = "forgetting"):
    """One predictor of forgetting: each run of a razor study as a point (SFT squares, RL circles; hollow where
    `highlight` is False, e.g. runs that did not reach the common new-task score), the least-squares line, and the
    straight-line R² and Spearman ρ in the title (over every run drawn)."""
    from .stats import r_squared, spearman

    x, y = np.array([r[key] for r in runs]), np.array([r[forgot] for r in runs])
    for method, marker, color in (("sft", "s", "C0"), ("rl", "o", "C1")):
        for on, fill in ((True, color), (False, "none")):
            pick = [i for i, r in enumerate(runs) if r["method"] == method and bool(highlight(r)) == on]
            if pick:
                ax.scatter(x[pick], y[pick], marker=marker, s=30, facecolors=fill, edgecolors=color,
                           label=method.upper() + ("" if on else ", below the common new-task score"))
    grid = np.geomspace(x.min(), x.max(), 100) if log_x else np.linspace(x.min(), x.max(), 100)
    a, b = np.polyfit(x, y, 1)
    ax.plot(grid, a * grid + b, "k--", lw=0.8, label="least-squares line")
    if log_x:
        ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel(xlabel + (", log scale" if log_x else ""))
    ax.set_ylabel("forgetting (drop in old-task accuracy)")
    ax.set_title(f"R² {r_squared(x, y):.2f}, Spearman ρ {spearman(x, y):.2f}", fontsize=10)
    ax.legend(fontsize=7)
    return ax
