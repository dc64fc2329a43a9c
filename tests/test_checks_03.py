"""Notebook 03's checkers pass the reference and name each diagnosed mistake."""
import pytest

from toyenv.course import run_check


def _good_kl_reward(scores, logp, ref_logp, mask, beta):
    return scores - beta * ((logp - ref_logp) * mask).sum(1).detach()


@pytest.mark.parametrize("fn, status, words", [
    (_good_kl_reward, "PASS", "no gradient"),
    (lambda s, lp, rl, m, b: s - b * ((lp - rl) * m).sum(1), "FAIL", "gradients flow"),
    (lambda s, lp, rl, m, b: s + b * ((lp - rl) * m).sum(1).detach(), "FAIL", "sign"),
    (lambda s, lp, rl, m, b: s - b * (lp - rl).sum(1).detach(), "FAIL", "mask"),
    (lambda s, lp, rl, m, b: s - b * ((rl - lp) * m).sum(1).detach(), "FAIL", "reversed the log-ratio"),
    (lambda s, lp, rl, m, b: s - b * (((lp - rl) * m).sum(1) / m.sum(1)).detach(), "FAIL", "per-token mean"),
    (lambda s, lp, rl, m, b: s - ((lp - rl) * m).sum(1).detach(), "FAIL", "beta is missing"),
    (lambda s, lp, rl, m, b: (s[:, None] - b * (lp - rl) * m).detach(), "FAIL", "one reward per completion"),
    (lambda s, lp, rl, m, b: s, "FAIL", "differ"),
])
def test_kl_reward_checker(fn, status, words):
    v = run_check("kl_reward", fn)
    assert v.status == status and words in v.message, v.message


def _good_adaptive(coef, kl, target, horizon, n):
    return coef * (1 + min(max(kl / target - 1, -0.2), 0.2) * n / horizon)


@pytest.mark.parametrize("fn, status, words", [
    (_good_adaptive, "PASS", "matches"),
    (lambda c, kl, t, h, n: c * (1 + (kl / t - 1) * n / h), "FAIL", "not clipped"),
    (lambda c, kl, t, h, n: c * (1 - min(max(kl / t - 1, -0.2), 0.2) * n / h), "FAIL", "sign"),
    (lambda c, kl, t, h, n: c * (1 + min(max(kl / t - 1, -0.2), 0.2)), "FAIL", "n_steps / horizon"),
    (lambda c, kl, t, h, n: c + min(max(kl / t - 1, -0.2), 0.2) * n / h, "FAIL", "multiplicative"),
    (lambda c, kl, t, h, n: "x", "FAIL", "a number"),
    (lambda c, kl, t, h, n: c, "FAIL", "expected"),
])
def test_adaptive_kl_checker(fn, status, words):
    v = run_check("adaptive_kl", fn)
    assert v.status == status and words in v.message, v.message


def test_stubs_are_todo():
    def stub(*args):
        raise NotImplementedError()
    assert run_check("kl_reward", stub).status == "TODO"
    assert run_check("adaptive_kl", stub).status == "TODO"
