"""GeneralPoints: the 24-points card game as a one-step text environment.

After Chu et al. 2025, "SFT Memorizes, RL Generalizes". The player is dealt
four cards and must write one arithmetic formula that uses every card's value
exactly once, with ``+ - * /`` and parentheses, and equals 24::

    Cards: 8 3 8 3. J,Q,K count as 10. Make 24 with + - * / and ( ).
    Answer: 8/(3-8/3)=24

Cards are ranks only (suits do not matter): ``A 2 3 4 5 6 7 8 9 10 J Q K``.
``A`` is 1 and number cards are worth their number. The face cards are where
the two rules differ, and the rule is stated in every prompt:

=============  ===================  ======================================
rule           face cards           role in the course
=============  ===================  ======================================
``"ten"``      J, Q, K all count 10 in distribution: SFT and RL train here
``"ranked"``   J=11, Q=12, K=13     out of distribution: evaluation only;
                                    every ranked deal holds a face card, so
                                    the rule change always matters
=============  ===================  ======================================

A model that memorised "K means 10" keeps writing 10 for a K under the ranked
rule and gets the numbers wrong; a model that learned to read the rule adapts.

Rewards (one step, then the episode ends), as in the original game:

=================  ======  ================================================
verdict kind       reward  meaning
=================  ======  ================================================
``correct``          +5    well formed, numbers are exactly the cards, = 24
``wrong_value``      -1    well formed, right numbers, but value is not 24
``wrong_numbers``    -2    well formed, but a card is missing, used twice,
                           or a number is not among the cards
``illegal``          -3    unparsable, too long/deep, division by zero,
                           unary minus, non-ASCII, not a string
=================  ======  ================================================

Checks run in that order of severity: syntax first, then division by zero,
then the numbers, then the value. The answer grammar (see :func:`verify`)::

    answer  := expr [ "=" ["-"] INT ]        whitespace allowed anywhere
    expr    := term  (("+" | "-") term)*
    term    := factor (("*" | "/") factor)*
    factor  := INT | "(" expr ")"             INT: 1 to 4 ASCII digits

Unary minus (``-3+...``) is rejected as illegal. The trailing ``=N`` claim is
optional and ignored for correctness (a wrong claim is only mentioned in the
reason). Arithmetic is exact (:class:`fractions.Fraction`); nothing is ever
``eval``-ed. The step-by-step format (``10-4=6`` lines) is not accepted.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from toyenv.envs.sampling import sampling_generator
from toyenv.tokenizer import CHARACTERS, EOS_ID, PAD_ID

__all__ = [
    "CARDS", "FACE_CARDS", "FACE_CARD_RULES", "REWARD_CORRECT", "REWARD_WRONG_VALUE",
    "REWARD_WRONG_NUMBERS", "REWARD_ILLEGAL", "REWARD_TABLE", "MAX_ANSWER_LENGTH",
    "MAX_NESTING", "MAX_DIGITS", "Verdict", "ExpressionError", "card_value", "hand_values",
    "solve", "is_solvable", "deal", "make_prompt", "expert_answer", "parse_expression",
    "verify", "verify_batch", "rollout_rewards", "expert_hands", "expert_dataset", "eval_hands", "evaluate",
    "GeneralPointsEnv", "VERDICT_KINDS", "SUPPORTED_NUM_CARDS",
]

# --------------------------------------------------------------------------- cards

CARDS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
FACE_CARDS = ("J", "Q", "K")
FACE_CARD_RULES = ("ten", "ranked")
_RULE_TEXT = {"ten": "J,Q,K count as 10.", "ranked": "J=11 Q=12 K=13."}
SUPPORTED_NUM_CARDS = (2, 3, 4)

# --------------------------------------------------------------------------- rewards

REWARD_CORRECT = 5.0
REWARD_WRONG_VALUE = -1.0
REWARD_WRONG_NUMBERS = -2.0
REWARD_ILLEGAL = -3.0
REWARD_TABLE = {
    "correct": REWARD_CORRECT,
    "wrong_value": REWARD_WRONG_VALUE,
    "wrong_numbers": REWARD_WRONG_NUMBERS,
    "illegal": REWARD_ILLEGAL,
}
VERDICT_KINDS = tuple(REWARD_TABLE)

# Bounds that keep verify() cheap on any input.
MAX_ANSWER_LENGTH = 200  # characters
MAX_NESTING = 20  # parenthesis depth
MAX_DIGITS = 4  # per integer literal

_WHITESPACE = " \t\r\n"


def _check_rule(face_card_rule: str) -> str:
    if face_card_rule not in FACE_CARD_RULES:
        raise ValueError(f"face_card_rule must be one of {FACE_CARD_RULES}, got {face_card_rule!r}")
    return face_card_rule


def _check_target(target: int) -> int:
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"target must be an int, got {target!r} ({type(target).__name__})")
    return int(target)


def _check_num_cards(num_cards: Any, owner: str = "num_cards") -> int:
    # `3.0 in (2, 3, 4)` is True, so check the type too: a float count fails later with a cryptic error.
    if isinstance(num_cards, bool) or not isinstance(num_cards, (int, np.integer)) or \
            num_cards not in SUPPORTED_NUM_CARDS:
        raise ValueError(f"{owner} must be an integer, one of {SUPPORTED_NUM_CARDS}, got {num_cards!r}")
    return int(num_cards)


def _normalize_card(card: Any) -> str:
    """Card string of `card`; ints are ranks (1=A, 11=J, 12=Q, 13=K)."""
    if isinstance(card, (int, np.integer)) and not isinstance(card, bool) and 1 <= card <= 13:
        return CARDS[int(card) - 1]
    if isinstance(card, str) and card.upper() in CARDS:
        return card.upper()
    raise ValueError(f"unknown card {card!r}; cards are {' '.join(CARDS)} (or ranks 1..13)")


def card_value(card: str | int, face_card_rule: str = "ten") -> int:
    """Value of one card: A=1, 2..10 as printed, J/Q/K = 10 ("ten") or 11/12/13 ("ranked")."""
    _check_rule(face_card_rule)
    rank = CARDS.index(_normalize_card(card)) + 1
    if rank > 10 and face_card_rule == "ten":
        return 10
    return rank


def hand_values(cards: Sequence[str | int], face_card_rule: str = "ten") -> list[int]:
    """Values of `cards` under the rule, in the order given."""
    return [card_value(c, face_card_rule) for c in cards]


# --------------------------------------------------------------------------- solver
# Expressions are built by splitting the multiset of values into two non-empty
# parts, solving each part recursively, and combining them with one operator.
# Each sub-result is (text, precedence) with the fewest parentheses needed:
# precedence 3 = a number, 2 = top-level * or /, 1 = top-level + or -.

_ATOM, _MUL, _ADD = 3, 2, 1
_PREC = {"+": _ADD, "-": _ADD, "*": _MUL, "/": _MUL}


def _render(left: tuple[str, int], op: str, right: tuple[str, int]) -> tuple[str, int]:
    p = _PREC[op]
    ltxt = f"({left[0]})" if left[1] < p else left[0]
    # a-(b+c), a/(b*c) need parentheses; a+(b-c) == a+b-c and a*(b/c) == a*b/c do not.
    rneeds = right[1] < p or (right[1] == p and op in "-/")
    rtxt = f"({right[0]})" if rneeds else right[0]
    return f"{ltxt}{op}{rtxt}", p


def _splits(values: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Unordered splits of a sorted multiset into two non-empty sorted parts, deduplicated."""
    n = len(values)
    seen = set()
    out = []
    for mask in range(1, 2 ** (n - 1)):  # bit n-1 always on the right side: unordered
        a = tuple(values[i] for i in range(n) if mask >> i & 1)
        b = tuple(values[i] for i in range(n) if not mask >> i & 1)
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def _combine(va: Fraction, vb: Fraction) -> list[tuple[str, bool, Fraction]]:
    """(op, swapped, value) for every way to combine two values; swapped means b op a."""
    out = [("+", False, va + vb), ("+", True, va + vb), ("*", False, va * vb), ("*", True, va * vb),
           ("-", False, va - vb), ("-", True, vb - va)]
    if vb != 0:
        out.append(("/", False, va / vb))
    if va != 0:
        out.append(("/", True, vb / va))
    return out


