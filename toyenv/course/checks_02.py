"""Checkers for notebook 02_kl_estimators."""
from __future__ import annotations

import torch

from .checks import Verdict, answer_dict, as_tensor, fail, register

# The bug hunt's snippets and what each one really computes (keys of KL_BUG_HUNT_OPTIONS).
KL_BUG_HUNT_OPTIONS = {
    "reverse": "the reverse KL(policy || ref), summed over tokens, averaged over the batch",
    "forward": "the forward KL(ref || policy)",
    "zero": "exactly zero, whatever the models",
    "nan": "NaN",
    "scaled": "the reverse KL divided by (sequence length x vocabulary size)",
}
KL_BUG_HUNT_ANSWERS = {"A": "zero", "B": "nan", "C": "forward", "D": "scaled", "E": "reverse"}


@register("k3")
def _check_k3(fn) -> Verdict:
    """fn(logp, logq) -> (r - 1) - log r per sample, r = exp(logq - logp)."""
    from toyenv.kl import k1, k2, k3

    g = torch.Generator().manual_seed(0)
    logp, logq = torch.randn(50, generator=g, dtype=torch.float64) - 2, torch.randn(50, generator=g, dtype=torch.float64) - 2
    out, bad = as_tensor(fn(logp.clone(), logq.clone()), "k3")
    if bad:
        return bad
    ref = k3(logp, logq)
    if out.shape != ref.shape:
        return fail(f"expected one estimate per sample, shape {tuple(ref.shape)}, got {tuple(out.shape)} (no averaging here).")
    out = out.detach().double()
    if torch.allclose(out, ref, atol=1e-8):
        return Verdict("PASS", "matches (r - 1) - log r with r = Q/P on 50 random samples; never negative.")
    if torch.allclose(out, k3(logq, logp), atol=1e-8):
        return fail("you used r = P/Q; Schulman's r is Q/P (the reference over the sampling distribution).")
    if torch.allclose(out, k1(logp, logq), atol=1e-8):
        return fail("this is k1 = log P - log Q; k3 adds (r - 1) to it.")
    if torch.allclose(out, k2(logp, logq), atol=1e-8):
        return fail("this is k2 = (log r)^2 / 2, not k3.")
    if (out < -1e-12).any():
        return fail(f"k3 is never negative, but you returned {out.min().item():.4f} for some sample.")
    return fail(f"values differ from (r - 1) - log r by up to {(out - ref).abs().max().item():.3g}.")


@register("masked_kl")
def _check_masked_kl(fn) -> Verdict:
    """fn(logp, ref_logp, mask) -> (B,) sum over generated tokens of logp - ref_logp (k1)."""
    g = torch.Generator().manual_seed(1)
    B, T = 4, 9
    logp = -torch.rand(B, T, generator=g) * 3
    ref_logp = -torch.rand(B, T, generator=g) * 3
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (start, n) in enumerate([(3, 4), (5, 4), (2, 2), (4, 5)]):
        mask[b, start : start + n] = True
    out, bad = as_tensor(fn(logp.clone(), ref_logp.clone(), mask.clone()), "masked_kl")
    if bad:
        return bad
    diff = logp - ref_logp
    ref = (diff * mask).sum(-1)
    if out.shape != ref.shape:
        hint = " Sum over the time axis: one number per sequence." if tuple(out.shape) == (B, T) else ""
        return fail(f"expected shape {tuple(ref.shape)} (one KL per sequence), got {tuple(out.shape)}.{hint}")
    out = out.detach().float()
    if torch.allclose(out, ref, atol=1e-5):
        return Verdict("PASS", "sums log pi - log pi_ref over the generated tokens only, one value per sequence.")
    if torch.allclose(out, diff.sum(-1), atol=1e-5):
        return fail("the prompt and padding positions are included: multiply by the mask before summing.")
    if torch.allclose(out, ref / mask.sum(-1), atol=1e-5):
        return fail("this is the per-token average; the sequence-level KL is the sum over generated tokens.")
    if torch.allclose(out, -ref, atol=1e-5):
        return fail("sign flipped: the estimate is log pi - log pi_ref (policy minus reference).")
    return fail(f"values differ from the masked sum by up to {(out - ref).abs().max().item():.3g}.")


def _grade_snippets(answers, key: dict, options: dict, example: str) -> tuple[dict | None, list[str], Verdict | None]:
    """Validate a {snippet: option key} answer against `key`: (answers, the wrong snippets, None), or a FAIL
    verdict for a malformed answer (not a dict, a snippet missing, an option that does not exist)."""
    answers, bad = answer_dict(answers, key, example, noun="snippet(s) ")
    if bad:
        return None, [], bad
    unknown = {k: v for k, v in answers.items() if v not in options}
    if unknown:
        return None, [], fail(f"{unknown} is not one of the options {sorted(options)}.")
    return answers, sorted(k for k, v in key.items() if answers[k] != v), None


@register("kl_bug_hunt")
def _check_bug_hunt(answers) -> Verdict:
    """`answers` is a dict snippet -> option key; the checker gets the dict itself, not a function."""
    answers, wrong, bad = _grade_snippets(answers, KL_BUG_HUNT_ANSWERS, KL_BUG_HUNT_OPTIONS, "{'A': 'zero', ...}")
    if bad:
        return bad
    if wrong:
        return fail(f"{len(wrong)} of {len(KL_BUG_HUNT_ANSWERS)} wrong: snippet(s) {', '.join(wrong)}. "
                     "Run them in the next cells and look at what F.kl_div expects for input and target.")
    return Verdict("PASS", "all five snippets identified.")


