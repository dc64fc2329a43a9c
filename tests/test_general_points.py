"""Tests for toyenv.envs.general_points: verifier, solver, dealing, env, evaluate."""
from __future__ import annotations

import itertools
import re
import warnings
from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toyenv.envs  # noqa: F401  (registers the gymnasium ids)
from toyenv.envs import general_points as gp
from toyenv.tokenizer import Tokenizer

from fakes import SpySampler

FUZZ = settings(max_examples=2000, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
TREES = settings(max_examples=600, deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# --------------------------------------------------------------------------- independent helpers


def brute_solvable(values, target=24):
    """Pair-merging search over exact values, independent of the module's solver."""
    vals = [Fraction(v) for v in values]

    def rec(vs):
        if len(vs) == 1:
            return vs[0] == target
        for i, j in itertools.permutations(range(len(vs)), 2):
            a, b = vs[i], vs[j]
            rest = [vs[k] for k in range(len(vs)) if k not in (i, j)]
            for c in (a + b, a - b, a * b, a / b if b else None):
                if c is not None and rec(rest + [c]):
                    return True
        return False

    return rec(vals)


def tree_value(tree):
    """Exact value of (op, left, right) trees; None on division by zero."""
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = tree_value(left), tree_value(right)
    if a is None or b is None:
        return None
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def tree_leaves(tree):
    return [tree] if isinstance(tree, int) else tree_leaves(tree[1]) + tree_leaves(tree[2])


PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def render(tree, rnd, parent_op=None, side=None):
    """Infix text with the parentheses needed, plus random redundant ones and spaces."""
    if isinstance(tree, int):
        text = str(tree)
        needed = False
    else:
        op, left, right = tree
        sp = " " if rnd.random() < 0.2 else ""
        text = f"{render(left, rnd, op, 'L')}{sp}{op}{sp}{render(right, rnd, op, 'R')}"
        needed = parent_op is not None and (
            PREC[op] < PREC[parent_op] or (side == "R" and PREC[op] == PREC[parent_op]))
    if needed or rnd.random() < 0.15:
        text = f"({text})"
    return text


# --------------------------------------------------------------------------- cards and prompts


def test_card_values():
    assert [gp.card_value(c, "ten") for c in gp.CARDS] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]
    assert [gp.card_value(c) for c in gp.CARDS] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]  # "ten" by default
    assert [gp.card_value(c, "ranked") for c in gp.CARDS] == list(range(1, 14))
    assert gp.card_value(13, "ranked") == 13 and gp.card_value(1, "ten") == 1
    with pytest.raises(ValueError, match=r"^unknown card 14;"):  # ranks stop at 13 (K)
        gp.card_value(14, "ranked")
    with pytest.raises(ValueError, match=r"^unknown card 'Z'; cards are A 2 3 4 5 6 7 8 9 10 J Q K "
                                         r"\(or ranks 1\.\.13\)$"):
        gp.card_value("Z", "ten")
    with pytest.raises(ValueError, match="ten.*ranked"):
        gp.card_value("K", "royal")


def test_prompts_short_encodable_and_differ_only_in_rule():
    tok = Tokenizer()
    p_ten = gp.make_prompt(["K", "5", "3", "A"], "ten")
    p_ranked = gp.make_prompt(["K", "5", "3", "A"], "ranked")
    assert p_ten == "Cards: K 5 3 A. J,Q,K count as 10. Make 24 with + - * / and ( ).\nAnswer: "
    assert p_ranked == "Cards: K 5 3 A. J=11 Q=12 K=13. Make 24 with + - * / and ( ).\nAnswer: "
    assert gp.make_prompt(["K", "5", "3", "A"]) == p_ten  # the default rule, as everywhere: face cards count 10
    assert p_ten.replace(gp._RULE_TEXT["ten"], gp._RULE_TEXT["ranked"]) == p_ranked
    for rule in gp.FACE_CARD_RULES:
        longest = gp.make_prompt(["10"] * 4, rule)
        assert len(longest) <= 100
        assert tok.decode(tok.encode(longest)) == longest


# --------------------------------------------------------------------------- verifier: fixed cases

C3388 = ["3", "3", "8", "8"]


