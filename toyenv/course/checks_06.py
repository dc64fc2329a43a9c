"""Checkers for notebook 06_margin_losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import Verdict, as_tensor, fail, register


@register("margin_loss")
def _check_margin_loss(fn) -> Verdict:
    """fn(chosen_rewards (B,), rejected_rewards (B,), margin (B,)) -> scalar: mean of −log σ(r_c − r_r − m)."""
    g = torch.Generator().manual_seed(6)
    r_c, r_r = torch.randn(8, generator=g), torch.randn(8, generator=g)
    m = torch.tensor([1.0, 2 / 3, 1 / 3, 0.0, 1.0, 0.0, 1 / 3, 2 / 3])
    leaf = r_c.clone().requires_grad_(True)
    out, bad = as_tensor(fn(leaf, r_r.clone(), m.clone()), "margin_loss")
    if bad:
        return bad
    if out.dim() != 0:
        return fail(f"expected a scalar loss (the mean over pairs), got shape {tuple(out.shape)}.")
    if not out.requires_grad:
        return fail("the loss carries no gradient: the reward model learns through it (no .detach() or .item()).")
    want = -F.logsigmoid(r_c - r_r - m).mean()
    o = out.detach()
    if torch.allclose(o, want, atol=1e-5):
        zero = fn(r_c.clone(), r_r.clone(), torch.zeros(8))
        bt = -F.logsigmoid(r_c - r_r).mean()
        if not torch.allclose(torch.as_tensor(zero).detach(), bt, atol=1e-5):
            return fail("right with margins, but with m = 0 it should be exactly the Bradley–Terry loss "
                         "−log σ(r_c − r_r).")
        far = fn(torch.tensor([-200.0]), torch.tensor([200.0]), torch.tensor([1.0]))
        if not torch.isfinite(torch.as_tensor(far)).all():
            return fail("a pair ranked wrong by 400 gives an infinite loss: log(sigmoid(x)) underflows; use "
                         "F.logsigmoid.")
        return Verdict("PASS", "−log σ(r_c − r_r − m), averaged; m = 0 gives back Bradley–Terry.")
    diagnoses = [
        (-F.logsigmoid(r_c - r_r + m).mean(), "the margin is added: subtract it, so a pair must lead by more than m "
                                              "before the loss relaxes."),
        (-F.logsigmoid(r_c - r_r).mean(), "the margin is ignored: this is plain Bradley–Terry."),
        (F.logsigmoid(r_c - r_r - m).mean(), "sign: the loss is −log σ(·)."),
        (-F.logsigmoid(r_r - r_c - m).mean(), "chosen and rejected are swapped: the logit is r_c − r_r − m."),
        (-F.logsigmoid(r_c - r_r - m).sum(), "sum over pairs: take the mean."),
        (-F.logsigmoid(r_c - r_r).mean() + m.mean(), "the margin goes inside the sigmoid, not outside the loss."),
    ]
    for value, msg in diagnoses:
        if torch.allclose(o, value, atol=1e-5):
            return fail(msg)
    return fail(f"got {o.item():.5f}, expected {want.item():.5f}.")


@register("rebel_loss")
def _check_rebel_loss(fn) -> Verdict:
    """fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, reward_chosen,
    reward_rejected, eta) -> scalar: mean of ((1/η)·h − (r_c − r_r))², h the log-ratio gap."""
    g = torch.Generator().manual_seed(16)
    pc, pr, rc, rr = (torch.randn(6, generator=g) * 2 - 6 for _ in range(4))
    w_c, w_r = torch.tensor([5.0, 5.0, -1.0, -2.0, 5.0, -1.0]), torch.tensor([-1.0, -3.0, -3.0, -3.0, -2.0, -2.0])
    eta = 4.0
    leaf = pc.clone().requires_grad_(True)
    out, bad = as_tensor(fn(leaf, pr.clone(), rc.clone(), rr.clone(), w_c.clone(), w_r.clone(), eta), "rebel_loss")
    if bad:
        return bad
    if out.dim() != 0:
        return fail(f"expected a scalar loss (the mean over pairs), got shape {tuple(out.shape)}.")
    if not out.requires_grad:
        return fail("the loss carries no gradient through the policy log-probs.")
    h = (pc - rc) - (pr - rr)
    dr = w_c - w_r
    want = ((h / eta - dr) ** 2).mean()
    o = out.detach()
    if torch.allclose(o, want, rtol=1e-5, atol=1e-5):
        return Verdict("PASS", "the squared error of h/η against the reward gap; zero where h = η·(r_c − r_r).")
    diagnoses = [
        (((eta * h - dr) ** 2).mean(), "η multiplies h; REBEL divides: (1/η)·h ≈ r_c − r_r, so the target gap is "
                                       "h = η·(r_c − r_r)."),
        (((h / eta + dr) ** 2).mean(), "sign of the reward gap: regress onto r_c − r_r, not r_r − r_c."),
        ((((pc - pr) / eta - dr) ** 2).mean(), "the reference is missing: h uses the log-ratios log π/π_ref."),
        (((h - dr) ** 2).mean(), "η is missing: the regression is of h/η onto the reward gap."),
        (((h / eta - dr) ** 2).sum(), "sum over pairs: take the mean."),
        ((h / eta - dr).abs().mean(), "REBEL is a least-squares regression: square the error, not its absolute "
                                      "value."),
        (-F.logsigmoid(h / eta * dr).mean(), "this is a logistic (DPO-like) loss; REBEL regresses: (h/η − Δr)²."),
    ]
    for value, msg in diagnoses:
        if torch.allclose(o, value, rtol=1e-5, atol=1e-5):
            return fail(msg)
    return fail(f"got {o.item():.5f}, expected {want.item():.5f} with η = {eta}.")