@functools.lru_cache(maxsize=None)
def _all_expressions(values: tuple[int, ...]) -> dict[Fraction, tuple[tuple[str, int], ...]]:
    """Every value reachable from the sorted multiset `values` -> expressions reaching it."""
    if len(values) == 1:
        return {Fraction(values[0]): ((str(values[0]), _ATOM),)}
    found: dict[Fraction, dict[tuple[str, int], None]] = {}
    for a, b in _splits(values):
        da, db = _all_expressions(a), _all_expressions(b)
        for va, ea in da.items():
            for vb, eb in db.items():
                for op, swapped, v in _combine(va, vb):
                    bucket = found.setdefault(v, {})
                    for x, y in itertools.product(ea, eb):
                        bucket[_render(y, op, x) if swapped else _render(x, op, y)] = None
    return {v: tuple(e) for v, e in found.items()}


def _partners(va: Fraction, target: Fraction) -> list[tuple[str, bool, Fraction | None]]:
    """(op, swapped, vb) such that `va op vb` (or `vb op va` if swapped) == target.

    vb None means "any non-zero vb" (only when va == target == 0 with * or /).
    """
    t = target
    out: list[tuple[str, bool, Fraction | None]] = [
        ("+", False, t - va), ("+", True, t - va), ("-", False, va - t), ("-", True, va + t)]
    if va != 0:
        out += [("*", False, t / va), ("*", True, t / va), ("/", True, t * va)]
        if t != 0:
            out.append(("/", False, va / t))
    elif t == 0:  # 0*b == b*0 == 0 for every b, and 0/b == 0 for every b != 0
        out += [("*", False, None), ("*", True, None), ("/", False, None)]
    return out


