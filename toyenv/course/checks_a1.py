"""Checkers for appendix notebook A1_policy_gradients."""
from __future__ import annotations

import torch

from .checks import Verdict, answer_dict, as_tensor, fail, register

# The bug hunt on the "conceptual GRPO loss": what its KL term really does (keys of GRPO_BUG_OPTIONS) and what its
# gradient is at the first iteration on a batch (keys of GRPO_BUG_GRADIENT_OPTIONS).
GRPO_BUG_OPTIONS = {
    "ref": "pulls the policy back toward the reference model, like GRPO's KL penalty",
    "old": "penalizes moving away from pi_old, the policy that sampled the batch, instead of from the reference",
    "away": "rewards moving away from pi_old, the policy that sampled the batch; nothing in it refers to pi_ref",
    "nothing": "is exactly zero and has no gradient at all",
}
GRPO_BUG_GRADIENT_OPTIONS = {
    "zero": "zero: the term is 0 at the first iteration, so is its gradient",
    "down": "beta * grad log pi_theta(y): it pushes down the log-probability of every sampled completion",
    "forward": "the gradient of the forward KL(pi_ref || pi_theta)",
}
GRPO_BUG_ANSWERS = {"effect": "away", "gradient": "down"}


def _groups(seed: int = 0) -> tuple[torch.Tensor, int]:
    g = torch.Generator().manual_seed(seed)
    k = 4
    R = torch.tensor([5.0, -1.0, -1.0, -2.0]).repeat(3)[torch.randperm(12, generator=g)]
    R[8:] = 2.0  # one group where every completion scored the same
    return R, k


def _check_group_advantages(fn, algorithm: str) -> Verdict:
    from toyenv.trainers.rl import advantages

    R, k = _groups()
    out, bad = as_tensor(fn(R.clone(), k), f"{algorithm}_advantages")
    if bad:
        return bad
    want = advantages(R, algorithm, k)
    if out.shape != want.shape:
        if tuple(out.shape) == (R.numel() // k, k):
            return fail(f"expected one advantage per completion, shape {tuple(want.shape)}, got {tuple(out.shape)}: "
                         "flatten the (groups, k) view back at the end.")
        return fail(f"expected shape {tuple(want.shape)} for {R.numel()} rewards, got {tuple(out.shape)}.")
    out = out.detach().float()
    if torch.allclose(out, want, atol=1e-4):
        return None
    G = R.view(-1, k)
    if torch.allclose(out, R - R.mean(), atol=1e-4):
        return fail("you subtracted the mean of the whole batch; the baseline is computed within each prompt's group "
                     "(rows i*k .. i*k+k-1 share a prompt).")
    if torch.allclose(out, (G - G.mean(1, keepdim=True)).flatten(), atol=1e-4) and algorithm == "rloo":
        return fail("this is reward minus the group mean *including* the completion itself; RLOO leaves it out: "
                     "the mean of the other k-1 (equivalently, k/(k-1) times your value).")
    if algorithm == "grpo":
        centred = G - G.mean(1, keepdim=True)
        if torch.allclose(out, centred.flatten(), atol=1e-4):
            return fail("the group mean is subtracted, but GRPO also divides by the group's standard deviation.")
        if torch.allclose(out, (centred / (G.std(1, unbiased=False, keepdim=True) + 1e-4)).flatten(), atol=1e-4):
            return fail("you divided by the population std (unbiased=False); this course, like TRL, uses the sample "
                         "std (torch's default, unbiased=True).")
        if torch.isnan(out).any():
            return fail("NaN in the group whose rewards are all equal: its std is 0; add the 1e-4 to the std so "
                         "such a group gets advantage 0.")
        if torch.allclose(out, (centred / (G.std(1, keepdim=True) + 1e-8)).flatten(), atol=1e-4) or \
                torch.allclose(out, (centred / G.std(1, keepdim=True).clamp(min=1e-4)).flatten(), atol=1e-4):
            return None
    if torch.allclose(out, -want, atol=1e-4):
        return fail("sign flipped: a completion that scored above its baseline must get a positive advantage.")
    return fail(f"values differ from the reference by up to {(out - want).abs().max().item():.3g} "
                 f"(rewards {R.tolist()}, k={k}).")


@register("rloo_advantages")
def _check_rloo(fn) -> Verdict:
    """fn(rewards (B,), k) -> (B,) leave-one-out advantages, groups of k contiguous rows."""
    bad = _check_group_advantages(fn, "rloo")
    return bad or Verdict("PASS", "matches the leave-one-out baseline on 3 groups of 4 (one with equal rewards).")


@register("grpo_advantages")
def _check_grpo(fn) -> Verdict:
    """fn(rewards (B,), k) -> (B,) (R - group mean) / (group std + 1e-4)."""
    bad = _check_group_advantages(fn, "grpo")
    return bad or Verdict("PASS", "matches the group-normalized advantages on 3 groups of 4 (one with equal rewards).")


@register("ppo_clipped_loss")
def _check_ppo(fn) -> Verdict:
    """fn(ratio, adv, epsilon) -> per-element loss -min(r A, clip(r, 1-eps, 1+eps) A)."""
    from toyenv.trainers.rl import clipped_objective

    ratio = torch.tensor([0.5, 0.75, 0.9, 1.0, 1.1, 1.3, 2.0] * 2)
    adv = torch.tensor([1.0] * 7 + [-2.0] * 7)
    eps = 0.2
    r = ratio.clone().requires_grad_(True)
    out, bad = as_tensor(fn(r, adv.clone(), eps), "ppo_clipped_loss")
    if bad:
        return bad
    want = clipped_objective(ratio, adv, eps)
    if out.shape != want.shape:
        return fail(f"expected one loss per element, shape {tuple(want.shape)}, got {tuple(out.shape)} (no mean here).")
    o = out.detach()
    if torch.allclose(o, want, atol=1e-6):
        if not out.requires_grad:
            return fail("the values are right but no gradient flows to the ratio: keep the computation in torch.")
        out.sum().backward()
        rg = clipped_objective(ratio.clone().requires_grad_(True), adv, eps)
        want_grad = torch.where((rg.detach() == -ratio * adv), -adv, torch.zeros_like(adv))
        if r.grad is None or not torch.allclose(r.grad, want_grad, atol=1e-6):
            return fail("the values match but the gradient does not: use clamp on the ratio and torch.minimum.")
        return Verdict("PASS", "values and gradients match on 14 (ratio, advantage) cells, both signs of A.")
    if torch.allclose(o, -want, atol=1e-6):
        return fail("sign flipped: the loss is minus the clipped surrogate (we maximize the surrogate).")
    if torch.allclose(o, -torch.maximum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv), atol=1e-6):
        return fail("you took the max of the two surrogates; PPO takes the min (the pessimistic bound).")
    if torch.allclose(o, -(ratio.clamp(1 - eps, 1 + eps) * adv), atol=1e-6):
        return fail("only the clipped term: PPO takes the min of the clipped and unclipped surrogates, so large "
                     "ratios that make things worse are still penalized.")
    if torch.allclose(o, -(ratio * adv), atol=1e-6):
        return fail("no clipping: this is the plain importance-weighted surrogate -r*A.")
    return fail(f"values differ from -min(r*A, clip(r, 1-eps, 1+eps)*A) by up to {(o - want).abs().max().item():.3g}.")


