"""Notebook 07's checkers pass the reference and name each diagnosed mistake."""
import pytest
import torch

from toyenv.course import run_check
from toyenv.mixtures import forward_kl_estimate, kl, reinforce_loss


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead


def _lr(t, p, x):
    """log-ratio log policy(x) - log target(x), with its graph."""
    return p.log_prob(x) - t.log_prob(x)


@pytest.mark.parametrize("fn, status, words", [
    (forward_kl_estimate, "PASS", "value and gradient match"),
    (lambda t, p, x: (t.prob(x) / p.prob(x)).log().mean(), "PASS", "value and gradient match"),
    (lambda t, p, x: _lr(t, p, x).mean(), "FAIL", "sign flipped"),
    (lambda t, p, x: -_lr(t, p, x).sum(), "FAIL", "sum over the 2000 samples"),
    (lambda t, p, x: -p.log_prob(x).mean(), "FAIL", "SFT loss"),
    (lambda t, p, x: p.log_prob(x).mean(), "FAIL", "mean log-likelihood"),
    (lambda t, p, x: kl(t, p), "FAIL", "exact KL (by quadrature)"),
    (lambda t, p, x: kl(p, t), "FAIL", "exact reverse KL"),
    (lambda t, p, x: -_lr(t, p, x), "FAIL", "one value per sample"),
    (lambda t, p, x: -_lr(t, p, x).mean().detach(), "FAIL", "no gradient reaches"),
    (lambda t, p, x: torch.tensor(-_lr(t, p, x).mean().item()), "FAIL", "no gradient reaches"),
    (lambda t, p, x: (t.log_prob(x) - p.log_prob(x).detach()).mean() + 0 * p.means.sum(), "FAIL", "no gradient reaches"),
    (lambda t, p, x: -_lr(t, p, x).mean().item(), "FAIL", "torch.Tensor"),
    (lambda t, p, x: -_lr(t, p, x).mean() * 1.01, "FAIL", "you returned"),
])
def test_forward_kl_from_samples_checker(fn, status, words):
    v = run_check("forward_kl_from_samples", fn)
    assert v.status == status and words in v.message, v.message


def _w(t, p, x):
    return _lr(t, p, x).detach()


@pytest.mark.parametrize("fn, status, words", [
    (reinforce_loss, "PASS", "matches the REINFORCE estimate"),
    (lambda t, p, x: -((-_w(t, p, x) + _w(t, p, x).mean()) * p.log_prob(x)).mean(), "PASS", "matches"),  # reward form
    (lambda t, p, x: -reinforce_loss(t, p, x), "FAIL", "sign flipped"),
    (lambda t, p, x: (_w(t, p, x) * p.log_prob(x)).mean(), "FAIL", "no baseline"),
    (lambda t, p, x: -(_w(t, p, x) * p.log_prob(x)).mean(), "FAIL", "sign flipped, and no baseline"),
    (lambda t, p, x: reinforce_loss(t, p, x) * len(x), "FAIL", "summed over the 2000 samples"),
    (lambda t, p, x: (_w(t, p, x) * p.log_prob(x)).sum(), "FAIL", "summed over the samples and no baseline"),
    (lambda t, p, x: ((_lr(t, p, x) - _lr(t, p, x).mean()) * p.log_prob(x)).mean(), "FAIL", "not detached"),
    (lambda t, p, x: (_lr(t, p, x) * p.log_prob(x)).mean(), "FAIL", "not detached (and there is no baseline)"),
    (lambda t, p, x: _lr(t, p, x).mean(), "FAIL", "zero in expectation"),
    (lambda t, p, x: ((_w(t, p, x) - _w(t, p, x).mean()) * p.prob(x)).mean(), "FAIL", "multiply by log policy(x)"),
    (lambda t, p, x: kl(p, t), "FAIL", "exact reverse KL"),
    (lambda t, p, x: reinforce_loss(t, p, x).detach(), "FAIL", "no gradient reaches"),
    (lambda t, p, x: _w(t, p, x) * p.log_prob(x), "FAIL", "one value per sample"),
    (lambda t, p, x: reinforce_loss(t, p, x) * 1.1, "FAIL", "differs from the REINFORCE estimate"),
    (lambda t, p, x: [0.0], "FAIL", "torch.Tensor"),
])
def test_reinforce_checker(fn, status, words):
    v = run_check("reinforce_reverse_kl", fn)
    assert v.status == status and words in v.message, v.message


def test_stubs_are_todo():
    def stub(t, p, x):
        raise NotImplementedError()
    assert run_check("forward_kl_from_samples", stub).status == "TODO"
    assert run_check("reinforce_reverse_kl", stub).status == "TODO"


def test_crash_is_reported():
    v = run_check("reinforce_reverse_kl", lambda t, p, x: p.log_prob(x, 3))
    assert v.status == "FAIL" and "raised TypeError" in v.message
