"""Small matplotlib helpers so notebooks stay about the experiment, not the plotting."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


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