@register("grpo_bug_hunt")
def _check_grpo_bug(answers) -> Verdict:
    """`answers` is a dict {"effect": key of GRPO_BUG_OPTIONS, "gradient": key of GRPO_BUG_GRADIENT_OPTIONS}."""
    answers, bad = answer_dict(answers, GRPO_BUG_ANSWERS, "{'effect': ..., 'gradient': ...}")
    if bad:
        return bad
    if answers["effect"] not in GRPO_BUG_OPTIONS:
        return fail(f"'effect' must be one of {sorted(GRPO_BUG_OPTIONS)}, got {answers['effect']!r}.")
    if answers["gradient"] not in GRPO_BUG_GRADIENT_OPTIONS:
        return fail(f"'gradient' must be one of {sorted(GRPO_BUG_GRADIENT_OPTIONS)}, got {answers['gradient']!r}.")
    if answers["effect"] == "ref":
        return fail("look at which two log-probs the KL term subtracts: neither comes from the reference model.")
    if answers["effect"] == "old":
        return fail("it does compare pi_theta with pi_old, but check the sign: averaged over samples of pi_old, "
                     "log pi_theta(y) - log pi_old(y) is -KL(pi_old || pi_theta), and the loss is minimized. "
                     "Look at what gradient descent on the term alone did to KL(pi_old || pi_theta) above.")
    if answers["effect"] == "nothing":
        return fail("its value is 0 while pi_theta = pi_old, but its gradient is not: compare the gradient cell above.")
    if answers["gradient"] == "forward":
        return fail("that is the gradient of a k3 penalty toward pi_ref (the last line of the gradient cell); the "
                     "term has no pi_ref in it.")
    if answers["gradient"] != "down":
        return fail("the value is 0 when new == old, but its gradient is d/dtheta of log pi_theta(y): "
                     "run the gradient cell above and compare.")
    return Verdict("PASS", "its KL term rewards moving away from pi_old (in expectation it is -KL(pi_old || pi_theta)), "
                           "its gradient pushes sampled completions down, and nothing ties the policy to the reference.")
