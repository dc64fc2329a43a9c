"""Notebook 08's checkers pass the reference and name each diagnosed mistake."""
import pytest

from toyenv.course import run_check
from toyenv.envs import general_points as gp
from toyenv.envs import navigation as nav


def _good_steps(completions, expected, kind):
    return sum(nav.parse_action(c, kind)[0] == e for c, e in zip(completions, expected)) / len(expected)


@pytest.mark.parametrize("fn, status, words", [
    (_good_steps, "PASS", "both action spaces"),
    (lambda c, e, k: sum(a == b for a, b in zip(c, e)) / len(e), "FAIL", "raw strings"),
    (lambda c, e, k: sum(nav.parse_action(a, k)[0] == b for a, b in zip(c, e)), "FAIL", "number of correct"),
    (lambda c, e, k: _good_steps(c, e, "absolute"), "FAIL", "parsed as absolute"),
    (lambda c, e, k: _good_steps(c, e, "relative"), "FAIL", "absolute ones"),
    (lambda c, e, k: sum(nav.parse_action(a, k)[0] is not None for a in c) / len(c), "FAIL", "well-formed"),
    (lambda c, e, k: "most", "FAIL", "a number"),
    (lambda c, e, k: 0.0, "FAIL", "4 of the 9"),
])
def test_per_step_accuracy_checker(fn, status, words):
    v = run_check("per_step_accuracy", fn)
    assert v.status == status and words in v.message, v.message


def _good_rule(answers, hands, rule):
    return sum(gp.verify(h, a, rule).correct for a, h in zip(answers, hands)) / len(hands)


@pytest.mark.parametrize("fn, status, words", [
    (_good_rule, "PASS", "rule the prompt stated"),
    (lambda a, h, r: _good_rule(a, h, "ten"), "FAIL", "J/Q/K = 10"),
    (lambda a, h, r: sum(gp.verify(x, y, r).correct for y, x in zip(a, h)), "FAIL", "number of correct"),
    (lambda a, h, r: _good_rule(a, h, "ranked"), "FAIL", "under 'ten'"),
    (lambda a, h, r: None, "FAIL", "a number"),
    (lambda a, h, r: 1.0, "FAIL", "expected 0.667"),
])
def test_rule_accuracy_checker(fn, status, words):
    v = run_check("rule_accuracy", fn)
    assert v.status == status and words in v.message, v.message