@functools.lru_cache(maxsize=None)
def _solutions(values: tuple[int, ...], target: int) -> tuple[str, ...]:
    t = Fraction(target)
    if len(values) == 1:
        return (str(values[0]),) if values[0] == target else ()
    found: dict[str, None] = {}
    for a, b in _splits(values):
        da, db = _all_expressions(a), _all_expressions(b)
        for va, ea in da.items():
            for op, swapped, vb in _partners(va, t):
                if vb is None:
                    matches = [e for v, e in db.items() if op == "*" or v != 0]
                else:
                    eb = db.get(vb)
                    matches = [eb] if eb else []
                for eb in matches:
                    for x, y in itertools.product(ea, eb):
                        found[(_render(y, op, x) if swapped else _render(x, op, y))[0]] = None
    return tuple(sorted(found, key=lambda s: (len(s), s)))


def solve(values: Iterable[int], target: int = 24) -> list[str]:
    """All distinct infix solutions (each value used exactly once), shortest first.

    Solutions use the fewest parentheses; ties are sorted lexicographically, so
    ``solve(...)[0]`` is the canonical one. Returns [] for unsolvable hands.
    Cached on (sorted values, target).

    >>> solve([3, 3, 8, 8])
    ['8/(3-8/3)']
    """
    vals = tuple(sorted(int(v) for v in values))
    if not vals:
        return []
    return list(_solutions(vals, _check_target(target)))


@functools.lru_cache(maxsize=None)
def _reachable(values: tuple[int, ...]) -> frozenset[Fraction]:
    """Values reachable from the sorted multiset `values` (no expressions: cheap)."""
    if len(values) == 1:
        return frozenset((Fraction(values[0]),))
    out: set[Fraction] = set()
    for a, b in _splits(values):
        for va in _reachable(a):
            for vb in _reachable(b):
                out.update(v for _, _, v in _combine(va, vb))
    return frozenset(out)


