"""Notebooks 05 and 06's checkers pass the reference and name each diagnosed mistake."""
import pytest
import torch
import torch.nn.functional as F

from toyenv.course import run_check
from toyenv.trainers.dpo import dpo_loss, rebel_loss
from toyenv.trainers.reward_model import bradley_terry_loss


def _dpo(pc, pr, rc, rr, beta):
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


@pytest.mark.parametrize("fn, status, words", [
    (_dpo, "PASS", "averaged over pairs"),
    (lambda pc, pr, rc, rr, b: dpo_loss(pc, pr, rc, rr, b)[0], "PASS", "averaged over pairs"),
    (lambda pc, pr, rc, rr, b: torch.log(torch.sigmoid(b * ((pc - rc) - (pr - rr)))).neg().mean(), "FAIL",
     "logsigmoid"),
    (lambda pc, pr, rc, rr, b: -_dpo(pc, pr, rc, rr, b), "FAIL", "sign"),
    (lambda pc, pr, rc, rr, b: _dpo(pr, pc, rr, rc, b), "FAIL", "swapped"),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(b * (pc - pr)).mean(), "FAIL", "reference is missing"),
    (lambda pc, pr, rc, rr, b: _dpo(pc, pr, rc, rr, 1.0), "FAIL", "β is missing"),
    (lambda pc, pr, rc, rr, b: b * _dpo(pc, pr, rc, rr, 1.0), "FAIL", "inside the sigmoid"),
    (lambda pc, pr, rc, rr, b: _dpo(pc, pr, rc, rr, b) * len(pc), "FAIL", "sum over pairs"),
    (lambda pc, pr, rc, rr, b: _dpo(pc, pr, -rc, -rr, b), "FAIL", "not a sum"),
    (lambda pc, pr, rc, rr, b: _dpo(pc, pr, rc, rr, b).detach(), "FAIL", "no gradient"),
    (lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))), "FAIL", "scalar"),
    (lambda pc, pr, rc, rr, b: 0.7, "FAIL", "torch.Tensor"),
    (lambda pc, pr, rc, rr, b: _dpo(pc, pr, rc, rr, b) + 0.1, "FAIL", "expected"),
])
def test_dpo_loss_checker(fn, status, words):
    v = run_check("dpo_loss", fn)
    assert v.status == status and words in v.message, v.message


def _margin(c, r, m):
    return -F.logsigmoid(c - r - m).mean()


@pytest.mark.parametrize("fn, status, words", [
    (_margin, "PASS", "Bradley–Terry"),
    (bradley_terry_loss, "PASS", "Bradley–Terry"),
    (lambda c, r, m: -torch.log(torch.sigmoid(c - r - m)).mean(), "FAIL", "logsigmoid"),
    (lambda c, r, m: _margin(c, r, -m), "FAIL", "added"),
    (lambda c, r, m: _margin(c, r, 0 * m), "FAIL", "ignored"),
    (lambda c, r, m: -_margin(c, r, m), "FAIL", "sign"),
    (lambda c, r, m: -F.logsigmoid(r - c - m).mean(), "FAIL", "swapped"),
    (lambda c, r, m: _margin(c, r, m) * len(c), "FAIL", "sum"),
    (lambda c, r, m: _margin(c, r, 0 * m) + m.mean(), "FAIL", "inside the sigmoid"),
    (lambda c, r, m: _margin(c, r, m + 0.5), "FAIL", "expected"),
    (lambda c, r, m: _margin(c, r, m).detach(), "FAIL", "no gradient"),
    (lambda c, r, m: -F.logsigmoid(c - r - m), "FAIL", "scalar"),
])
def test_margin_loss_checker(fn, status, words):
    v = run_check("margin_loss", fn)
    assert v.status == status and words in v.message, v.message


def _rebel(pc, pr, rc, rr, wc, wr, eta):
    return ((((pc - rc) - (pr - rr)) / eta - (wc - wr)) ** 2).mean()


@pytest.mark.parametrize("fn, status, words", [
    (_rebel, "PASS", "zero where"),
    (rebel_loss, "PASS", "zero where"),
    (lambda pc, pr, rc, rr, wc, wr, e: _rebel(pc, pr, rc, rr, wc, wr, 1 / e), "FAIL", "divides"),
    (lambda pc, pr, rc, rr, wc, wr, e: _rebel(pc, pr, rc, rr, wr, wc, e), "FAIL", "sign of the reward gap"),
    (lambda pc, pr, rc, rr, wc, wr, e: _rebel(pc, pr, 0 * rc, 0 * rr, wc, wr, e), "FAIL", "reference is missing"),
    (lambda pc, pr, rc, rr, wc, wr, e: _rebel(pc, pr, rc, rr, wc, wr, 1.0), "FAIL", "η is missing"),
    (lambda pc, pr, rc, rr, wc, wr, e: _rebel(pc, pr, rc, rr, wc, wr, e) * len(pc), "FAIL", "sum"),
    (lambda pc, pr, rc, rr, wc, wr, e: ((((pc - rc) - (pr - rr)) / e - (wc - wr)).abs()).mean(), "FAIL", "square"),
    (lambda pc, pr, rc, rr, wc, wr, e: _rebel(pc, pr, rc, rr, wc, wr, e).detach(), "FAIL", "no gradient"),
    (lambda pc, pr, rc, rr, wc, wr, e: _rebel(pc, pr, rc, rr, wc, wr, e) + 1, "FAIL", "expected"),
])
def test_rebel_loss_checker(fn, status, words):
    v = run_check("rebel_loss", fn)
    assert v.status == status and words in v.message, v.message
