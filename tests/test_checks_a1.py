"""Appendix A1's checkers pass the reference and name each diagnosed mistake."""
import pytest
import torch

from toyenv.course import run_check
from toyenv.course.checks_a1 import GRPO_BUG_ANSWERS, GRPO_BUG_OPTIONS
from toyenv.trainers.rl import advantages, clipped_objective


def _groups(R, k):
    return R.view(-1, k)


@pytest.mark.parametrize("fn, status, words", [
    (lambda R, k: advantages(R, "rloo", k), "PASS", "leave-one-out"),
    (lambda R, k: R - R.mean(), "FAIL", "whole batch"),
    (lambda R, k: (_groups(R, k) - _groups(R, k).mean(1, keepdim=True)).flatten(), "FAIL", "leaves it out"),
    (lambda R, k: -advantages(R, "rloo", k), "FAIL", "sign flipped"),
    (lambda R, k: _groups(R, k) - (_groups(R, k).sum(1, keepdim=True) - _groups(R, k)) / (k - 1), "FAIL", "flatten"),
    (lambda R, k: R, "FAIL", "differ"),
    (lambda R, k: R.tolist(), "FAIL", "torch.Tensor"),
])
def test_rloo_checker(fn, status, words):
    v = run_check("rloo_advantages", fn)
    assert v.status == status and words in v.message, v.message


def _centred(R, k):
    G = _groups(R, k)
    return G - G.mean(1, keepdim=True)


@pytest.mark.parametrize("fn, status, words", [
    (lambda R, k: advantages(R, "grpo", k), "PASS", "group-normalized"),
    (lambda R, k: (_centred(R, k) / (_groups(R, k).std(1, keepdim=True) + 1e-8)).flatten(), "PASS", "group-normalized"),
    (lambda R, k: _centred(R, k).flatten(), "FAIL", "standard deviation"),
    (lambda R, k: (_centred(R, k) / (_groups(R, k).std(1, unbiased=False, keepdim=True) + 1e-4)).flatten(),
     "FAIL", "unbiased=False"),
    (lambda R, k: (_centred(R, k) / _groups(R, k).std(1, keepdim=True)).flatten(), "FAIL", "NaN"),
    (lambda R, k: R - R.mean(), "FAIL", "whole batch"),
    (lambda R, k: -advantages(R, "grpo", k), "FAIL", "sign flipped"),
])
def test_grpo_checker(fn, status, words):
    v = run_check("grpo_advantages", fn)
    assert v.status == status and words in v.message, v.message


@pytest.mark.parametrize("fn, status, words", [
    (clipped_objective, "PASS", "values and gradients"),
    (lambda r, a, e: -clipped_objective(r, a, e), "FAIL", "sign flipped"),
    (lambda r, a, e: -torch.maximum(r * a, r.clamp(1 - e, 1 + e) * a), "FAIL", "max"),
    (lambda r, a, e: -(r.clamp(1 - e, 1 + e) * a), "FAIL", "only the clipped term"),
    (lambda r, a, e: -(r * a), "FAIL", "no clipping"),
    (lambda r, a, e: clipped_objective(r, a, e).mean(), "FAIL", "one loss per element"),
    (lambda r, a, e: clipped_objective(r.detach(), a, e), "FAIL", "no gradient flows"),
])
def test_ppo_checker(fn, status, words):
    v = run_check("ppo_clipped_loss", fn)
    assert v.status == status and words in v.message, v.message


def test_grpo_bug_hunt_answer_key_matches_the_math():
    """Over samples of pi_old, new_logprobs - old_logprobs averages -KL(pi_old || pi_theta): minimizing it pushes the
    policy away from pi_old. Checked on a 3-arm example by exact expectation, independently of the checker."""
    assert GRPO_BUG_ANSWERS == {"effect": "away", "gradient": "down"}
    old = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    new = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    term = (old * (new.log() - old.log())).sum()          # E_{y ~ pi_old}[log pi_theta(y) - log pi_old(y)]
    kl = (0.5 * torch.log(torch.tensor(0.5 / 0.2)) + 0.2 * torch.log(torch.tensor(0.2 / 0.5))).item()  # by hand
    assert term.item() == pytest.approx(-kl) and kl > 0
    assert "away" in GRPO_BUG_OPTIONS["away"] and "pi_ref" in GRPO_BUG_OPTIONS["away"]


def test_grpo_bug_hunt_checker():
    assert run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS)).status == "PASS"
    assert run_check("grpo_bug_hunt", lambda: dict(GRPO_BUG_ANSWERS)).status == "PASS"
    assert "rewards moving away" in run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS)).message
    v = run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS, effect="old"))  # the tempting wrong answer
    assert v.status == "FAIL" and "sign" in v.message and "-KL(pi_old || pi_theta)" in v.message, v.message
    assert "reference" in run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS, effect="ref")).message
    assert "gradient" in run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS, effect="nothing")).message
    assert "gradient" in run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS, gradient="zero")).message
    assert "pi_ref" in run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS, gradient="forward")).message
    assert "no answer yet for gradient" in run_check("grpo_bug_hunt", {"effect": "away"}).message
    assert "must be one of" in run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS, gradient="up")).message
    assert "must be one of" in run_check("grpo_bug_hunt", dict(GRPO_BUG_ANSWERS, effect="pi_old")).message
    assert "expected a dict" in run_check("grpo_bug_hunt", ["old"]).message


def test_stubs_are_todo():
    def stub(*args):
        raise NotImplementedError()
    for name in ("rloo_advantages", "grpo_advantages", "ppo_clipped_loss", "grpo_bug_hunt"):
        assert run_check(name, stub).status == "TODO"