@pytest.mark.parametrize("cards,answer,rule,reward", [
    (C3388, "8/(3-8/3)=24", "ten", 5),
    (C3388, "8/(3-8/3)", "ten", 5),  # no "=24"
    (C3388, " 8 / ( 3 - 8 / 3 ) = 24 \n", "ten", 5),  # whitespace
    (C3388, "8/(3-8/3)=25", "ten", 5),  # wrong claim is ignored
    (["10", "4", "5", "A"], "(10-4)*(5-1)=24", "ten", 5),
    (["J", "4", "5", "A"], "(10-4)*(5-1)", "ten", 5),  # J is 10 under "ten"
    (["J", "4", "5", "A"], "(10-4)*(5-1)", "ranked", -2),  # ... but 11 under "ranked"
    (["J", "2", "3", "A"], "(11+1)*2*3", "ten", -2),  # J used as 11 under "ten"
    (["J", "2", "3", "A"], "(11+1)*2*3", "ranked", -1),  # right numbers, value 72
    (C3388, "3+3+8+8", "ten", -1),  # wrong value
    (C3388, "8*3", "ten", -2),  # missing cards
    (C3388, "3+8+8", "ten", -2),  # missing one card
    (C3388, "3+3+8+8+2", "ten", -2),  # extra number
    (C3388, "3*8*(8-3-4)", "ten", -2),  # extra number, value 24
    (C3388, "3*3*8/8", "ten", -1),  # right multiset in another order: value 9
    (C3388, "3*3*3*8", "ten", -2),  # right count, wrong multiset
    (["3", "5", "8", "A"], "3*5+5+1", "ten", -2),  # number not among the cards
    (C3388, "8/(3-3)+8", "ten", -3),  # division by zero
    (C3388, "8/(3-3)*0+8", "ten", -3),
    (C3388, "((3+3)*8-8", "ten", -3),  # unbalanced
    (C3388, "3+3)*8-8", "ten", -3),
    (C3388, "", "ten", -3),
    (C3388, "   ", "ten", -3),
    (C3388, "8/(3-8/3)=", "ten", -3),
    (C3388, "8/(3-8/3)=24=24", "ten", -3),
    (C3388, "-3+3+8+8", "ten", -3),  # unary minus
    (C3388, "3*-8", "ten", -3),
    (C3388, "3 3 8 8", "ten", -3),
    (C3388, "3@3+8+8", "ten", -3),
    (C3388, "8÷(3-8÷3)", "ten", -3),  # non-ASCII
    (C3388, "８/(3-8/3)", "ten", -3),  # full-width digit
    (C3388, "²+3+8+8", "ten", -3),  # unicode digit
    (C3388, "3.0+3+8+8", "ten", -3),
    (C3388, "12345-3+3+8+8", "ten", -3),  # huge literal
    (C3388, "x" * 10_000, "ten", -3),  # 10 kB
    (C3388, "(" * 1000 + "3" + ")" * 1000, "ten", -3),  # 1000 nested (also too long)
    (C3388, "(" * 30 + "3+3+8+8" + ")" * 30, "ten", -3),  # too deep, short enough
    (C3388, "(" * 20 + "8/(3-8/3)" + ")" * 20, "ten", -3),  # 21 deep
    (C3388, "(" * 19 + "8/(3-8/3)" + ")" * 19, "ten", 5),  # 20 deep is fine
    (C3388, "3\n+3\n*8-8\n", "ten", -1),
])
def test_verify_cases(cards, answer, rule, reward):
    v = gp.verify(cards, answer, rule)
    assert isinstance(v, gp.Verdict)
    assert v.reward == reward, v
    assert v.correct == (reward == gp.REWARD_CORRECT)
    assert v.kind == {5: "correct", -1: "wrong_value", -2: "wrong_numbers", -3: "illegal"}[reward]
    assert isinstance(v.reason, str) and 0 < len(v.reason) < 300
    assert (v.value is None) == (reward == -3)


def test_verify_reasons():
    assert gp.verify(C3388, "8/(3-8/3)=24").reason == "correct: 8/(3-8/3) = 24"
    assert gp.verify(C3388, "3+3+8+8").reason == "value is 22, not 24"
    assert gp.verify(["3", "5", "8", "A"], "3*5+5+1").reason == "uses 1, 3, 5, 5 but the cards are 3, 5, 8, A(=1)"
    assert gp.verify(C3388, "8/(3-3)+8").reason == "division by zero"
    assert "'@'" in gp.verify(C3388, "3@3").reason and "position 1" in gp.verify(C3388, "3@3").reason
    assert gp.verify(C3388, "8/3+3+8").value == Fraction(41, 3)
    assert "41/3" in gp.verify(C3388, "8/3+3+8").reason


def test_verify_non_str_and_reward_table():
    for bad in (None, 24, 3.5, b"8/(3-8/3)", ["8"], object()):
        v = gp.verify(C3388, bad)
        assert v.reward == gp.REWARD_ILLEGAL and not v.correct
    assert gp.REWARD_TABLE == {"correct": 5.0, "wrong_value": -1.0, "wrong_numbers": -2.0, "illegal": -3.0}
    with pytest.raises(ValueError):
        gp.verify(C3388, "3", "royal")


def test_parse_expression():
    assert gp.parse_expression("(10-4)*(5-1)=24") == (Fraction(24), [10, 4, 5, 1])
    assert gp.parse_expression("2*3+4") == (10, [2, 3, 4])  # precedence
    assert gp.parse_expression("8-3-2") == (3, [8, 3, 2])  # left associative
    assert gp.parse_expression("8/4/2") == (1, [8, 4, 2])
    for bad in ("1/0", "", "(", "1+", "-1", "1=x"):
        with pytest.raises(gp.ExpressionError):
            gp.parse_expression(bad)
    with pytest.raises(gp.ExpressionError, match=r"^division by zero$"):
        gp.parse_expression("3/(2-2)")


def test_long_operator_chain_is_fine():
    answer = "+".join(["1"] * 100)  # 199 characters: under the limit, deep left tree
    v = gp.verify(C3388, answer)
    assert v.reward == gp.REWARD_WRONG_NUMBERS and v.value == 100
    assert v.reason == "uses 100 numbers (1..1) but the cards are 3, 3, 8, 8"


# --------------------------------------------------------------------------- verifier: fuzz

FORMULA_ALPHABET = "0123456789+-*/()= \n\tJQKAx.,^%"


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_any_text_never_raises(text):
    v = gp.verify(C3388, text, "ten")
    assert isinstance(v, gp.Verdict) and v.reward in gp.REWARD_TABLE.values()


