"""Notebook 09's checkers pass the reference and name each diagnosed mistake."""
import numpy as np
import pytest

from toyenv.course import run_check


def _good_kl(base, model, mask):
    return ((base.exp() * (base - model)).sum(-1) * mask).sum(-1)


@pytest.mark.parametrize("fn, status, words", [
    (_good_kl, "PASS", "summed over each completion"),
    (lambda b, m, k: _good_kl(m, b, k), "FAIL", "direction"),
    (lambda b, m, k: _good_kl(b, m, k) / k.sum(-1), "FAIL", "mean per position"),
    (lambda b, m, k: (b.exp() * (b - m)).sum(-1).sum(-1), "FAIL", "mask is ignored"),
    (lambda b, m, k: -_good_kl(b, m, k), "FAIL", "sign"),
    (lambda b, m, k: ((b - m).sum(-1) * k).sum(-1), "FAIL", "without the weights"),
    (lambda b, m, k: _good_kl(b, m, k).sum(), "FAIL", "scalar"),
    (lambda b, m, k: [1.0], "FAIL", "torch.Tensor"),
    (lambda b, m, k: _good_kl(b, m, k) + 1, "FAIL", "differ"),
])
def test_kl_on_new_task_checker(fn, status, words):
    v = run_check("kl_on_new_task", fn)
    assert v.status == status and words in v.message, v.message


def _good_r2(x, y):
    a, b = np.polyfit(x, y, 1)
    return 1 - ((y - (a * x + b)) ** 2).sum() / ((y - y.mean()) ** 2).sum()


@pytest.mark.parametrize("fn, status, words", [
    (_good_r2, "PASS", "SS_res"),
    (lambda x, y: np.corrcoef(x, y)[0, 1] ** 2, "PASS", "SS_res"),
    (lambda x, y: np.corrcoef(x, y)[0, 1], "FAIL", "correlation"),
    (lambda x, y: 1 - ((y - (x * y).sum() / (x * x).sum() * x) ** 2).sum() / ((y - y.mean()) ** 2).sum(), "FAIL",
     "origin"),
    (lambda x, y: 1 - ((y - np.polyval(np.polyfit(x, y, 1), x)) ** 2).sum() / (y ** 2).sum(), "FAIL", "mean of y"),
    (lambda x, y: 1 - _good_r2(x, y), "FAIL", "1 minus"),
    (lambda x, y: "high", "FAIL", "a number"),
    (lambda x, y: 0.5, "FAIL", "expected"),
])
def test_r_squared_checker(fn, status, words):
    v = run_check("r_squared", fn)
    assert v.status == status and words in v.message, v.message


def test_r_squared_checker_agrees_with_toyenv():
    from toyenv.experiments.razor import r_squared

    assert run_check("r_squared", r_squared).status == "PASS"
