"""Notebook 01's checkers pass the reference and name each diagnosed mistake."""
import pytest
import torch

import toyenv.course.checks_01  # noqa: F401  (registers notebook 01's checkers)
from toyenv.course import run_check
from toyenv.kl import exact_categorical


def _xlogy_kl(d, logits):
    return (torch.xlogy(d, d) - d * logits.log_softmax(-1)).sum(-1)


@pytest.mark.parametrize("fn, status, words", [
    (exact_categorical, "PASS", "matches"),
    (lambda p, q: (p.softmax(-1) * (p.log_softmax(-1) - q.log_softmax(-1))).sum(-1), "PASS", "matches"),
    (lambda p, q: exact_categorical(q, p), "FAIL", "arguments are swapped"),
    (lambda p, q: -exact_categorical(p, q), "FAIL", "sign flipped"),
    (lambda p, q: p.softmax(-1) * (p.log_softmax(-1) - q.log_softmax(-1)), "FAIL", "sum them over the last axis"),
    (lambda p, q: exact_categorical(p, q).sum(), "FAIL", "single number"),
    (lambda p, q: exact_categorical(p, q) / p.shape[-1], "FAIL", "mean over"),
    (lambda p, q: (p.softmax(-1) * (p - q)).sum(-1), "FAIL", "raw logits"),
    (lambda p, q: (p.softmax(-1) * (p.log_softmax(-1) - q.softmax(-1))).sum(-1), "FAIL", "log of the reference"),
    (lambda p, q: (p.log_softmax(-1) - q.log_softmax(-1)).sum(-1), "FAIL", "without the weights"),
    (lambda p, q: exact_categorical(p, q) * 1.01, "FAIL", "differ"),
    (lambda p, q: [0.0], "FAIL", "torch.Tensor"),
])
def test_reverse_kl_checker(fn, status, words):
    v = run_check("reverse_kl", fn)
    assert v.status == status and words in v.message, v.message


@pytest.mark.parametrize("fn, status, words", [
    (_xlogy_kl, "PASS", "matches"),
    (lambda d, m: exact_categorical(d.log(), m), "PASS", "matches"),
    (lambda d, m: (d * (d.log() - m.log_softmax(-1))).sum(-1), "FAIL", "0 * log 0"),
    (lambda d, m: (m.softmax(-1) * (m.log_softmax(-1) - d.log())).sum(-1), "FAIL", "arguments are swapped"),
    (lambda d, m: -_xlogy_kl(d, m), "FAIL", "sign flipped"),
    (lambda d, m: -(d * m.log_softmax(-1)).sum(-1), "FAIL", "cross-entropy"),
    (lambda d, m: (torch.xlogy(d, d) - d * m).sum(-1), "FAIL", "raw logits"),
    (lambda d, m: (torch.xlogy(d, d) - d * m.softmax(-1)).sum(-1), "FAIL", "log of the model"),
    (lambda d, m: torch.xlogy(d, d) - d * m.log_softmax(-1), "FAIL", "sum the per-category terms"),
    (lambda d, m: _xlogy_kl(d, m).mean(), "FAIL", "single number"),
    (lambda d, m: _xlogy_kl(d, m) / d.shape[-1], "FAIL", "mean over"),
    (lambda d, m: _xlogy_kl(d, m) + 0.1, "FAIL", "differ"),
])
def test_forward_kl_checker(fn, status, words):
    v = run_check("forward_kl", fn)
    assert v.status == status and words in v.message, v.message


def test_stub_is_todo():
    def stub(a, b):
        raise NotImplementedError()
    assert run_check("reverse_kl", stub).status == "TODO"
    assert run_check("forward_kl", stub).status == "TODO"
