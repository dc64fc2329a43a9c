"""Scripts that build the course's shipped artefacts and multi-run studies (run with `python -m`)."""
from __future__ import annotations

import platform

import torch


def machine() -> str:
    """What a shipped study records about the machine that built it: its numbers are only bit-identical on the same
    CPU architecture, thread count and torch build."""
    return f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