@FUZZ
@given(st.text(alphabet=FORMULA_ALPHABET, max_size=80), st.sampled_from(gp.FACE_CARD_RULES))
def test_fuzz_formula_alphabet_never_raises(text, rule):
    v = gp.verify(["J", "4", "5", "A"], text, rule)
    assert isinstance(v, gp.Verdict) and v.reward in gp.REWARD_TABLE.values()
    assert v.correct == (v.reward == gp.REWARD_CORRECT)


hands = st.lists(st.sampled_from(gp.CARDS), min_size=4, max_size=4)
OPS = st.sampled_from("+-*/")


def check_tree_verdict(cards, rule, tree, rnd):
    values = gp.hand_values(cards, rule)
    text = render(tree, rnd)
    if rnd.random() < 0.5:
        text += "=24"
    v = gp.verify(cards, text, rule)
    value = tree_value(tree)
    if value is None:
        expected = gp.REWARD_ILLEGAL
    elif sorted(tree_leaves(tree)) != sorted(values):
        expected = gp.REWARD_WRONG_NUMBERS
    elif value != 24:
        expected = gp.REWARD_WRONG_VALUE
    else:
        expected = gp.REWARD_CORRECT
    assert v.reward == expected, (cards, rule, text, v)
    assert v.correct == (value == 24 and sorted(tree_leaves(tree)) == sorted(values))
    if value is not None:
        assert v.value == value
    return v


@TREES
@given(hands, st.sampled_from(gp.FACE_CARD_RULES), st.data(), st.randoms(use_true_random=False))
def test_fuzz_random_trees(cards, rule, data, rnd):
    values = gp.hand_values(cards, rule)
    leaves = st.sampled_from(values) | st.integers(0, 13)
    tree = data.draw(st.recursive(leaves, lambda ch: st.tuples(OPS, ch, ch), max_leaves=6))
    check_tree_verdict(cards, rule, tree, rnd)


@st.composite
def exact_trees(draw, values):
    """Random trees using exactly the multiset `values`, in a random order and shape."""
    items = list(draw(st.permutations(values)))
    while len(items) > 1:
        i = draw(st.integers(0, len(items) - 2))
        items[i:i + 2] = [(draw(OPS), items[i], items[i + 1])]
    return items[0]


@TREES
@given(hands, st.sampled_from(gp.FACE_CARD_RULES), st.data(), st.randoms(use_true_random=False))
def test_fuzz_exact_number_trees(cards, rule, data, rnd):
    tree = data.draw(exact_trees(gp.hand_values(cards, rule)))
    v = check_tree_verdict(cards, rule, tree, rnd)
    assert v.reward != gp.REWARD_WRONG_NUMBERS
    # Random trees rarely make 24, so also play them against their own value as the target.
    value = tree_value(tree)
    if value is not None and value.denominator == 1:
        text = render(tree, rnd)
        hit = gp.verify(cards, text, rule, target=int(value))
        assert hit.correct and hit.reward == gp.REWARD_CORRECT, (cards, text, hit)
        miss = gp.verify(cards, text, rule, target=int(value) + 1)
        assert not miss.correct and miss.reward == gp.REWARD_WRONG_VALUE


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.integers(0, 10**6), st.sampled_from(gp.FACE_CARD_RULES), st.randoms(use_true_random=False))
def test_fuzz_solver_solutions_with_noise_are_correct(seed, rule, rnd):
    cards = gp.deal(seed, rule)
    sols = gp.solve(gp.hand_values(cards, rule))
    sol = rnd.choice(sols)
    text = "".join(ch + (" " if rnd.random() < 0.1 and not (ch + nxt).isdigit() else "")
                   for ch, nxt in zip(sol, sol[1:] + "="))  # never split a number
    if rnd.random() < 0.5:
        text = f"({text})"
    v = gp.verify(cards, text + rnd.choice(["", "=24", " = 24"]), rule)
    assert v.correct and v.reward == gp.REWARD_CORRECT, (cards, text, v)


# --------------------------------------------------------------------------- solver and dealing


def test_solver_known_hands():
    assert gp.solve([3, 3, 8, 8]) == ["8/(3-8/3)"]
    assert gp.solve([1, 1, 1, 1]) == [] and not gp.is_solvable([1, 1, 1, 1])
    assert gp.solve([1, 1, 1, 2]) == []
    for hand in ([1, 5, 5, 5], [3, 3, 7, 7], [4, 4, 10, 10], [1, 3, 4, 6]):
        sols = gp.solve(hand)
        assert sols and gp.is_solvable(hand)
        assert sols == sorted(sols, key=lambda s: (len(s), s))  # canonical first
    assert gp.solve([8, 3], 24) == ["3*8", "8*3"]
    assert gp.solve([8, 16], 24) == ["16+8", "8+16"]  # both orders of a sum too (nothing else of 8, 16 makes 24)


def test_solver_target_zero_lists_both_orders_of_a_zero_product():
    # Worked by hand: 2-2 is the only way to make 0 from two of the cards, and then 0*5 == 5*0 == 0/5 == 0
    # (5/0 is undefined). No other combination of 2, 2, 5 gives 0.
    assert gp.solve([2, 2, 5], 0) == ["(2-2)*5", "(2-2)/5", "5*(2-2)"]
    assert gp.solve([3, 3], 0) == ["3-3"]


def test_solver_writes_chained_products_without_parentheses():
    # 24 from 2, 3, 4 only as their product (no sum, difference or quotient of them makes 24): the six orders,
    # each written flat, since a*(b*c) and (a*b)*c need no parentheses.
    assert gp.solve([2, 3, 4]) == ["2*3*4", "2*4*3", "3*2*4", "3*4*2", "4*2*3", "4*3*2"]


