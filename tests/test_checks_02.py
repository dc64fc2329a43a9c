"""Notebook 02's checkers pass the reference and name each diagnosed mistake."""
import pytest
import torch

from toyenv.course import run_check
from toyenv.course.checks_02 import KL_BUG_HUNT_ANSWERS
from toyenv.kl import k1, k2, k3


@pytest.mark.parametrize("fn, status, words", [
    (k3, "PASS", "matches"),
    (lambda p, q: k3(q, p), "FAIL", "r = P/Q"),
    (k1, "FAIL", "this is k1"),
    (k2, "FAIL", "this is k2"),
    (lambda p, q: k3(p, q).mean(), "FAIL", "one estimate per sample"),
    (lambda p, q: k3(p, q) - 1, "FAIL", "never negative"),
    (lambda p, q: k3(p, q) * 1.01, "FAIL", "differ"),
])
def test_k3_checker(fn, status, words):
    v = run_check("k3", fn)
    assert v.status == status and words in v.message, v.message


@pytest.mark.parametrize("fn, status, words", [
    (lambda lp, lq, m: ((lp - lq) * m).sum(-1), "PASS", "generated tokens only"),
    (lambda lp, lq, m: (lp - lq).sum(-1), "FAIL", "multiply by the mask"),
    (lambda lp, lq, m: ((lp - lq) * m).sum(-1) / m.sum(-1), "FAIL", "per-token average"),
    (lambda lp, lq, m: ((lq - lp) * m).sum(-1), "FAIL", "sign flipped"),
    (lambda lp, lq, m: (lp - lq) * m, "FAIL", "Sum over the time axis"),
])
def test_masked_kl_checker(fn, status, words):
    v = run_check("masked_kl", fn)
    assert v.status == status and words in v.message, v.message


def test_bug_hunt_checker():
    assert run_check("kl_bug_hunt", dict(KL_BUG_HUNT_ANSWERS)).status == "PASS"
    wrong = dict(KL_BUG_HUNT_ANSWERS, B="zero", D="reverse")
    v = run_check("kl_bug_hunt", wrong)
    assert v.status == "FAIL" and "2 of 5 wrong: snippet(s) B, D" in v.message
    assert "no answer yet for snippet(s) E" in run_check("kl_bug_hunt", {k: v for k, v in KL_BUG_HUNT_ANSWERS.items() if k != "E"}).message
    assert "not one of the options" in run_check("kl_bug_hunt", dict(KL_BUG_HUNT_ANSWERS, A="banana")).message
    assert "expected a dict" in run_check("kl_bug_hunt", ["zero"]).message


def test_bug_hunt_answers_are_what_the_snippets_compute():
    """The answer key itself, verified on random distributions."""
    import torch.nn.functional as F
    from toyenv.kl import exact_categorical

    g = torch.Generator().manual_seed(0)
    pol, ref = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    lp, lq = pol.log_softmax(-1), ref.log_softmax(-1)
    reverse = exact_categorical(pol, ref).sum(-1).mean()
    forward = exact_categorical(ref, pol).sum(-1).mean()
    assert (lp - pol.log_softmax(-1)).sum() == 0
    assert torch.isnan(F.kl_div(lq, lp, reduction="batchmean"))
    torch.testing.assert_close(F.kl_div(lp, lq, log_target=True, reduction="batchmean"), forward)
    with pytest.warns(UserWarning):
        torch.testing.assert_close(F.kl_div(lq, lp, log_target=True), reverse / (5 * 7))
    torch.testing.assert_close(F.kl_div(lq, lp, log_target=True, reduction="batchmean"), reverse)


def _placements(k1_reward=None, k2_loss=None, k3_ratio=None):
    right = {
        "k1 in the reward": lambda lp, lq, old: (lp - lq).detach() * lp,
        "k2 as a loss": lambda lp, lq, old: 0.5 * (lp - lq) ** 2,
        "k3 × π/π_old as a loss": lambda lp, lq, old: torch.exp(lp - old) * k3(lp, lq),
    }
    for key, f in zip(right, (k1_reward, k2_loss, k3_ratio)):
        if f is not None:
            right[key] = f
    return lambda lp, lq, old: {k: f(lp, lq, old) for k, f in right.items()}


@pytest.mark.parametrize("fn, status, words", [
    (_placements(), "PASS", "exactly ∇KL(π ‖ π_ref)"),
    (_placements(k1_reward=lambda lp, lq, old: lp - lq), "FAIL", "k1 in the reward: its expected gradient is zero"),
    (_placements(k3_ratio=lambda lp, lq, old: k3(lp, lq)), "FAIL", "without the importance ratio"),
    (_placements(k2_loss=lambda lp, lq, old: -0.5 * (lp - lq) ** 2), "FAIL", "k2 as a loss: it points the wrong way"),
    (_placements(k3_ratio=lambda lp, lq, old: k3(lq, lp)), "FAIL", "ratio in k3 is flipped (r = π/π_ref"),
    (_placements(k1_reward=lambda lp, lq, old: k3(lp, lq).detach() * lp), "FAIL", "neither KL's"),
    (_placements(k2_loss=lambda lp, lq, old: (lp - lq).sum()), "FAIL", "one value per action"),
    (lambda lp, lq, old: {"k2 as a loss": lp}, "FAIL", "expected a dict with the keys"),
])
def test_placements_checker(fn, status, words):
    v = run_check("kl_placements", fn)
    assert v.status == status and words in v.message, v.message
