"""Checkers for notebook 09_rl_razor."""
from __future__ import annotations

import numpy as np
import torch

from .checks import Verdict, as_tensor, fail, register


def _kl_inputs():
    g = torch.Generator().manual_seed(9)
    B, T, V = 3, 6, 5
    base = torch.log_softmax(torch.randn(B, T, V, generator=g) * 2, -1)
    model = torch.log_softmax(torch.randn(B, T, V, generator=g) * 2, -1)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (start, end) in enumerate([(1, 6), (2, 4), (0, 3)]):
        mask[b, start:end] = True
    return base, model, mask


@register("kl_on_new_task")
def _check_kl_on_new_task(fn) -> Verdict:
    """fn(base_logdist (B,T,V), model_logdist (B,T,V), mask (B,T)) -> (B,) sum over masked positions of the exact
    KL(π0(·|prefix) ‖ π(·|prefix))."""
    base, model, mask = _kl_inputs()
    out, bad = as_tensor(fn(base.clone(), model.clone(), mask.clone()), "kl_on_new_task")
    if bad:
        return bad
    per_position = (base.exp() * (base - model)).sum(-1)
    want = (per_position * mask).sum(-1)
    if out.shape != want.shape:
        if out.dim() == 0:
            return fail("expected one KL per completion, shape (B,), got a scalar: sum over positions, not over "
                         "the batch.")
        return fail(f"expected shape {tuple(want.shape)} (one KL per completion), got {tuple(out.shape)}.")
    o = out.detach().float()
    if torch.allclose(o, want, atol=1e-5):
        return Verdict("PASS", "exact KL(π0 ‖ π) per generated position, summed over each completion.")
    reverse = ((model.exp() * (model - base)).sum(-1) * mask).sum(-1)
    if torch.allclose(o, reverse, atol=1e-5):
        return fail("direction: this is KL(π ‖ π0). RL's Razor uses KL(π0 ‖ π): weight by the *base* model's "
                     "probabilities, Σ_v π0(v) (log π0(v) − log π(v)).")
    if torch.allclose(o, (per_position * mask).sum(-1) / mask.sum(-1), atol=1e-5):
        return fail("this is the mean per position; the KL of a completion is the sum over its positions.")
    if torch.allclose(o, per_position.sum(-1), atol=1e-5):
        return fail("the mask is ignored: prompt and padding positions were summed too.")
    if torch.allclose(o, -want, atol=1e-5):
        return fail("sign: KL is Σ π0 (log π0 − log π), which is never negative.")
    if torch.allclose(o, ((base - model).sum(-1) * mask).sum(-1), atol=1e-4):
        return fail("the log-ratio is summed over the vocabulary without the weights π0(v) = exp(log π0(v)).")
    return fail(f"values differ from the reference by up to {(o - want).abs().max().item():.3g}.")


@register("r_squared")
def _check_r_squared(fn) -> Verdict:
    """fn(x, y) -> R² of the least-squares line y ≈ a·x + b."""
    x = np.array([0.5, 1.0, 1.5, 2.5, 3.0, 4.0])
    y = np.array([0.05, 0.02, 0.20, 0.18, 0.41, 0.39])
    try:
        got = float(fn(x.copy(), y.copy()))
    except (TypeError, ValueError):
        return fail("expected a number.")
    a, b = np.polyfit(x, y, 1)
    want = 1 - ((y - (a * x + b)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    if abs(got - want) < 1e-6:
        flat = fn(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0]))
        if abs(float(flat) - 0.25) > 1e-6:
            return fail(f"right on the first test but {float(flat):.4f} instead of 0.2500 on x=[1,2,3], y=[1,3,2].")
        return Verdict("PASS", "1 − SS_res / SS_tot of the fitted line.")
    r = np.corrcoef(x, y)[0, 1]
    if abs(got - r) < 1e-6:
        return fail("this is the correlation r; R² of a straight-line fit is its square.")
    slope0 = (x * y).sum() / (x * x).sum()
    if abs(got - (1 - ((y - slope0 * x) ** 2).sum() / ((y - y.mean()) ** 2).sum())) < 1e-6:
        return fail("the line is forced through the origin: fit an intercept too (np.polyfit(x, y, 1)).")
    if abs(got - (1 - ((y - (a * x + b)) ** 2).sum() / (y ** 2).sum())) < 1e-6:
        return fail("SS_tot must be taken around the mean of y: Σ (y − ȳ)².")
    if abs(got - ((y - (a * x + b)) ** 2).sum() / ((y - y.mean()) ** 2).sum()) < 1e-6:
        return fail("this is SS_res / SS_tot, the unexplained fraction; R² is 1 minus it.")
    return fail(f"got {got:.4f}, expected {want:.4f}.")