def test_solve_subtracts_a_zero_from_a_zero():
    """0 - 0 = 0: when both halves of a split are worth 0, subtracting one from the other solves target 0, so a zero
    keeps its + and - partners next to its * and / ones."""
    assert {"2-2-(5-5)", "5-5-(2-2)"} <= set(gp.solve([2, 2, 5, 5], 0))


def test_solve_writes_a_three_term_sum_in_every_order():
    """1 + 2 + 21 = 24 and nothing else of these cards makes 24: the six orders of the sum, each once."""
    assert sorted(gp.solve([1, 2, 21])) == sorted("+".join(p) for p in itertools.permutations(["1", "2", "21"]))


def test_hand_values_counts_face_cards_ten_by_default():
    assert gp.hand_values(["K", "A", "7", "J"]) == [10, 1, 7, 10]


def test_solver_matches_brute_force_and_solutions_verify():
    all_hands = list(itertools.combinations_with_replacement(range(1, 14), 4))
    n_solvable = sum(gp.is_solvable(h) for h in all_hands)
    assert n_solvable == 1362  # the well-known count for values 1..13
    for hand in all_hands[::23]:
        sols = gp.solve(hand)
        assert bool(sols) == brute_solvable(hand) == gp.is_solvable(hand), hand
        for s in sols[:20]:
            value, numbers = gp.parse_expression(s)
            assert value == 24 and sorted(numbers) == sorted(hand), (hand, s)


def test_deal_only_solvable_and_ranked_has_face_card():
    rng = np.random.default_rng(0)
    for rule in gp.FACE_CARD_RULES:
        for _ in range(200):
            cards = gp.deal(rng, rule)
            assert len(cards) == 4 and all(c in gp.CARDS for c in cards)
            assert gp.is_solvable(gp.hand_values(cards, rule))
            if rule == "ranked":
                assert any(c in gp.FACE_CARDS for c in cards)
    for seed in range(30):  # independent check
        assert brute_solvable(gp.hand_values(gp.deal(seed, "ranked"), "ranked"))
    assert gp.deal(7, "ten") == gp.deal(7, "ten")


def test_deal_rejects_bad_arguments():
    with pytest.raises(ValueError):
        gp.deal(0, "royal")
    with pytest.raises(ValueError, match=r"^num_cards must be an integer, one of \(2, 3, 4\), got 7$"):
        gp.deal(0, "ten", num_cards=7)
    with pytest.raises(ValueError, match="no solvable"):
        gp.deal(0, "ten", target=100_000, max_tries=50)
    assert gp.deal(5) == gp.deal(5, "ten", 24, 4)  # the defaults: face cards count 10, target 24, four cards


def test_expert_answers_verify():
    rng = np.random.default_rng(1)
    for rule in gp.FACE_CARD_RULES:
        for _ in range(300):
            cards = gp.deal(rng, rule)
            answer = gp.expert_answer(cards, rule)
            assert answer.endswith("=24") and " " not in answer and len(answer) <= 23
            assert gp.verify(cards, answer, rule).correct, (cards, answer)
    assert gp.expert_answer(["8", "3", "8", "3"]) == "8/(3-8/3)=24"
    assert gp.expert_answer(["J", "4", "5", "A"], "ten") == gp.expert_answer(["10", "4", "5", "A"], "ten")
    assert "11" in gp.expert_answer(["J", "4", "5", "A"], "ranked")
    with pytest.raises(ValueError):
        gp.expert_answer(["A", "A", "A", "A"])


def test_expert_dataset():
    data = gp.expert_dataset(50, "ten", seed=3)
    assert data == gp.expert_dataset(50, "ten", seed=3) and data != gp.expert_dataset(50, "ten", seed=4)
    for prompt, answer in data:
        cards = re.match(r"Cards: (.*?)\. ", prompt).group(1).split()
        assert prompt == gp.make_prompt(cards, "ten")
        assert gp.verify(cards, answer, "ten").correct


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize("rule", gp.FACE_CARD_RULES)
def test_check_env(rule):
    from gymnasium.utils.env_checker import check_env

    env = gp.GeneralPointsEnv(face_card_rule=rule)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env)


def test_env_reset_step_and_determinism():
    env = gym.make("toyenv/GeneralPoints-v0", face_card_rule="ranked")
    obs1, info1 = env.reset(seed=11)
    obs2, info2 = gp.GeneralPointsEnv("ranked").reset(seed=11)
    assert obs1 == obs2 and info1 == info2
    assert set(info1) >= {"cards", "values", "face_card_rule", "target"}
    assert info1["values"] == gp.hand_values(info1["cards"], "ranked")
    assert env.observation_space.contains(obs1) and len(obs1) <= 100
    Tokenizer().encode(obs1, bos=True)
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_answer())
    assert (reward, terminated, truncated, info["correct"]) == (5.0, True, False, True)
    assert isinstance(info["verdict"], gp.Verdict) and info["reason"].startswith("correct")
    env.reset(seed=12)
    _, reward, terminated, _, info = env.step("1+")
    assert reward == gp.REWARD_ILLEGAL and terminated and not info["correct"]
    seen = {gp.GeneralPointsEnv().reset(seed=s)[0] for s in range(20)}
    assert len(seen) > 10