# The three placements whose expected gradient is exactly ∇KL(π ‖ π_ref) (toyenv.kl_gradients.PLACEMENTS).
REVERSE_KL_PLACEMENTS = ("k1 in the reward", "k2 as a loss", "k3 × π/π_old as a loss")


@register("kl_placements")
def _check_placements(fn) -> Verdict:
    """fn(logp, logq, logp_old) -> {placement: per-action surrogate} for REVERSE_KL_PLACEMENTS; each surrogate's
    exact expected gradient (toyenv.kl_gradients.surrogate_gradient, logp_old = logp.detach()) must be
    ∇KL(π ‖ π_ref), on three random 5-way policies."""
    from toyenv.kl_gradients import closed_form, surrogate_gradient

    gen = torch.Generator().manual_seed(4)
    examples = [(torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64))
                for _ in range(3)]
    diagnoses = {  # what a wrong surrogate's gradient equals instead, and why
        "zero": "its expected gradient is zero: autograd differentiated the estimate itself, and E[∇ log π] = 0 "
                "(in the reward the estimate is a number: detach it and multiply by log π)",
        "forward_kl": "it follows the forward KL(π_ref ‖ π): k3 as a loss without the importance ratio π/π_old",
        "minus_reverse_kl": "it points the wrong way, −∇KL(π ‖ π_ref): a sign is flipped",
        "half_chi2": "it follows ½χ²(π ‖ π_ref): the ratio in k3 is flipped (r = π/π_ref instead of π_ref/π)",
    }
    for key in REVERSE_KL_PLACEMENTS:
        for theta, phi in examples:
            def per_sample(logp, logq):
                out = fn(logp, logq, logp.detach())
                if not isinstance(out, dict) or key not in out:
                    raise KeyError(f"expected a dict with the keys {list(REVERSE_KL_PLACEMENTS)}")
                return out[key]
            try:
                g = surrogate_gradient(per_sample, theta, phi)
            except KeyError as e:
                return fail(str(e.args[0]) + ".")
            except ValueError as e:
                return fail(f"{key}: {e}.")
            if (g - closed_form("reverse_kl", theta, phi)).abs().max() < 1e-10:
                continue
            for name, why in diagnoses.items():
                if (g - closed_form(name, theta, phi)).abs().max() < 1e-10:
                    return fail(f"{key}: {why}.")
            return fail(f"{key}: its expected gradient is neither KL's (a biased placement, or a different "
                        "surrogate): the target is ∇KL(π ‖ π_ref).")
    return Verdict("PASS", "all three give exactly ∇KL(π ‖ π_ref) (to 1e-10, on three random 5-way policies).")


# The bug gallery: one-line snippets recreating KL bugs that shipped in public code, and what each really does
# (keys of KL_BUG_GALLERY_OPTIONS). Each wrong answer gets a sentence that says where to look.
KL_BUG_GALLERY_OPTIONS = {
    "correct": "nothing wrong: its expected gradient is ∇KL(π‖π_ref)",
    "forward": "a different regularizer, not a bug: it descends the forward KL(π_ref‖π)",
    "chi2": "it descends ½χ²(π‖π_ref) instead of the KL: the ratio inside k3 is upside down",
    "climbs": "it climbs the KL it should bound: the penalty has the wrong sign",
    "positions": "it compares distributions over positions, not over tokens: blind to a policy that is more likely "
                 "than the reference on every token",
    "biased": "a biased gradient: an estimator whose value is right, in a place where its gradient is not",
}
KL_BUG_GALLERY_ANSWERS = {"A": "chi2", "B": "climbs", "C": "climbs", "D": "positions", "E": "biased",
                          "F": "correct", "G": "forward"}
KL_BUG_GALLERY_HINTS = {
    "A": "which way round is the ratio? exp(logp - ref_logp) is π/π_ref, and Schulman's r is π_ref/π",
    "B": "follow the sign: a reward is maximized, so adding β·(log π − log π_ref) to it pays the policy for drifting",
    "C": "a loss is minimized: subtracting β·k3 from it maximizes the penalty",
    "D": "softmax over dim=-1 of a (B, T) tensor of per-token log-probs normalizes over the T positions of a sequence",
    "E": "k3 in the reward is multiplied by ∇log π like any reward: its value is an unbiased KL estimate, its "
         "gradient there is not ∇KL (the atlas's 'k3 in the reward' row)",
    "F": "k1 in the reward, detached, times ∇log π, is exactly the policy gradient of −β KL(π‖π_ref)",
    "G": "k3 as a loss is what GRPO does: autograd through k3 gives the forward KL's gradient (section 4)",
}


@register("kl_bug_gallery")
def _check_bug_gallery(answers) -> Verdict:
    """`answers` is a dict snippet -> option key (KL_BUG_GALLERY_OPTIONS) for the snippets A to G."""
    answers, wrong, bad = _grade_snippets(answers, KL_BUG_GALLERY_ANSWERS, KL_BUG_GALLERY_OPTIONS,
                                          "{'A': 'chi2', ...}")
    if bad:
        return bad
    if wrong:
        hints = " ".join(f"{k} ({answers[k]!r} is not it): {KL_BUG_GALLERY_HINTS[k]}." for k in wrong)
        return fail(f"{len(wrong)} of {len(KL_BUG_GALLERY_ANSWERS)} wrong. {hints}")
    return Verdict("PASS", "all seven snippets diagnosed; the next cells measure what each one does.")