@functools.lru_cache(maxsize=None)
def _solvable(values: tuple[int, ...], target: int) -> bool:
    t = Fraction(target)
    if len(values) == 1:
        return values[0] == target
    for a, b in _splits(values):
        ra, rb = _reachable(a), _reachable(b)
        for va in ra:
            for op, _, vb in _partners(va, t):
                if vb is None:
                    if any(op == "*" or v != 0 for v in rb):
                        return True
                elif vb in rb:
                    return True
    return False


def is_solvable(values: Iterable[int], target: int = 24) -> bool:
    """Whether solve(values, target) is non-empty, without building expressions."""
    vals = tuple(sorted(int(v) for v in values))
    return bool(vals) and _solvable(vals, _check_target(target))


# --------------------------------------------------------------------------- dealing and prompts


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def deal(rng: np.random.Generator | int | None = None, face_card_rule: str = "ten", target: int = 24,
         num_cards: int = 4, max_tries: int = 10_000) -> list[str]:
    """Draw `num_cards` cards from a 52-card deck until the hand is solvable.

    Under "ranked" the hand also holds at least one face card (J, Q or K).
    `rng` is a numpy Generator (or a seed). Raises ValueError if no solvable
    hand turns up within `max_tries` draws (e.g. an unreachable target).
    """
    _check_rule(face_card_rule)
    target = _check_target(target)
    _check_num_cards(num_cards)
    gen = _as_rng(rng)
    for _ in range(max_tries):
        idx = gen.choice(52, size=num_cards, replace=False)
        cards = [CARDS[int(i) % 13] for i in idx]
        if face_card_rule == "ranked" and not any(c in FACE_CARDS for c in cards):
            continue
        if is_solvable(hand_values(cards, face_card_rule), target):
            return cards
    raise ValueError(f"no solvable {num_cards}-card hand for target {target} under rule "
                     f"{face_card_rule!r} in {max_tries} draws")


def make_prompt(cards: Sequence[str | int], face_card_rule: str = "ten", target: int = 24) -> str:
    """The observation text. Only the rule sentence differs between the two rules.

    >>> make_prompt(["K", "5", "3", "A"], "ranked")
    'Cards: K 5 3 A. J=11 Q=12 K=13. Make 24 with + - * / and ( ).\\nAnswer: '
    """
    shown = " ".join(_normalize_card(c) for c in cards)
    return (f"Cards: {shown}. {_RULE_TEXT[_check_rule(face_card_rule)]} "
            f"Make {_check_target(target)} with + - * / and ( ).\nAnswer: ")


def expert_answer(cards: Sequence[str | int], face_card_rule: str = "ten", target: int = 24) -> str:
    """The canonical correct answer, e.g. ``"8/(3-8/3)=24"``: card values, fewest
    parentheses, then lexicographically smallest. ValueError if unsolvable."""
    values = hand_values(cards, face_card_rule)
    sols = solve(values, target)
    if not sols:
        raise ValueError(f"cards {list(cards)} cannot make {target} under rule {face_card_rule!r}")
    return f"{sols[0]}={target}"


# --------------------------------------------------------------------------- parsing


class ExpressionError(ValueError):
    """An answer that is not a legal formula (syntax, size limits, division by zero)."""


class _DivisionByZero(ExpressionError):
    pass


@dataclass(frozen=True)
class _Parsed:
    tree: Any  # int | (op, left, right)
    numbers: list[int]
    claim: int | None
    expr_text: str  # the formula without whitespace and without the "=N" claim