def test_env_options_and_errors():
    env = gp.GeneralPointsEnv("ten", num_cards=3, render_mode="ansi")
    obs, info = env.reset(seed=0)
    assert len(info["cards"]) == 3
    env.step(env.expert_answer())
    assert "reward +5" in env.render()
    with pytest.raises(ValueError):
        gp.GeneralPointsEnv(num_cards=7)
    with pytest.raises(ValueError):
        gp.GeneralPointsEnv(face_card_rule="royal")
    with pytest.raises(RuntimeError):
        gp.GeneralPointsEnv().step("1")


def test_env_pays_nothing_after_the_episode():
    """Gymnasium's contract: after terminated=True the caller must reset(). It used to pay +5 on every call."""
    env = gp.GeneralPointsEnv("ten", render_mode="ansi")
    env.reset(seed=0)
    answer = env.expert_answer()
    assert env.step(answer)[1:4] == (5.0, True, False)
    shown = env.render()
    for again in (answer, "1+", None):
        obs, reward, terminated, truncated, info = env.step(again)
        assert (reward, terminated, truncated) == (0.0, True, False) and obs == env.prompt
        assert not info["correct"] and info["reason"] == "episode is over; call reset()"
        assert info["cards"] == env.cards
    assert env.render() == shown  # the scored answer is still the one shown
    env.reset(seed=0)  # a new episode pays again
    assert env.step(answer)[1] == 5.0


def test_env_enforces_max_answer_chars():
    """An answer longer than max_answer_chars is refused unread (illegal), even a correct formula."""
    env = gp.GeneralPointsEnv("ten")
    assert env.max_answer_chars == 64 == env.action_space.max_length
    _, info = env.reset(seed=0)
    formula = env.expert_answer()
    for length, reward in ((150, gp.REWARD_ILLEGAL), (65, gp.REWARD_ILLEGAL), (64, gp.REWARD_CORRECT)):
        answer = formula + " " * (length - len(formula))
        assert len(answer) == length and gp.verify(info["cards"], answer).correct  # a correct formula
        env.reset(seed=0)
        _, r, terminated, _, step_info = env.step(answer)
        assert r == reward and terminated
        if reward == gp.REWARD_ILLEGAL:
            assert step_info["kind"] == "illegal" and not step_info["correct"]
            assert f"answer is {length} characters long (limit max_answer_chars=64)" in step_info["reason"]
    short = gp.GeneralPointsEnv("ten", max_answer_chars=len(formula))
    short.reset(seed=0)
    assert short.step(formula)[1] == gp.REWARD_CORRECT
    short.reset(seed=0)
    assert short.step(formula + " ")[1] == gp.REWARD_ILLEGAL


@pytest.mark.parametrize("field, value", [
    ("num_cards", 3.0),  # `3.0 in (2, 3, 4)` let it through, then it failed deep inside
    ("num_cards", 5),
    ("num_cards", -4),
    ("num_cards", "4"),
    ("num_cards", True),
    ("max_answer_chars", 64.5),  # used to become 64 in silence
    ("max_answer_chars", 0),
    ("max_answer_chars", -1),
    ("max_answer_chars", gp.MAX_ANSWER_LENGTH + 1),  # verify() would refuse such answers anyway
    ("max_answer_chars", "64"),
    ("max_answer_chars", None),
])
def test_env_constructor_refuses_bad_arguments(field, value):
    with pytest.raises(ValueError) as err:
        gp.GeneralPointsEnv(**{field: value})
    msg = str(err.value)
    assert msg.startswith(f"GeneralPointsEnv.{field} must be an integer") and msg.endswith(f"got {value!r}"), msg


def test_env_constructor_names_bad_target_and_accepts_numpy_ints():
    for bad in (24.0, "24", None):
        with pytest.raises(TypeError, match=re.escape(f"target must be an int, got {bad!r} ({type(bad).__name__})")):
            gp.GeneralPointsEnv(target=bad)
    env = gp.GeneralPointsEnv(num_cards=np.int64(3), max_answer_chars=np.int32(gp.MAX_ANSWER_LENGTH),
                              target=np.int8(24))
    assert (env.num_cards, env.max_answer_chars, env.target) == (3, gp.MAX_ANSWER_LENGTH, 24)
    assert len(env.reset(seed=0)[1]["cards"]) == 3


# --------------------------------------------------------------------------- evaluate with fake models


class FakeModel:
    """Mimics GPT.generate: left-pads prompts, appends an answer + EOS, pads the rest."""

    def __init__(self, answer_fn):
        self.answer_fn = answer_fn
        self.tok = Tokenizer()
        self.calls = []

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_k=None, greedy=False, eos_id=2, pad_id=0,
                 use_cache=True, generator=None):
        self.calls.append((len(prompts), torch.is_grad_enabled(), greedy))
        P = max(len(p) for p in prompts)
        tokens = torch.full((len(prompts), P + max_new_tokens), pad_id, dtype=torch.long)
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        for b, p in enumerate(prompts):
            tokens[b, P - len(p):P] = torch.tensor(p)
            gen = self.answer_fn(self.tok.decode(p))[:max_new_tokens]
            tokens[b, P:P + len(gen)] = torch.tensor(gen, dtype=torch.long)
            mask[b, P:P + len(gen)] = True
        return tokens, mask


def expert_from_prompt(prompt):
    cards = re.match(r"Cards: (.*?)\. ", prompt).group(1).split()
    rule = "ranked" if "J=11" in prompt else "ten"
    return Tokenizer().encode(gp.expert_answer(cards, rule), eos=True)


