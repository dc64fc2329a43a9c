"""Config field checks shared by every config: each field in its range, refused with a sentence.

Every config's `__post_init__` calls the field checks, so a bad setting is refused when the config is built,
with one sentence naming the field, the value and what is allowed:

    RLConfig.max_grad_norm must be a finite number > 0, got -1.0

rather than failing many steps later with a message about something else (a negative clip norm trains
*backwards*; a negative min_lr_ratio makes the learning rate negative; a NaN beta turns the loss into NaN, which
would then be blamed on the learning rate).

The divergence guard of the training loops, `ensure_finite`, lives with the other training plumbing in
`toyenv/trainers/common.py`.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

__all__ = ["check_int", "check_number", "check_choice", "check_bool"]


def _names(names: str | Iterable[str]) -> tuple[str, ...]:
    return (names,) if isinstance(names, str) else tuple(names)


def _is_bool(value: Any) -> bool:
    # numpy's bool is not a subclass of bool; look it up by name so numpy stays an optional import here
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def check_int(cfg: Any, names: str | Iterable[str], minimum: int | None = None) -> None:
    """Each field in `names` must be an integer (not a bool, not 1.5, not 2.0) and >= `minimum` if given."""
    for name in _names(names):
        value = getattr(cfg, name)
        ok = isinstance(value, numbers.Integral) and not _is_bool(value)
        if not ok or (minimum is not None and value < minimum):
            allowed = f"an integer >= {minimum}" if minimum is not None else "an integer"
            raise ValueError(f"{type(cfg).__name__}.{name} must be {allowed}, got {value!r}")


def check_number(cfg: Any, names: str | Iterable[str], *, above: float | None = None,
                 at_least: float | None = None, at_most: float | None = None) -> None:
    """Each field in `names` must be a finite real number (an int is fine, a bool is not) within the bounds:
    `above` is an open lower bound (> above), `at_least` a closed one (>= at_least), `at_most` a closed upper one."""
    if above is not None and at_least is not None:
        raise TypeError("give at most one lower bound: above= (open) or at_least= (closed)")
    if at_least is not None and at_most is not None:
        allowed = f" in [{at_least:g}, {at_most:g}]"
    elif above is not None and at_most is not None:
        allowed = f" in ({above:g}, {at_most:g}]"
    elif above is not None:
        allowed = f" > {above:g}"
    elif at_least is not None:
        allowed = f" >= {at_least:g}"
    elif at_most is not None:
        allowed = f" <= {at_most:g}"
    else:
        allowed = ""
    for name in _names(names):
        value = getattr(cfg, name)
        ok = isinstance(value, numbers.Real) and not _is_bool(value) and math.isfinite(value)
        ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
        ok = ok and (at_most is None or value <= at_most)
        if not ok:
            raise ValueError(f"{type(cfg).__name__}.{name} must be a finite number{allowed}, got {value!r}")


def check_choice(cfg: Any, name: str, choices: Iterable[Any]) -> None:
    """The field must be one of `choices`."""
    choices = tuple(choices)
    value = getattr(cfg, name)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{type(cfg).__name__}.{name} must be one of {choices}, got {value!r}")


def check_bool(cfg: Any, names: str | Iterable[str]) -> None:
    """Each field must be True or False (a string such as "no" would be truthy and silently mean yes)."""
    for name in _names(names):
        value = getattr(cfg, name)
        if not _is_bool(value):
            raise ValueError(f"{type(cfg).__name__}.{name} must be True or False, got {value!r}")