def _tokenize(text: str) -> list[tuple[str, Any, int]]:
    toks: list[tuple[str, Any, int]] = []
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
            continue
        if "0" <= ch <= "9":
            j = i
            while j < n and "0" <= text[j] <= "9":
                j += 1
            if j - i > MAX_DIGITS:
                raise ExpressionError(f"number at position {i} has more than {MAX_DIGITS} digits")
            toks.append(("num", int(text[i:j]), i))
            i = j
            continue
        if ch == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise ExpressionError(f"parentheses nested deeper than {MAX_NESTING} at position {i}")
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ExpressionError(f"unbalanced parentheses: ')' at position {i} closes nothing")
        elif ch not in "+-*/=":
            raise ExpressionError(f"unexpected character {ascii(ch)} at position {i}")
        toks.append((ch, ch, i))
        i += 1
    if depth > 0:
        raise ExpressionError(f"unbalanced parentheses: {depth} '(' not closed")
    return toks


class _Parser:
    """Recursive descent over the tokens; depth is bounded by MAX_NESTING."""

    def __init__(self, toks: list[tuple[str, Any, int]]) -> None:
        self.toks = toks
        self.i = 0
        self.numbers: list[int] = []

    def peek(self) -> tuple[str, Any, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def expr(self) -> Any:
        node = self.term()
        while (t := self.peek()) is not None and t[0] in "+-":
            self.i += 1
            node = (t[0], node, self.term())
        return node

    def term(self) -> Any:
        node = self.factor()
        while (t := self.peek()) is not None and t[0] in "*/":
            self.i += 1
            node = (t[0], node, self.factor())
        return node

    def factor(self) -> Any:
        t = self.peek()
        if t is None:
            raise ExpressionError("formula ends where a number or '(' was expected")
        kind, val, pos = t
        self.i += 1
        if kind == "num":
            self.numbers.append(val)
            return val
        if kind == "(":
            node = self.expr()
            close = self.peek()
            if close is None or close[0] != ")":  # tokenizer guarantees balance, but be safe
                where = "end" if close is None else f"position {close[2]}"
                raise ExpressionError(f"expected ')' at {where}")
            self.i += 1
            return node
        if kind in "+-":
            raise ExpressionError(f"unary {'minus' if kind == '-' else 'plus'} at position {pos} is not allowed")
        raise ExpressionError(f"expected a number or '(' at position {pos}, got {kind!r}")

    def claim(self) -> int | None:
        t = self.peek()
        if t is None:
            return None
        if t[0] != "=":
            what = f"number {t[1]}" if t[0] == "num" else repr(t[0])
            raise ExpressionError(f"unexpected {what} at position {t[2]} (expected an operator or '=')")
        self.i += 1
        sign = 1
        t = self.peek()
        if t is not None and t[0] == "-":
            sign, self.i = -1, self.i + 1
            t = self.peek()
        if t is None or t[0] != "num":
            raise ExpressionError("expected a number after '='")
        self.i += 1
        if (extra := self.peek()) is not None:
            raise ExpressionError(f"unexpected text at position {extra[2]} after the claimed value")
        return sign * t[1]


def _parse(text: Any) -> _Parsed:
    if not isinstance(text, str):
        raise ExpressionError(f"answer is not a string (got {type(text).__name__})")
    if len(text) > MAX_ANSWER_LENGTH:
        raise ExpressionError(f"answer is {len(text)} characters long (limit {MAX_ANSWER_LENGTH})")
    toks = _tokenize(text)
    if not toks:
        raise ExpressionError("empty answer")
    parser = _Parser(toks)
    tree = parser.expr()
    claim = parser.claim()
    end = next((t[2] for t in toks if t[0] == "="), len(text))
    expr_text = "".join(ch for ch in text[:end] if ch not in _WHITESPACE)
    return _Parsed(tree, parser.numbers, claim, expr_text)


def _evaluate(tree: Any) -> Fraction:
    # Iterative post-order, so long operator chains cannot hit the recursion limit.
    stack: list[tuple[Any, bool]] = [(tree, False)]
    values: list[Fraction] = []
    while stack:
        node, done = stack.pop()
        if isinstance(node, int):
            values.append(Fraction(node))
        elif not done:
            stack += [(node, True), (node[2], False), (node[1], False)]
        else:
            b, a = values.pop(), values.pop()
            op = node[0]
            if op == "+":
                values.append(a + b)
            elif op == "-":
                values.append(a - b)
            elif op == "*":
                values.append(a * b)
            elif b == 0:
                raise _DivisionByZero("division by zero")
            else:
                values.append(a / b)
    return values[0]


def parse_expression(text: str) -> tuple[Fraction, list[int]]:
    """Exact value and the integer literals (in order) of a formula like ``"(10-4)*(5-1)=24"``.

    Raises ExpressionError for anything that is not a legal formula, including
    division by zero. The optional ``=N`` claim is checked for syntax only.
    """
    parsed = _parse(text)
    return _evaluate(parsed.tree), list(parsed.numbers)


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Verdict:
    """Outcome of checking one answer. `value` is None when there is no value."""

    correct: bool
    reward: float
    reason: str
    value: Fraction | None = None

    @property
    def kind(self) -> str:
        """One of "correct", "wrong_value", "wrong_numbers", "illegal"."""
        for kind, reward in REWARD_TABLE.items():
            if self.reward == reward:
                return kind
        return "illegal"


def _fmt(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def _describe_cards(cards: Sequence[str], values: Sequence[int]) -> str:
    return ", ".join(c if c == str(v) else f"{c}(={v})" for c, v in zip(cards, values))


def verify(cards: Sequence[str | int], answer: Any, face_card_rule: str = "ten", target: int = 24) -> Verdict:
    """Judge `answer` for `cards` under the rule. Never raises for any `answer`.

    `cards` and `face_card_rule` are trusted (bad ones raise ValueError); the
    answer is not: anything that is not a legal formula gets the "illegal"
    verdict. See the module docstring for the grammar and reward table.
    """
    _check_rule(face_card_rule)
    target = _check_target(target)
    cards = [_normalize_card(c) for c in cards]
    values = hand_values(cards, face_card_rule)
    try:
        parsed = _parse(answer)
        value = _evaluate(parsed.tree)
    except _DivisionByZero:
        return Verdict(False, REWARD_ILLEGAL, "division by zero", None)
    except ExpressionError as err:
        return Verdict(False, REWARD_ILLEGAL, f"illegal: {err}", None)
    except Exception as err:  # defensive: the verifier must never crash a training loop
        return Verdict(False, REWARD_ILLEGAL, f"illegal: could not parse ({type(err).__name__})", None)

    if sorted(parsed.numbers) != sorted(values):
        nums = sorted(parsed.numbers)
        used = ", ".join(str(v) for v in nums) if len(nums) <= 8 else f"{len(nums)} numbers ({nums[0]}..{nums[-1]})"
        return Verdict(False, REWARD_WRONG_NUMBERS,
                       f"uses {used} but the cards are {_describe_cards(cards, values)}", value)
    if value != target:
        return Verdict(False, REWARD_WRONG_VALUE, f"value is {_fmt(value)}, not {target}", value)
    note = ""
    if parsed.claim is not None and parsed.claim != target:
        note = f" (the claimed ={parsed.claim} is wrong but ignored)"
    return Verdict(True, REWARD_CORRECT, f"correct: {parsed.expr_text} = {target}{note}", value)


def verify_batch(completions: Sequence[Any], hands: Sequence[Sequence[str | int]], face_card_rule: str = "ten",
                 target: int = 24) -> list[Verdict]:
    """verify() for each (completion, hand) pair."""
    if len(completions) != len(hands):
        raise ValueError(f"{len(completions)} completions but {len(hands)} hands")
    return [verify(h, c, face_card_rule, target) for c, h in zip(completions, hands)]


def rollout_rewards(completions: Sequence[Any], infos: Sequence[dict]) -> list[float]:
    """Rewards for completions given the env `reset` infos (cards, face_card_rule, target)."""
    if len(completions) != len(infos):
        raise ValueError(f"{len(completions)} completions but {len(infos)} infos")
    return [verify(i["cards"], c, i.get("face_card_rule", "ten"), i.get("target", 24)).reward
            for c, i in zip(completions, infos)]


# --------------------------------------------------------------------------- datasets and evaluation

# expert_dataset and evaluate draw from different streams of the same seed, so
# seed=0 for both does not evaluate on exactly the SFT hands in the same order.
_SFT_STREAM, _EVAL_STREAM = 0, 1


def expert_hands(n: int, face_card_rule: str = "ten", seed: int = 0, target: int = 24,
                 num_cards: int = 4) -> list[list[str]]:
    """The `n` hands that expert_dataset(seed=seed) answers, for building other answers to the same deals."""
    rng = np.random.default_rng([seed, _SFT_STREAM])
    return [deal(rng, face_card_rule, target, num_cards) for _ in range(n)]


def expert_dataset(n: int, face_card_rule: str = "ten", seed: int = 0, target: int = 24,
                   num_cards: int = 4) -> list[tuple[str, str]]:
    """`n` (prompt, expert answer) pairs for SFT, deterministic in `seed`."""
    return [(make_prompt(cards, face_card_rule, target), expert_answer(cards, face_card_rule, target))
            for cards in expert_hands(n, face_card_rule, seed, target, num_cards)]


def eval_hands(n: int, face_card_rule: str = "ten", seed: int = 0, target: int = 24,
               num_cards: int = 4) -> list[list[str]]:
    """The `n` hands that evaluate(seed=seed) plays."""
    rng = np.random.default_rng([seed, _EVAL_STREAM])
    return [deal(rng, face_card_rule, target, num_cards) for _ in range(n)]


def evaluate(model: Any, tokenizer: Any, face_card_rule: str = "ten", n_episodes: int = 500, seed: int = 0,
             batch_size: int = 256, max_new_tokens: int = 24, greedy: bool = True, temperature: float = 1.0,
             top_k: int | None = None, target: int = 24, n_samples: int = 8) -> dict:
    """Play `n_episodes` deterministic deals with `model.generate` and verify the answers.

    Returns {"accuracy", "mean_reward", "n", "counts": {kind: count}, "correct":
    [one bool per deal, in order], "samples": [(prompt, completion, reason), ...first
    n_samples]}. The first n deals of a larger `n_episodes` are the same deals. The
    model is put in eval mode during generation and restored afterwards.
    """
    from toyenv.model import complete  # here, not at the top: the game and its verifier need no torch

    _check_rule(face_card_rule)
    if n_episodes <= 0:
        raise ValueError(f"n_episodes must be positive, got {n_episodes}")
    hands = eval_hands(n_episodes, face_card_rule, seed, target)
    prompts = [make_prompt(h, face_card_rule, target) for h in hands]

    completions = complete(model, tokenizer, prompts, max_new_tokens, batch_size=batch_size, temperature=temperature,
                           top_k=top_k, greedy=greedy, eos_id=EOS_ID, pad_id=PAD_ID,
                           generator=sampling_generator(model, greedy, seed))

    verdicts = verify_batch(completions, hands, face_card_rule, target)
    counts = {k: 0 for k in VERDICT_KINDS}
    for v in verdicts:
        counts[v.kind] += 1
    return {
        "accuracy": counts["correct"] / n_episodes,
        "mean_reward": float(sum(v.reward for v in verdicts) / n_episodes),
        "n": n_episodes,
        "counts": counts,
        "correct": [v.kind == "correct" for v in verdicts],
        "samples": [(p, c, v.reason) for p, c, v in zip(prompts, completions, verdicts)][:n_samples],
    }


# --------------------------------------------------------------------------- environment


class GeneralPointsEnv(gym.Env):
    """One-step 24-points episodes with text observations and text actions.

    ``reset()`` deals a solvable hand and returns its prompt; ``step(answer)``
    verifies the answer string, returns the reward from REWARD_TABLE and ends
    the episode (terminated=True). info carries the cards and the verdict.
    An answer longer than ``max_answer_chars`` (the action space's length) is
    refused unread: "illegal", reward -3. Further steps before the next
    ``reset()`` pay 0 and say "episode is over; call reset()".
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, face_card_rule: str = "ten", target: int = 24, num_cards: int = 4,
                 max_answer_chars: int = 64, render_mode: str | None = None) -> None:
        super().__init__()
        self.face_card_rule = _check_rule(face_card_rule)
        self.target = _check_target(target)
        self.num_cards = _check_num_cards(num_cards, "GeneralPointsEnv.num_cards")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        # verify() refuses anything over MAX_ANSWER_LENGTH, so a larger limit could never be honoured.
        if isinstance(max_answer_chars, bool) or not isinstance(max_answer_chars, (int, np.integer)) or \
                not 1 <= max_answer_chars <= MAX_ANSWER_LENGTH:
            raise ValueError(f"GeneralPointsEnv.max_answer_chars must be an integer in 1..{MAX_ANSWER_LENGTH}, "
                             f"got {max_answer_chars!r}")
        self.max_answer_chars = int(max_answer_chars)
        self.render_mode = render_mode
        longest_prompt = len(make_prompt(["10"] * num_cards, face_card_rule, self.target))
        self.observation_space = spaces.Text(max_length=longest_prompt, charset=CHARACTERS)
        self.action_space = spaces.Text(max_length=self.max_answer_chars, min_length=0, charset=CHARACTERS)
        self.cards: list[str] | None = None
        self.values: list[int] | None = None
        self.prompt: str | None = None
        self.last_answer: str | None = None
        self.last_verdict: Verdict | None = None
        self._done = False

    def _info(self) -> dict:
        return {"cards": list(self.cards), "values": list(self.values),
                "face_card_rule": self.face_card_rule, "target": self.target}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.cards = deal(self.np_random, self.face_card_rule, self.target, self.num_cards)
        self.values = hand_values(self.cards, self.face_card_rule)
        self.prompt = make_prompt(self.cards, self.face_card_rule, self.target)
        self.last_answer, self.last_verdict = None, None
        self._done = False
        return self.prompt, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.cards is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            # Gymnasium: after terminated=True the caller must reset(); further steps are undefined. Like its
            # reference environments (CartPole) and NavigationEnv we pay 0 and repeat terminated=True instead of
            # raising, so a loop that overruns the one-step episode earns nothing (it used to re-score the
            # answer and collect +5 on every call).
            info = self._info() | {"verdict": None, "correct": False, "reason": "episode is over; call reset()",
                                   "kind": None}
            return self.prompt, 0.0, True, False, info
        if isinstance(action, str) and len(action) > self.max_answer_chars:
            # Outside the action space (Text(max_length=max_answer_chars)): refused unread, like verify()'s
            # own MAX_ANSWER_LENGTH. RL rewards go through verify()/rollout_rewards, which this does not touch.
            verdict = Verdict(False, REWARD_ILLEGAL, f"illegal: answer is {len(action)} characters long "
                                                     f"(limit max_answer_chars={self.max_answer_chars})", None)
        else:
            verdict = verify(self.cards, action, self.face_card_rule, self.target)
        self._done = True
        self.last_answer, self.last_verdict = action, verdict
        info = self._info() | {"verdict": verdict, "correct": verdict.correct, "reason": verdict.reason,
                               "kind": verdict.kind}
        return self.prompt, verdict.reward, True, False, info

    def expert_answer(self) -> str:
        """The canonical correct answer for the current hand."""
        if self.cards is None:
            raise RuntimeError("call reset() before expert_answer()")
        return expert_answer(self.cards, self.face_card_rule, self.target)

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self.prompt is None:
            return ""
        text = self.prompt + (self.last_answer if isinstance(self.last_answer, str) else "")
        if self.last_verdict is not None:
            text += f"\n-> {self.last_verdict.reason} (reward {self.last_verdict.reward:+g})"
        return text