@pytest.mark.parametrize("rule", gp.FACE_CARD_RULES)
def test_evaluate_expert_model(rule):
    model = FakeModel(expert_from_prompt)
    res = gp.evaluate(model, Tokenizer(), face_card_rule=rule, n_episodes=40, seed=0, batch_size=16)
    assert res["accuracy"] == 1.0 and res["mean_reward"] == 5.0 and res["n"] == 40
    assert res["counts"] == {"correct": 40, "wrong_value": 0, "wrong_numbers": 0, "illegal": 0}
    assert res["correct"] == [True] * 40
    assert [c[0] for c in model.calls] == [16, 16, 8] and not any(c[1] for c in model.calls)
    prompt, completion, reason = res["samples"][0]
    assert prompt.startswith("Cards: ") and completion.endswith("=24") and reason.startswith("correct")
    assert gp.evaluate(FakeModel(expert_from_prompt), Tokenizer(), rule, n_episodes=40)["samples"] == res["samples"]


def test_evaluate_marks_each_deal_in_order_and_a_prefix_replays_the_same_deals():
    hands = gp.eval_hands(30, "ten", seed=2)
    solved = {" ".join(h) for h in hands[::3]}  # every third deal answered right, the rest wrong

    def answer(prompt):
        cards = re.match(r"Cards: (.*?)\. ", prompt).group(1)
        return expert_from_prompt(prompt) if cards in solved else Tokenizer().encode("1+1=2", eos=True)

    res = gp.evaluate(FakeModel(answer), Tokenizer(), "ten", n_episodes=30, seed=2, batch_size=8)
    assert res["correct"] == [" ".join(h) in solved for h in hands] and res["accuracy"] == sum(res["correct"]) / 30
    assert 8 <= sum(res["correct"]) < 30
    assert gp.evaluate(FakeModel(answer), Tokenizer(), "ten", n_episodes=12, seed=2)["correct"] == res["correct"][:12]


def test_evaluate_garbage_model():
    rng = np.random.default_rng(0)

    def garbage(prompt):  # random ids, including specials, sometimes no EOS at all
        return rng.integers(0, Tokenizer().vocab_size, size=int(rng.integers(0, 30))).tolist()

    res = gp.evaluate(FakeModel(garbage), Tokenizer(), "ten", n_episodes=30, batch_size=7, greedy=False)
    assert res["accuracy"] == 0.0 and res["n"] == 30
    assert sum(res["counts"].values()) == 30
    assert res["mean_reward"] <= gp.REWARD_WRONG_NUMBERS
    res = gp.evaluate(FakeModel(lambda p: Tokenizer().encode("3*8=24", eos=True)), Tokenizer(), "ranked",
                      n_episodes=10)
    assert res["accuracy"] == 0.0 and res["counts"]["wrong_numbers"] == 10 and res["correct"] == [False] * 10


def test_rollout_rewards_and_verify_batch():
    env = gp.GeneralPointsEnv("ten")
    infos, answers = [], []
    for s in range(5):
        _, info = env.reset(seed=s)
        infos.append(info)
        answers.append(env.expert_answer())
    assert gp.rollout_rewards(answers, infos) == [5.0] * 5
    assert gp.rollout_rewards(["", "1/0", None, "x", "(" * 50], infos) == [-3.0] * 5
    verdicts = gp.verify_batch(answers, [i["cards"] for i in infos], "ten")
    assert all(v.correct for v in verdicts)
    with pytest.raises(ValueError, match="^2 completions but 5 infos$"):
        gp.rollout_rewards(answers[:2], infos)


def test_evaluate_real_model_smoke(small_model):
    """The real GPT (random weights) plugs into evaluate; the longest prompt + BOS is 78 tokens."""
    assert max(len(gp.make_prompt(["10"] * 4, r)) for r in gp.FACE_CARD_RULES) + 1 == 78
    small_model.train()
    for greedy in (True, False):
        res = gp.evaluate(small_model, Tokenizer(), "ranked", n_episodes=2, batch_size=2, max_new_tokens=4,
                          greedy=greedy)
        assert res["n"] == 2 and 0.0 <= res["accuracy"] <= 1.0 and len(res["samples"]) == 2
    assert small_model.training  # restored


def test_expert_hands_are_the_deals_expert_dataset_answers():
    hands = gp.expert_hands(50, "ten", seed=3)
    pairs = gp.expert_dataset(50, "ten", seed=3)
    assert [gp.make_prompt(h, "ten") for h in hands] == [p for p, _ in pairs]
    assert [gp.expert_answer(h, "ten") for h in hands] == [a for _, a in pairs]
    assert hands != gp.eval_hands(50, "ten", seed=3)  # a different stream of the same seed


