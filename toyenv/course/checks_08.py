"""Checkers for notebook 08_sft_memorizes_rl_generalizes."""
from __future__ import annotations

from .checks import Verdict, fail, register


def _as_fraction(out, what: str):
    try:
        value = float(out)
    except (TypeError, ValueError):
        return None, fail(f"{what} should return a number (a fraction of the answers), got {type(out).__name__}.")
    return value, None


# Relative-turn navigation steps: (completion, oracle action). Lines that only a real parser gets right.
_NAV_CASES = [
    ("turn_direction(left)", "turn_direction(left)"),           # correct
    ("  Turn_Direction(Slightly  Right) ", "turn_direction(slightly right)"),  # correct after normalization
    ("forward()\nstop()", "forward()"),                          # correct: only the first line counts
    ("Stop()", "stop()"),                                        # correct: letter case is ignored
    ("turn_direction(north)", "turn_direction(left)"),           # an absolute turn in a relative episode: wrong
    ("turn_direction(right)", "turn_direction(left)"),           # wrong direction
    ("stop", "stop()"),                                          # malformed
    ("", "forward()"),                                           # empty
    ("turn_direction(sideways)", "turn_direction(right)"),       # unknown direction
]


@register("per_step_accuracy")
def _check_per_step(fn) -> Verdict:
    """fn(completions, expected, action_space_kind) -> fraction of completions whose parsed action is the oracle's."""
    from toyenv.envs import navigation as nav

    completions = [c for c, _ in _NAV_CASES]
    expected = [e for _, e in _NAV_CASES]
    got, bad = _as_fraction(fn(list(completions), list(expected), "relative"), "per_step_accuracy")
    if bad:
        return bad
    want = sum(nav.parse_action(c, "relative")[0] == e for c, e in _NAV_CASES) / len(_NAV_CASES)  # 4/9
    if abs(got - want) < 1e-9:
        # the absolute space: the same parser, another kind
        got_abs, bad = _as_fraction(fn(["turn_direction(north)", "turn_direction(left)"],
                                       ["turn_direction(north)", "turn_direction(north)"], "absolute"),
                                    "per_step_accuracy")
        if bad:
            return bad
        if abs(got_abs - 0.5) > 1e-9:
            return fail(f"right for relative turns but {got_abs:.3f} instead of 0.500 for absolute ones: pass "
                         "action_space_kind on to the parser.")
        return Verdict("PASS", "parsed answers compared with the oracle, for both action spaces.")
    exact = sum(c == e for c, e in _NAV_CASES) / len(_NAV_CASES)
    if abs(got - exact) < 1e-9:
        return fail("this compares raw strings: parse each answer with navigation.parse_action(completion, "
                     "action_space_kind) first, so 'Turn_Direction(Slightly  Right)' and an answer followed by "
                     "more lines count as what they say.")
    if abs(got - want * len(_NAV_CASES)) < 1e-9:
        return fail("this is the number of correct steps; return the fraction.")
    as_absolute = sum(nav.parse_action(c, "absolute")[0] == e for c, e in _NAV_CASES) / len(_NAV_CASES)
    if abs(got - as_absolute) < 1e-9:
        return fail("the answers are parsed as absolute turns: pass action_space_kind to parse_action.")
    parsed = sum(nav.parse_action(c, "relative")[0] is not None for c, _ in _NAV_CASES) / len(_NAV_CASES)
    if abs(got - parsed) < 1e-9:
        return fail("this counts well-formed answers, not correct ones: compare the parsed action with expected.")
    return fail(f"got {got:.3f} on 9 test steps, expected {want:.3f} (4 of the 9 are correct).")


@register("rule_accuracy")
def _check_rule_accuracy(fn) -> Verdict:
    """fn(answers, hands, face_card_rule) -> fraction of answers the verifier accepts under that rule."""
    from toyenv.envs import general_points as gp

    hands = [["J", "2", "A", "A"], ["K", "2", "A", "A"], ["3", "8", "A", "A"], ["Q", "2", "A", "A"],
             ["Q", "2", "A", "A"], ["5", "5", "A", "A"]]
    answers = [
        "11*2+1+1",          # right under J=11, wrong under J=10
        "(10+2)*(1+1)",      # right under K=10 ("ten"), uses the wrong number under "ranked"
        "3*8*1*1=24",        # right under both
        "__import__('os')",  # garbage: must score as wrong, never run
        "12*2*1*1",          # right under Q=12 only
        "5*5-1*1",           # right under both
    ]
    got, bad = _as_fraction(fn(list(answers), [list(h) for h in hands], "ranked"), "rule_accuracy")
    if bad:
        return bad
    want = sum(gp.verify(h, a, "ranked").correct for h, a in zip(hands, answers)) / len(hands)  # 4/6 (3/6 under "ten")
    if abs(got - want) < 1e-9:
        got_ten, bad = _as_fraction(fn(list(answers), [list(h) for h in hands], "ten"), "rule_accuracy")
        if bad:
            return bad
        want_ten = sum(gp.verify(h, a, "ten").correct for h, a in zip(hands, answers)) / len(hands)
        if abs(got_ten - want_ten) > 1e-9:
            return fail(f"right under 'ranked' but {got_ten:.3f} instead of {want_ten:.3f} under 'ten'.")
        return Verdict("PASS", "every answer judged by the verifier under the rule the prompt stated.")
    ten = sum(gp.verify(h, a, "ten").correct for h, a in zip(hands, answers)) / len(hands)
    if abs(got - ten) < 1e-9:
        return fail("these answers were judged under J/Q/K = 10: pass face_card_rule to gp.verify, or an OOD "
                     "evaluation quietly grades with the training rule.")
    if abs(got - want * len(hands)) < 1e-9:
        return fail("this is the number of correct answers; return the fraction.")
    return fail(f"got {got:.3f} on {len(hands)} test answers, expected {want:.3f}.")
