"""Seeds, device selection, eval mode for a block, and the trainers' progress bar."""
from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

DEVICE_ENV_VAR = "TOYENV_DEVICE"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); returns a `torch.Generator` seeded the same way.

    The same seed then gives the same numbers on the same machine and PyTorch build. (Different
    hardware or thread counts may still differ in the last bits of floating point.)
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def device() -> torch.device:
    """The device to train on: $TOYENV_DEVICE if set, else cuda, then mps, then cpu.

    Everything in the course fits a laptop CPU; a GPU only makes it faster. Set TOYENV_DEVICE=cpu to
    force the CPU (for example to reproduce CI's numbers exactly).
    """
    override = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if override:
        try:
            dev = torch.device(override)
        except RuntimeError as e:
            raise ValueError(f"{DEVICE_ENV_VAR}={override!r} is not a torch device ({e})") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV_VAR}={override!r} but CUDA is not available on this machine")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"{DEVICE_ENV_VAR}={override!r} but MPS is not available on this machine")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(*models: Any) -> Iterator[None]:
    """Put `models` in eval mode for the block, then give each its own mode back, even if the block raises.

    Sampling and scoring happen in the middle of training loops, so a helper that switches a model to eval must not
    leave it there. Objects without `.eval()` or a boolean `.training` (duck-typed stand-ins for a model) are left
    as they are.
    """
    saved = [(m, getattr(m, "training", None)) for m in models]
    for m, _ in saved:
        if hasattr(m, "eval"):
            m.eval()
    try:
        yield
    finally:
        for m, was_training in saved:
            if isinstance(was_training, bool) and hasattr(m, "train"):
                m.train(was_training)


# Seconds between two redraws of a progress bar. In JupyterLab every redraw is one or two widget messages on the
# kernel's IOPub channel. A client that reads that channel only after a cell ends (nbval does, in CI) leaves the
# messages in ZeroMQ queues of about 1,000 each; past that, ZeroMQ drops messages, among them the
# final "idle" that tells the client the cell has finished, and the test fails with "Timeout of 5 seconds exceeded
# waiting for output". Redrawing every step (tqdm's 0.1 s, plus a forced redraw per `set_postfix`) put ~1,270
# messages in one 90-second cell of notebook 09, enough that nbval sometimes lost the end of it. At one redraw a
# second, a cell at the course's 3-minute limit stays far below the queues' size.
REDRAW_SECONDS = 1.0


class _ProgressBar(tqdm):
    """tqdm.auto's bar, except that `set_postfix` waits for the next redraw instead of forcing one (tqdm's default
    forces one per call, which in a training loop is one per step, whatever `mininterval` says)."""

    def set_postfix(self, ordered_dict=None, refresh=False, **kwargs):
        super().set_postfix(ordered_dict, refresh=refresh, **kwargs)


def progress_bar(iterable: Iterable, desc: str | None = None, enabled: bool = True) -> tqdm:
    """The trainers' progress bar: tqdm (a widget in Jupyter) that redraws at most every `REDRAW_SECONDS`, numbers
    given to `bar.set_postfix(...)` included; it disappears when the loop ends (`leave=False`)."""
    return _ProgressBar(iterable, desc=desc, disable=not enabled, leave=False, mininterval=REDRAW_SECONDS)