def test_a_target_and_a_hand_size_other_than_24_and_4_reach_every_helper():
    """Every helper that takes `target` (and `num_cards`) passes it on: prompts, expert answers, verification,
    rollout rewards, the environment and `evaluate`, on hands of 3 cards that must make 10."""
    for prompt, answer in gp.expert_dataset(30, "ten", seed=0, target=10, num_cards=3):
        cards = re.match(r"Cards: (.*?)\. ", prompt).group(1).split()
        assert len(cards) == 3 and "Make 10 with" in prompt and answer.endswith("=10")
        assert gp.verify(cards, answer, "ten", 10).correct and not gp.verify(cards, answer, "ten").correct
    hands = gp.eval_hands(30, "ten", seed=0, target=10, num_cards=3)
    assert all(len(h) == 3 for h in hands) and all(len(h) == 3 for h in gp.expert_hands(5, "ten", 0, 10, 3))
    answers = [gp.expert_answer(h, "ten", 10) for h in hands]
    assert all(v.correct for v in gp.verify_batch(answers, hands, "ten", 10))
    infos = [{"cards": h, "face_card_rule": "ranked", "target": 10} for h in hands]
    ranked = [gp.expert_answer(h, "ranked", 10) if gp.is_solvable(gp.hand_values(h, "ranked"), 10) else "1=10"
              for h in hands]
    assert gp.rollout_rewards(ranked, infos) == [gp.verify(h, a, "ranked", 10).reward for h, a in zip(hands, ranked)]
    hand24 = gp.eval_hands(1, "ten", seed=0)[0]  # an info without rule or target means "ten" and 24
    assert gp.rollout_rewards([gp.expert_answer(hand24)], [{"cards": hand24}]) == [gp.REWARD_TABLE["correct"]]
    env = gp.GeneralPointsEnv(target=10, num_cards=3)
    obs, info = env.reset(seed=1)
    assert len(info["cards"]) == 3 and "Make 10 with" in obs and env.expert_answer().endswith("=10")
    assert env.step(env.expert_answer())[1] == gp.REWARD_TABLE["correct"]
    model = FakeModel(lambda p: Tokenizer().encode(
        gp.expert_answer(re.match(r"Cards: (.*?)\. ", p).group(1).split(), "ten", 10), eos=True))
    assert gp.evaluate(model, Tokenizer(), "ten", n_episodes=12, target=10)["accuracy"] == 1.0


def test_env_state_spaces_and_render_in_full():
    env = gp.GeneralPointsEnv("ten", render_mode="ansi", max_answer_chars=1)  # the smallest limit is allowed
    assert (env.cards, env.values, env.prompt, env.last_answer, env.last_verdict) == (None,) * 5
    assert env.render() == ""
    with pytest.raises(RuntimeError, match=r"^call reset\(\) before step\(\)$"):
        env.step("1")
    with pytest.raises(RuntimeError, match=r"^call reset\(\) before expert_answer\(\)$"):
        env.expert_answer()
    env = gp.GeneralPointsEnv("ten", render_mode="ansi")
    # the action space: any text of the course's characters up to max_answer_chars, the empty answer included
    assert env.action_space.contains("") and env.action_space.contains("8/(3-8/3)=24")
    assert not env.action_space.contains("x" * 65)
    prompt, _ = env.reset(seed=3)
    answer = env.expert_answer()
    env.step(answer)
    assert env.render() == f"{prompt}{answer}\n-> {env.last_verdict.reason} (reward +5)"
    env.reset(seed=3)
    env.step(42)  # not a string: illegal, and render shows no answer text
    assert env.render() == f"{prompt}\n-> illegal: answer is not a string (got int) (reward -3)"
    with pytest.raises(ValueError, match=r"render_mode must be None or one of \['ansi'\], got 'human'"):
        gp.GeneralPointsEnv(render_mode="human")


def test_a_refused_long_answer_is_not_correct():
    env = gp.GeneralPointsEnv("ten", max_answer_chars=5)
    env.reset(seed=0)
    _, reward, _, _, info = env.step("1+2+3+4")
    assert reward == gp.REWARD_ILLEGAL and info["correct"] is False and info["verdict"].correct is False


def test_expert_hands_default_seed_is_0():
    assert gp.expert_hands(3) == gp.expert_hands(3, seed=0) != gp.expert_hands(3, seed=1)


def test_expert_dataset_defaults_are_rule_ten_seed_0():
    assert gp.expert_dataset(3) == gp.expert_dataset(3, "ten", 0, 24, 4)


def test_a_step_after_the_episode_has_no_verdict_and_no_kind():
    env = gp.GeneralPointsEnv("ten")
    env.reset(seed=0)
    env.step("1+2")
    info = env.step("1+2")[4]
    assert (info["verdict"], info["kind"], info["correct"]) == (None, None, False)


def test_evaluate_defaults_and_what_it_passes_to_the_sampler(monkeypatch):
    import toyenv.model
    from toyenv.tokenizer import EOS_ID, PAD_ID

    spy = SpySampler(lambda i, p: "")
    monkeypatch.setattr(toyenv.model, "complete", spy)
    res = gp.evaluate("model", "tok")
    (call,) = spy.calls
    assert call["prompts"] == [gp.make_prompt(h, "ten", 24) for h in gp.eval_hands(500, "ten", 0, 24)]
    assert {k: call[k] for k in ("max_new_tokens", "batch_size", "temperature", "top_k", "greedy", "eos_id",
                                 "pad_id", "generator")} == {
        "max_new_tokens": 24, "batch_size": 256, "temperature": 1.0, "top_k": None, "greedy": True, "eos_id": EOS_ID,
        "pad_id": PAD_ID, "generator": None}
    assert (res["n"], len(res["samples"]), res["counts"]["illegal"]) == (500, 8, 500)
    assert gp.eval_hands(4) == gp.eval_hands(4, "ten", 0, 24, 4)

    # every setting reaches the sampler and the verifier: the hands are eval_hands' with the same settings, and
    # every other answer is the expert's for target 10 under "ranked"
    spy = SpySampler(lambda i, p: "")
    monkeypatch.setattr(toyenv.model, "complete", spy)
    hands = gp.eval_hands(6, "ranked", seed=5, target=10)
    experts = [gp.expert_answer(h, "ranked", 10) for h in hands]
    spy.answer = lambda i, p: experts[i] if i % 2 == 0 else "1+1"
    res = gp.evaluate("model", "tok", "ranked", n_episodes=6, seed=5, batch_size=2, max_new_tokens=7, greedy=False,
                      temperature=0.5, top_k=3, target=10, n_samples=2)
    (call,) = spy.calls
    assert call["prompts"] == [gp.make_prompt(h, "ranked", 10) for h in hands]
    assert (call["max_new_tokens"], call["batch_size"], call["temperature"], call["top_k"], call["greedy"]) == (
        7, 2, 0.5, 3, False)
    assert call["generator"].initial_seed() == 5
    assert res["counts"]["correct"] == 3 and res["accuracy"] == 0.5 and len(res["samples"]) == 2
    assert gp.evaluate("model", "tok", n_episodes=1)["n"] == 1  # the smallest run
    with pytest.raises(ValueError, match=r"^n_episodes must be positive, got 0"):
        gp.evaluate("model", "tok", n_episodes=0)