def _oracle_inputs():
    """Three images: π0 uniform over 10 labels; π0 with 0.8 on the right parity; π0 sure and right (0 elsewhere)."""
    p0 = torch.stack([torch.full((10,), 0.1), torch.tensor([0.04, 0.16] * 5), torch.zeros(10)]).double()
    p0[2, 4] = 1.0
    correct = (torch.arange(10)[None, :] % 2) == torch.tensor([0, 1, 0])[:, None]  # digits even, odd, even
    return p0, correct


@register("oracle_kl")
def _check_oracle_kl(fn) -> Verdict:
    """fn(p0 (N, 10) probabilities, correct (N, 10) bool) -> (KL(q ‖ π0), KL(π0 ‖ q)), each (N,), with q = π0
    restricted to the correct labels and renormalized."""
    p0, correct = _oracle_inputs()
    try:
        out = fn(p0.clone(), correct.clone())
        q_base, base_q = out
    except (TypeError, ValueError):
        return fail("expected two tensors: (KL(q ‖ π0), KL(π0 ‖ q)), one value per image each.")
    a, bad = as_tensor(q_base, "the first value, KL(q ‖ π0)")
    if bad:
        return bad
    b, bad = as_tensor(base_q, "the second value, KL(π0 ‖ q)")
    if bad:
        return bad
    a, b = a.detach().double().flatten(), b.detach().double().flatten()
    if a.shape != (3,) or b.shape != (3,):
        return fail(f"expected one value per image, shape (3,) each, got {tuple(a.shape)} and {tuple(b.shape)}.")
    want_a = torch.tensor([np.log(2), -np.log(0.8), 0.0], dtype=torch.float64)
    if torch.isnan(a).any() or torch.isnan(b).any():
        return fail("NaN: a label with probability 0 contributes 0 · log 0, which is 0 by convention "
                    "(torch.xlogy, or sum only where the weight is positive).")
    if torch.isinf(a[:2]).all() and torch.allclose(b[:2], want_a[:2], atol=1e-6):
        return fail("the two directions are swapped: KL(q ‖ π0), weighted by q, is the finite one.")
    if not torch.allclose(a, want_a, atol=1e-6):
        if torch.allclose(a, -want_a, atol=1e-6):
            return fail("sign: KL(q ‖ π0) = Σ q log(q / π0) = −log π0(correct) ≥ 0.")
        return fail(f"KL(q ‖ π0) should be −log π0(correct | x): {want_a.tolist()} on the three test images; got "
                    f"{[round(v, 4) for v in a.tolist()]}. Did you renormalize q over the correct labels?")
    if not (torch.isinf(b[:2]).all() and (b[:2] > 0).all()):
        return fail("KL(π0 ‖ q) must be +inf where π0 gives a wrong label any probability and q gives it none: "
                    f"got {[round(v, 4) for v in b[:2].tolist()]} on the first two images.")
    if abs(float(b[2])) > 1e-9:
        return fail(f"on the third image π0 is already correct for sure, so q = π0 and KL(π0 ‖ q) = 0; got "
                    f"{float(b[2]):.4g}.")
    return Verdict("PASS", "KL(q ‖ π0) = −log π0(correct), finite; KL(π0 ‖ q) infinite unless π0 never errs.")
