"""How far a fine-tuned model's weights moved from its base: the weight-space predictors of forgetting.

RL's Razor (Shenfeld et al. 2025) compares them with KL on the new task and finds them worse; both razor studies
(`toyenv.experiments.razor`, the tiny GPT, and `toyenv.experiments.razor_classifier`) record them:

    weight_l1       Σ |θ − θ0|
    weight_change   ‖θ − θ0‖₂
    weight_fisher   Σ F (θ − θ0)²   with F the diagonal of π0's Fisher information on the new task: the quadratic
                    form EWC (Kirkpatrick et al. 2017) penalizes, the weight distance that counts each direction by
                    how much it changes π0's outputs

Each study computes its own F (the classifier exactly, the GPT from sampled completions) and passes it in.
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["weight_changes"]


@torch.no_grad()
def weight_changes(model: torch.nn.Module, base: torch.nn.Module,
                   fisher: Sequence[torch.Tensor] | None = None) -> dict:
    """{"weight_l1", "weight_change" (L2)} of `model` against `base` (same architecture), and "weight_fisher" when
    `fisher` is given: one tensor per parameter, in `base.parameters()` order."""
    params, ref = list(model.parameters()), list(base.parameters())
    if len(params) != len(ref) or (fisher is not None and len(fisher) != len(ref)):
        raise ValueError(f"weight_changes: {len(params)} parameters, {len(ref)} in base"
                         + ("" if fisher is None else f", {len(fisher)} in fisher"))
    deltas = [p - q for p, q in zip(params, ref)]
    out = {"weight_l1": float(sum(d.abs().sum() for d in deltas)),
           "weight_change": float(torch.sqrt(sum((d ** 2).sum() for d in deltas)))}
    if fisher is not None:
        out["weight_fisher"] = float(sum((f * d ** 2).sum() for f, d in zip(fisher, deltas)))
    return out