def test_verify_batch_defaults_to_rule_ten_and_names_a_length_mismatch():
    hand = ["K", "2", "2", "2"]  # 10*2+2+2 = 24 only where K counts 10
    assert gp.verify_batch(["10*2+2+2"], [hand])[0].correct
    assert not gp.verify_batch(["10*2+2+2"], [hand], "ranked")[0].correct
    with pytest.raises(ValueError, match=r"^2 completions but 1 hands"):
        gp.verify_batch(["1", "2"], [hand])


@pytest.mark.parametrize("answer, reason", [
    ("3*8*1*1", "correct: 3*8*1*1 = 24"),
    ("3*8*1*1 = 24", "correct: 3*8*1*1 = 24"),
    ("3*8*1*1 = 25", "correct: 3*8*1*1 = 24 (the claimed =25 is wrong but ignored)"),
    ("3*8*1*1 = -24", "correct: 3*8*1*1 = 24 (the claimed =-24 is wrong but ignored)"),
    ("3 8*1*1", "illegal: unexpected number 8 at position 2 (expected an operator or '=')"),
    ("3*8*1*1 = 24 24", "illegal: unexpected text at position 13 after the claimed value"),
    ("3*8*1*1(1)", "illegal: unexpected '(' at position 7 (expected an operator or '=')"),
    ("3*8*1*1 = -", "illegal: expected a number after '='"),
    ("(3 8)*1*1", "illegal: expected ')' at position 3"),
    ("-3*8*1*1", "illegal: unary minus at position 0 is not allowed"),
    ("3*8*1*1 +", "illegal: formula ends where a number or '(' was expected"),
    ("1*2*3*4*5*6*7*8 = 24", "uses 1, 2, 3, 4, 5, 6, 7, 8 but the cards are 3, 8, A(=1), A(=1)"),  # 8 listed
    ("1*2*3*4*5*6*7*8*9 = 24", "uses 9 numbers (1..9) but the cards are 3, 8, A(=1), A(=1)"),  # more summarized
    ("3*80001", "illegal: number at position 2 has more than 4 digits"),
    ("", "illegal: empty answer"),
    ("((3*8*1*1", "illegal: unbalanced parentheses: 2 '(' not closed"),
    ("(3*8*1*1", "illegal: unbalanced parentheses: 1 '(' not closed"),
    ("3**8*1*1", "illegal: expected a number or '(' at position 2, got '*'"),
    ("3*+8*1*1", "illegal: unary plus at position 2 is not allowed"),
    ("3*8*1*1000", "uses 1, 3, 8, 1000 but the cards are 3, 8, A(=1), A(=1)"),  # 4 digits still read
    ("3X8*1*1", "illegal: unexpected character 'X' at position 1"),
    ("3*8*1*1)", "illegal: unbalanced parentheses: ')' at position 7 closes nothing"),
    ("(" * 21 + "3" + ")" * 21, "illegal: parentheses nested deeper than 20 at position 20"),
])
def test_verify_says_why_in_words_written_out_by_hand(answer, reason):
    """The reason for each verdict, exactly: a claimed value (also a negative one) is read and, when wrong,
    noted but ignored; a parse error names what it found and where (positions count from 0)."""
    assert gp.verify(["3", "8", "A", "A"], answer).reason == reason


def test_verify_turns_any_parser_crash_into_an_illegal_verdict(monkeypatch):
    """The defensive branch: an exception the grammar did not foresee still gets the illegal verdict, never a
    crash and never a reward."""
    def crash(text):
        raise RecursionError("deep")
    monkeypatch.setattr(gp, "_parse", crash)
    v = gp.verify(["3", "8", "A", "A"], "3*8*1*1")
    assert (v.correct, v.reward, v.reason, v.value) == (False, gp.REWARD_ILLEGAL,
                                                        "illegal: could not parse (RecursionError)", None)


def test_the_answer_length_limit_is_inclusive():
    fits = "3*8*1*1" + " " * (gp.MAX_ANSWER_LENGTH - 7)
    assert len(fits) == gp.MAX_ANSWER_LENGTH and gp.verify(["3", "8", "A", "A"], fits).correct
    over = gp.verify(["3", "8", "A", "A"], fits + " ")
    assert over.reason == f"illegal: answer is {gp.MAX_ANSWER_LENGTH + 1} characters long (limit {gp.MAX_ANSWER_LENGTH})"


def test_expert_answer_names_a_hand_that_cannot_make_the_target():
    with pytest.raises(ValueError, match=r"^cards \['A', 'A', 'A', 'A'\] cannot make 24 under rule 'ten'$"):
        gp.expert_answer(["A", "A", "A", "A"])
