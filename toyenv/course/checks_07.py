"""Checkers for notebook 07_mode_covering_vs_seeking.

Both exercises get `(target, policy, x)`: two `toyenv.mixtures.Mixture`s and a batch of samples. The policy is
built from parameters that require gradients, so the checkers compare the learner's value *and* its gradient
with the reference, and name the usual mistakes from what the wrong answer matches.
"""
from __future__ import annotations

import torch

from .checks import Verdict, as_tensor, fail, register

N_SAMPLES = 2000


def _setup(sample_from: str):
    """A fixed target, a fresh policy (leaf parameters that require grad) and seeded samples of `sample_from`."""
    from toyenv.mixtures import Mixture

    # Unequal weights and widths, so that swapped arguments or a missing term give clearly different numbers.
    target = Mixture([0.3, 0.7], [-2.0, 3.0], [0.8, 1.3])
    params = (torch.tensor([0.2, -0.1], dtype=torch.float64, requires_grad=True),
              torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True),
              torch.tensor([0.1, -0.2], dtype=torch.float64, requires_grad=True))
    policy = Mixture.from_params(*params)
    g = torch.Generator().manual_seed(7)
    x = (target if sample_from == "target" else policy).sample(N_SAMPLES, g)
    return target, policy, params, x


def _grads(loss: torch.Tensor, params) -> torch.Tensor | None:
    """All parameter gradients of `loss` as one flat vector (zeros where unused); None if no graph reaches them."""
    if not loss.requires_grad:
        return None
    gs = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, gs)])


def _close(a, b, rtol: float = 1e-6) -> bool:
    if a is None or b is None:
        return False
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=1e-9))


def _scalar(out, what: str):
    """(the learner's output as a 0-d tensor, None) or (None, FAIL verdict) for a wrong type or shape."""
    out, bad = as_tensor(out, what)
    if bad:
        return None, bad
    if out.numel() != 1:
        if tuple(out.shape) == (N_SAMPLES,):
            return None, fail(f"expected one number, got one value per sample (shape {tuple(out.shape)}): "
                               "average them over the batch with .mean().")
        return None, fail(f"expected a single number (a 0-d tensor), got shape {tuple(out.shape)}.")
    return out.reshape(()), None


@register("forward_kl_from_samples")
def _check_forward_kl_from_samples(fn) -> Verdict:
    """fn(target, policy, x ~ target) -> mean(log target(x) - log policy(x)), differentiable in the policy."""
    from toyenv.mixtures import kl

    target, policy, params, x = _setup("target")
    out, bad = _scalar(fn(target, policy, x.clone()), "my_forward_kl")
    if bad:
        return bad
    log_t, log_p = target.log_prob(x), policy.log_prob(x)
    ref = (log_t - log_p).mean()
    v = out.detach().double()
    if not _close(v, ref):
        n = len(x)
        if _close(v, -ref):
            return fail(f"sign flipped (arguments swapped): you returned {v.item():.4f}, the estimate is {ref.item():.4f}. "
                         "KL(target || policy) averages log target(x) - log policy(x) over the target's samples.")
        if _close(v, n * ref):
            return fail(f"this is the sum over the {n} samples; the Monte-Carlo estimate is their mean.")
        if _close(v, -log_p.mean()):
            return fail("this is the SFT loss -mean log policy(x) (the cross-entropy): it has the same gradient, but "
                         "the KL also adds mean log target(x), which does not depend on the policy.")
        if _close(v, log_p.mean()):
            return fail("this is the mean log-likelihood log policy(x); the estimate is mean(log target(x) - log policy(x)).")
        if _close(v, kl(target, policy.detach()), rtol=1e-5):
            return fail("this is the exact KL (by quadrature); the exercise asks for the estimate from the samples x.")
        if _close(v, kl(policy.detach(), target), rtol=1e-5):
            return fail("this is the exact reverse KL(policy || target); the exercise asks for the forward KL "
                         "estimated from the target's samples x.")
        return fail(f"you returned {v.item():.4f}; the estimate mean(log target(x) - log policy(x)) on these samples "
                     f"is {ref.item():.4f}.")
    got = _grads(out, params)
    if got is None or not bool(got.abs().sum() > 0):
        return fail("the value is right, but no gradient reaches the policy's parameters: compute it from "
                     "policy.log_prob(x) as a tensor (no .detach(), .item() or torch.no_grad()), so SFT can descend it.")
    want = _grads(ref, params)
    if not _close(got, want):
        return fail(f"the value is right but the gradient differs by up to {(got - want).abs().max().item():.3g}: "
                     "part of the policy's log-probability was detached.")
    return Verdict("PASS", f"value and gradient match mean(log target(x) - log policy(x)) on {N_SAMPLES} target samples.")


