"""Checkers for notebook 03_kl_penalty."""
from __future__ import annotations

import torch

from .checks import Verdict, as_tensor, fail, register


def _kl_reward_inputs():
    g = torch.Generator().manual_seed(3)
    B, T = 4, 10
    scores = torch.randn(B, generator=g) * 2
    logp = -torch.rand(B, T, generator=g) * 3
    ref_logp = -torch.rand(B, T, generator=g) * 3
    mask = torch.zeros(B, T)
    for b, (start, n) in enumerate([(4, 3), (5, 5), (3, 2), (6, 4)]):
        mask[b, start:start + n] = 1.0
    return scores, logp, ref_logp, mask


@register("kl_reward")
def _check_kl_reward(fn) -> Verdict:
    """fn(scores (B,), logp (B,T), ref_logp (B,T), mask (B,T), beta) -> (B,) r - beta * sum_t k1 over generated tokens."""
    scores, logp, ref_logp, mask = _kl_reward_inputs()
    beta = 0.1
    lp = logp.clone().requires_grad_(True)
    out, bad = as_tensor(fn(scores.clone(), lp, ref_logp.clone(), mask.clone(), beta), "kl_reward")
    if bad:
        return bad
    k1 = (logp - ref_logp) * mask
    want = scores - beta * k1.sum(1)
    if out.shape != want.shape:
        if tuple(out.shape) == tuple(logp.shape):
            return fail(f"expected one reward per completion, shape {tuple(want.shape)}, got {tuple(out.shape)}: "
                         "sum the per-token KL over each completion.")
        return fail(f"expected shape {tuple(want.shape)}, got {tuple(out.shape)}.")
    o = out.detach()
    if torch.allclose(o, want, atol=1e-5):
        if out.requires_grad:
            return fail("the values are right, but gradients flow through the penalty: in the reward, the KL is a "
                         "number like the score (compute it under torch.no_grad() or .detach() it).")
        return Verdict("PASS", "r - beta * sum of k1 over generated tokens, one value per completion, no gradient.")
    if torch.allclose(o, scores + beta * k1.sum(1), atol=1e-5):
        return fail("sign: the reward is r - beta * KL with k1 = log pi - log pi_ref (more divergence, less reward); "
                     "you added the penalty or reversed the log-ratio.")
    if torch.allclose(o, scores - beta * (logp - ref_logp).sum(1), atol=1e-5):
        return fail("the prompt and padding positions are included: multiply the per-token KL by the mask.")
    if torch.allclose(o, scores - beta * k1.sum(1) / mask.sum(1), atol=1e-5):
        return fail("this is the per-token mean; the sequence-level KL is the sum over generated tokens.")
    if torch.allclose(o, scores - k1.sum(1), atol=1e-5):
        return fail("beta is missing: the penalty is beta * KL.")
    return fail(f"values differ from r - beta * sum_t (log pi - log pi_ref) by up to {(o - want).abs().max().item():.3g}.")


@register("adaptive_kl")
def _check_adaptive_kl(fn) -> Verdict:
    """fn(kl_coef, current_kl, target, horizon, n_steps) -> the new coefficient (Ziegler et al. 2019)."""
    from toyenv.trainers.rl import AdaptiveKLController

    cases = [(0.1, 12.0, 6.0, 10_000, 256), (0.1, 5.4, 6.0, 10_000, 256), (0.2, 0.0, 6.0, 1_000, 64),
             (0.05, 6.6, 6.0, 500, 100), (0.3, 6.0, 6.0, 1_000, 64)]
    for coef, kl, target, horizon, n in cases:
        c = AdaptiveKLController(coef, target, horizon)
        want = c.update(kl, n)
        got = fn(coef, kl, target, horizon, n)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return fail(f"expected a number (the new coefficient), got {type(got).__name__}.")
        if abs(got - want) < 1e-9:
            continue
        error = kl / target - 1
        if abs(got - coef * (1 + error * n / horizon)) < 1e-9:
            return fail(f"the error is not clipped: at KL {kl} with target {target}, KL/target - 1 = {error:.2f}; "
                         "clip it to [-0.2, 0.2] before scaling.")
        if abs(got - coef * (1 - min(max(error, -0.2), 0.2) * n / horizon)) < 1e-9:
            return fail("sign: KL above the target must *raise* the coefficient (pull harder toward the reference).")
        if abs(got - coef * (1 + min(max(error, -0.2), 0.2))) < 1e-9:
            return fail("the step is not scaled by n_steps / horizon: the coefficient should move a little per batch.")
        if abs(got - (coef + min(max(error, -0.2), 0.2) * n / horizon)) < 1e-9:
            return fail("the update is multiplicative: beta * (1 + clipped_error * n_steps / horizon).")
        return fail(f"for kl_coef={coef}, KL={kl}, target={target}, horizon={horizon}, n_steps={n}: "
                     f"expected {want:.6f}, got {got:.6f}.")
    return Verdict("PASS", "matches Ziegler et al.'s rule on 5 cases (above, below and at the target; clipped and not).")
