"""Checkers for notebook 05_dpo_nll."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import Verdict, as_tensor, fail, register


def _dpo_inputs():
    g = torch.Generator().manual_seed(5)
    pc, pr, rc, rr = (torch.randn(6, generator=g) * 3 - 8 for _ in range(4))
    return pc, pr, rc, rr


def _dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


@register("dpo_loss")
def _check_dpo_loss(fn) -> Verdict:
    """fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta) -> scalar:
    mean of −log σ(β · ((log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))))."""
    pc, pr, rc, rr = _dpo_inputs()
    beta = 0.5
    leaf = pc.clone().requires_grad_(True)
    out, bad = as_tensor(fn(leaf, pr.clone(), rc.clone(), rr.clone(), beta), "dpo_loss")
    if bad:
        return bad
    if out.dim() != 0:
        return fail(f"expected a scalar loss (the mean over pairs), got shape {tuple(out.shape)}.")
    if not out.requires_grad:
        return fail("the loss carries no gradient: keep the policy log-probs in the graph (no .detach(), .item() "
                     "or torch.no_grad()).")
    want = _dpo(pc, pr, rc, rr, beta)
    o = out.detach()
    if torch.allclose(o, want, atol=1e-5):
        # a huge negative margin: log(sigmoid(x)) underflows to log(0) = -inf, logsigmoid does not
        far = fn(torch.tensor([-400.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0)
        if not torch.isfinite(torch.as_tensor(far)).all():
            return fail("right on ordinary inputs, but a pair with β·h = −400 gives an infinite loss: "
                         "log(sigmoid(x)) underflows to log 0; use F.logsigmoid(x).")
        return Verdict("PASS", "−log σ(β·h) averaged over pairs, h the difference of the two log-ratios.")
    h = (pc - rc) - (pr - rr)
    diagnoses = [
        (F.logsigmoid(beta * h).mean(), "sign: the loss is −log σ(β·h); without the minus you maximize the loss."),
        (-F.logsigmoid(beta * ((pr - rr) - (pc - rc))).mean(),
         "chosen and rejected are swapped: h = (chosen log-ratio) − (rejected log-ratio)."),
        (-F.logsigmoid(beta * (pc - pr)).mean(),
         "the reference is missing: DPO compares log-ratios log π/π_ref, not the raw log-probs."),
        (-F.logsigmoid(h).mean(), "β is missing: the logit is β·h."),
        (-beta * F.logsigmoid(h).mean(), "β multiplies the loss instead of going inside the sigmoid: σ(β·h)."),
        (-F.logsigmoid(beta * h).sum(), "sum over pairs: take the mean so the loss does not grow with batch size."),
        (-F.logsigmoid(beta * ((pc + rc) - (pr + rr))).mean(),
         "log π/π_ref is log π − log π_ref (a difference of log-probs), not a sum."),
    ]
    for value, msg in diagnoses:
        if torch.allclose(o, value, atol=1e-5):
            return fail(msg)
    return fail(f"got {o.item():.5f}, expected {want.item():.5f} on six random pairs with β = {beta}.")
