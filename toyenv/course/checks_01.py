"""Checkers for notebook 01_kl_divergence."""
from __future__ import annotations

import torch

from .checks import Verdict, as_tensor, fail, register


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-6) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, equal_nan=False))


@register("reverse_kl")
def _check_reverse_kl(fn) -> Verdict:
    """fn(policy_logits, ref_logits) -> KL(softmax(policy) || softmax(ref)) over the last axis."""
    from toyenv.kl import exact_categorical

    g = torch.Generator().manual_seed(0)
    for shape in [(5, 7), (2, 3, 11), (4,)]:
        pol = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
        ref = torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 1  # logits need not be normalized
        out, bad = as_tensor(fn(pol.clone(), ref.clone()), "reverse_kl")
        if bad:
            return bad
        want = exact_categorical(pol, ref)
        out = out.detach().double()
        lp, lq = pol.log_softmax(-1), ref.log_softmax(-1)
        p = lp.exp()
        if out.shape != want.shape:
            if tuple(out.shape) == tuple(shape):
                return fail(f"expected one KL per distribution, shape {tuple(want.shape)} for logits {tuple(shape)}, "
                             f"got {tuple(out.shape)}: these look like per-category terms; sum them over the last axis.")
            if out.numel() == 1 and want.numel() > 1:
                return fail(f"expected shape {tuple(want.shape)} (one KL per row), got a single number: "
                             "sum over the last axis only, not over the batch too.")
            return fail(f"expected shape {tuple(want.shape)} for logits {tuple(shape)}, got {tuple(out.shape)}.")
        if _close(out, want):
            continue
        n = shape[-1]
        if _close(out, exact_categorical(ref, pol)):
            return fail("this is the forward KL(ref || policy): the arguments are swapped. The RLHF penalty averages "
                         "log(pi/pi_ref) under the policy's own distribution, so weight by softmax(policy_logits).")
        if _close(out, -want):
            return fail(f"sign flipped: you returned {out.flatten()[0].item():.4f} where KL is "
                         f"{want.flatten()[0].item():.4f}; KL(P || Q) = sum P (log P - log Q) is never negative.")
        if _close(out, want / n):
            return fail(f"this is the mean over the {n} categories; KL is the sum over the last axis.")
        if _close(out, (p * (pol - ref)).sum(-1)):
            return fail("you used raw logits as log-probabilities: apply log_softmax to both logits first "
                         "(logits are only defined up to a constant).")
        if _close(out, (p * (p.log() - ref.softmax(-1))).sum(-1)) or _close(out, (p * (p - ref.softmax(-1))).sum(-1)):
            return fail("the log of the reference is missing: use log_softmax(ref_logits), not softmax(ref_logits).")
        if _close(out, (lp - lq).sum(-1)):
            return fail("the log-ratios are summed without the weights P(x): multiply log P - log Q by softmax(policy_logits).")
        diff = (out - want).abs().max().item()
        return fail(f"values differ from sum softmax(policy) * (log_softmax(policy) - log_softmax(ref)) by up to {diff:.3g} "
                     f"(logits shape {tuple(shape)}).")
    return Verdict("PASS", "matches the exact KL(policy || ref) over the last axis on 3 random batches of logits.")


def _forward_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of data probabilities: one-hot (SFT labels), with zeros, and dense; random model logits."""
    g = torch.Generator().manual_seed(1)
    B, V = 6, 8
    data = torch.rand(B, V, generator=g, dtype=torch.float64)
    data[0] = 0.0
    data[0, 3] = 1.0  # one-hot, as an SFT label
    data[1] = 0.0
    data[1, 0] = 1.0
    data[2, :4] = 0.0  # some categories the data never uses
    data[3, ::2] = 0.0
    data = data / data.sum(-1, keepdim=True)
    logits = torch.randn(B, V, generator=g, dtype=torch.float64) * 2
    return data, logits


@register("forward_kl")
def _check_forward_kl(fn) -> Verdict:
    """fn(data_probs (B, V), model_logits (B, V)) -> (B,) KL(data || softmax(model_logits)), with 0 log 0 = 0."""
    data, logits = _forward_inputs()
    B, V = data.shape
    out, bad = as_tensor(fn(data.clone(), logits.clone()), "forward_kl")
    if bad:
        return bad
    out = out.detach().double()
    lq = logits.log_softmax(-1)
    logd = torch.where(data > 0, data.log(), torch.zeros_like(data))
    want = (data * (logd - lq)).sum(-1)
    if out.shape != want.shape:
        if tuple(out.shape) == (B, V):
            return fail(f"expected shape {(B,)} (one KL per row), got {(B, V)}: sum the per-category terms over the last axis.")
        if out.numel() == 1:
            return fail(f"expected shape {(B,)} (one KL per row), got a single number: do not reduce over the batch.")
        return fail(f"expected shape {(B,)} for inputs of shape {(B, V)}, got {tuple(out.shape)}.")
    if _close(out, want):
        return Verdict("PASS", "matches KL(data || model) on 6 rows (one-hot, partly zero and dense data), with 0 log 0 = 0.")
    if torch.isnan(out).any():
        rows = torch.isnan(out).nonzero().flatten().tolist()
        return fail(f"NaN in row(s) {rows}, where the data has zero probabilities: 0 * log 0 gives NaN in floating point; "
                     "categories with data probability 0 contribute 0 (use torch.where or torch.xlogy).")
    finite = torch.isfinite(out)
    swapped = (lq.exp() * (lq - data.log())).sum(-1)  # KL(model || data): +inf on rows with zeros in the data
    if torch.isinf(out).any() and torch.isinf(swapped).any() and (
        _close(out[finite], swapped[finite]) and bool((torch.isinf(out) == torch.isinf(swapped)).all())
    ):
        return fail("this is the reverse KL(model || data): the arguments are swapped. It is infinite on rows where the "
                     "data has zeros; SFT's forward KL weights log(data/model) by the data probabilities.")
    if torch.isinf(out).any():
        return fail(f"infinite value(s) in row(s) {torch.isinf(out).nonzero().flatten().tolist()}: the forward KL is finite "
                     "whenever the model gives every category some probability (softmax always does).")
    if _close(out, -want):
        return fail("sign flipped: KL(data || model) = sum data * (log data - log model) is never negative.")
    cross_entropy = -(data * lq).sum(-1)
    if _close(out, cross_entropy):
        return fail("this is the cross-entropy -sum data * log model; the KL subtracts the data's entropy "
                     "(the two agree only on one-hot rows, here rows 0 and 1).")
    if _close(out, (data * (logd - logits)).sum(-1)):
        return fail("you used raw logits as log-probabilities: apply log_softmax to model_logits first.")
    if _close(out, (data * (logd - logits.softmax(-1))).sum(-1)):
        return fail("the log of the model is missing: use log_softmax(model_logits), not softmax(model_logits).")
    if _close(out, want / V):
        return fail(f"this is the mean over the {V} categories; KL is the sum over the last axis.")
    diff = (out[finite] - want[finite]).abs().max().item() if finite.any() else float("nan")
    return fail(f"values differ from sum data * (log data - log_softmax(model_logits)) by up to {diff:.3g}.")
