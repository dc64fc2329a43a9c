"""Notebook 02's checkers pass the reference and name each diagnosed mistake."""
import pytest
import torch

from toyenv.course import run_check
from toyenv.course.checks_02 import KL_BUG_GALLERY_ANSWERS, KL_BUG_GALLERY_OPTIONS, KL_BUG_HUNT_ANSWERS
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


# --------------------------------------------------------------------------- the bug gallery
def test_bug_gallery_checker_passes_the_key_and_explains_each_wrong_answer():
    assert run_check("kl_bug_gallery", dict(KL_BUG_GALLERY_ANSWERS)).status == "PASS"
    v = run_check("kl_bug_gallery", dict(KL_BUG_GALLERY_ANSWERS, A="forward", E="correct"))
    assert v.status == "FAIL" and v.message.startswith("2 of 7 wrong.")
    assert "A ('forward' is not it): which way round is the ratio?" in v.message
    assert "E ('correct' is not it): k3 in the reward" in v.message
    assert "B (" not in v.message  # right answers get no hint
    assert "no answer yet for snippet(s) G" in run_check(
        "kl_bug_gallery", {k: a for k, a in KL_BUG_GALLERY_ANSWERS.items() if k != "G"}).message
    assert "not one of the options" in run_check("kl_bug_gallery", dict(KL_BUG_GALLERY_ANSWERS, D="typo")).message
    assert "expected a dict" in run_check("kl_bug_gallery", "chi2").message
    assert set(KL_BUG_GALLERY_ANSWERS.values()) <= set(KL_BUG_GALLERY_OPTIONS)


def _expected_grad(per_sample, theta, phi):
    """Σ_y π(y) ∇ per_sample(y), π's weights not differentiated, written out here."""
    t = theta.clone().requires_grad_(True)
    lp, lq = t.log_softmax(-1), phi.log_softmax(-1)
    (lp.exp().detach() * per_sample(lp, lq)).sum().backward()
    return t.grad


def _numeric(f, theta, h=1e-6):
    g = torch.zeros_like(theta)
    for j in range(len(theta)):
        e = torch.zeros_like(theta)
        e[j] = h
        g[j] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


def test_bug_gallery_key_is_what_the_snippets_do():
    """Each snippet as code, its expected gradient against divergences differentiated numerically here."""
    gen = torch.Generator().manual_seed(5)
    theta, phi = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    q = phi.softmax(-1)
    reverse = _numeric(lambda t: float((t.softmax(-1) * (t.log_softmax(-1) - q.log())).sum()), theta)
    forward = _numeric(lambda t: float((q * (q.log() - t.log_softmax(-1))).sum()), theta)
    chi2 = _numeric(lambda t: 0.5 * float(((t.softmax(-1) - q) ** 2 / q).sum()), theta)
    snippets = {  # per-sample quantity gradient descent minimizes; a reward R enters as −R·log π
        "A": lambda lp, lq: torch.exp(lp - lq) - (lp - lq) - 1,
        "B": lambda lp, lq: -(lp - lq).detach() * lp,
        "C": lambda lp, lq: -(torch.exp(lq - lp) - (lq - lp) - 1),
        "E": lambda lp, lq: (torch.exp(lq - lp) - (lq - lp) - 1).detach() * lp,
        "F": lambda lp, lq: (lp - lq).detach() * lp,
        "G": lambda lp, lq: torch.exp(lq - lp) - (lq - lp) - 1,
    }
    grads = {k: _expected_grad(f, theta, phi) for k, f in snippets.items()}
    meaning = {"chi2": chi2, "correct": reverse, "forward": forward}
    for key, g in grads.items():
        answer = KL_BUG_GALLERY_ANSWERS[key]
        if answer in meaning:
            assert torch.allclose(g, meaning[answer], atol=1e-7), key
        elif answer == "climbs":
            assert g @ (reverse if key == "B" else forward) < 0, key  # descent on it raises the KL
        else:  # biased: neither KL's direction
            cos = [float(g @ d / (g.norm() * d.norm())) for d in (reverse, forward)]
            assert max(cos) < 0.99, cos
    # D: a softmax over the positions of per-token log-probs cannot see a policy uniformly more likely than the ref
    import torch.nn.functional as F
    ref_tok = -3 - 3 * torch.rand(4, 10, generator=gen, dtype=torch.float64)
    for shift in (0.5, 2.0):
        pol_tok = ref_tok + shift
        d = F.kl_div(F.log_softmax(ref_tok, dim=-1), F.softmax(pol_tok, dim=-1), reduction="batchmean")
        assert abs(d.item()) < 1e-12 and (pol_tok - ref_tok).sum(-1).mean() == pytest.approx(10 * shift)
    assert KL_BUG_GALLERY_ANSWERS["D"] == "positions"