@register("reinforce_reverse_kl")
def _check_reinforce(fn) -> Verdict:
    """fn(target, policy, x ~ policy) -> surrogate loss mean((w - mean w) * log policy(x)), w = (log policy - log target)(x) detached."""
    from toyenv.mixtures import kl

    target, policy, params, x = _setup("policy")
    out, bad = _scalar(fn(target, policy, x.clone()), "my_reinforce_loss")
    if bad:
        return bad
    got = _grads(out, params)
    if got is None or not bool(got.abs().sum() > 0):
        return fail("no gradient reaches the policy's parameters: the loss must contain log policy(x) with its graph "
                     "(detach only the weight log policy(x) - log target(x)).")
    log_p, log_t = policy.log_prob(x), target.log_prob(x)
    w = (log_p - log_t).detach()
    n = len(x)
    want = _grads(((w - w.mean()) * log_p).mean(), params)
    if _close(got, want):
        return Verdict("PASS", f"the gradient matches the REINFORCE estimate of grad KL(policy || target) with a "
                               f"batch-mean baseline, on {N_SAMPLES} policy samples.")
    candidates = [
        (-want, "sign flipped: descending this loss would *increase* the KL. The weight is log policy(x) - log target(x) "
                "(minus the reward), and the loss is + mean(weight * log policy(x))."),
        (_grads((w * log_p).mean(), params),
         "no baseline: this is unbiased too, but noisy. Subtract the batch mean of the weights before multiplying by "
         "log policy(x) (as the notebook's version does)."),
        (_grads(-(w * log_p).mean(), params), "sign flipped, and no baseline subtracted."),
        (n * want, f"summed over the {n} samples: average them (.mean()), so the step size does not grow with the batch."),
        (_grads((w * log_p).sum(), params), "summed over the samples and no baseline: use the mean, and subtract the "
                                           "batch mean of the weights."),
        (_grads((((log_p - log_t) - (log_p - log_t).mean()) * log_p).mean(), params),
         "the weight log policy(x) - log target(x) is not detached: autograd then also differentiates the weight, which "
         "adds a wrong term. Treat it as a fixed reward: .detach() it."),
        (_grads(((log_p - log_t) * log_p).mean(), params),
         "the weight log policy(x) - log target(x) is not detached (and there is no baseline): .detach() it, then "
         "subtract its batch mean."),
        (_grads((log_p - log_t).mean(), params),
         "this differentiates the log-ratio at fixed samples (k1 used as a loss, notebook 02): its gradient is zero "
         "in expectation. Multiply the detached weight by log policy(x) (the score function)."),
        (_grads(((w - w.mean()) * log_p.exp()).mean(), params),
         "you multiplied by policy(x); the score function is the gradient of log policy(x), so multiply by log policy(x)."),
        (_grads(kl(policy, target), params),
         "this is the gradient of the exact reverse KL (by quadrature); the exercise asks for the REINFORCE estimate "
         "from the policy's samples x, which is all an RL learner has."),
    ]
    for grad, message in candidates:
        if grad is not None and _close(got, grad):
            return fail(message)
    return fail(f"the gradient differs from the REINFORCE estimate mean((w - mean w) * grad log policy(x)), "
                 f"w = log policy(x) - log target(x), by up to {(got - want).abs().max().item():.3g}.")
