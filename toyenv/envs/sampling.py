"""Shared by the environments' batched `evaluate` helpers."""
from __future__ import annotations

from typing import Any

import torch


def sampling_generator(model: Any, greedy: bool, seed: int) -> torch.Generator | None:
    """A seeded generator on the model's device for sampled evaluation (None for greedy decoding)."""
    if greedy:
        return None
    try:
        device = next(iter(model.parameters())).device
    except (AttributeError, StopIteration, TypeError):  # fake models in tests have no parameters
        device = torch.device("cpu")
    return torch.Generator(device=device).manual_seed(int(seed))
