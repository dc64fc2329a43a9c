"""Notebook 09's checkers pass the reference and name each diagnosed mistake."""
import numpy as np
import pytest
import torch

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


def _good_oracle(p0, correct):
    q = p0 * correct
    q = q / q.sum(-1, keepdim=True)
    q_base = torch.where(q > 0, q * (q / p0).log(), torch.zeros_like(q)).sum(-1)
    base_q = torch.where(p0 > 0, p0 * (p0 / q).log(), torch.zeros_like(p0)).sum(-1)
    return q_base, base_q


def _nan_oracle(p0, correct):
    q = p0 * correct / (p0 * correct).sum(-1, keepdim=True)
    return (q * (q / p0).log()).sum(-1), (p0 * (p0 / q).log()).sum(-1)


@pytest.mark.parametrize("fn, status, words", [
    (_good_oracle, "PASS", "finite"),
    (lambda p, c: _good_oracle(p, c)[::-1], "FAIL", "swapped"),
    (_nan_oracle, "FAIL", "0 · log 0"),
    (lambda p, c: (-_good_oracle(p, c)[0], _good_oracle(p, c)[1]), "FAIL", "sign"),
    (lambda p, c: ((p * c * ((p * c) / p).log()).nan_to_num().sum(-1), _good_oracle(p, c)[1]), "FAIL", "renormalize"),
    (lambda p, c: (_good_oracle(p, c)[0], _good_oracle(p, c)[1].nan_to_num(posinf=30.0)), "FAIL", "+inf"),
    (lambda p, c: _good_oracle(p, c)[0], "FAIL", "two tensors"),
    (lambda p, c: (_good_oracle(p, c)[0].sum(), _good_oracle(p, c)[1]), "FAIL", "shape (3,)"),
])
def test_oracle_kl_checker(fn, status, words):
    v = run_check("oracle_kl", fn)
    assert v.status == status and words in v.message, v.message
