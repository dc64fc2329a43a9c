"""Exercise checkers: each compares a learner's function with toyenv's reference.

A checker returns a `Verdict`; `check(name, fn)` runs it and shows one line (`run_check` returns it), printed for a
PASS and raised as `CheckFailed` for a FAIL or TODO:

    PASS token_logprobs: matches the reference on 3 random batches.
    FAIL token_logprobs: expected shape (4, 9), got (4, 10): drop the last position's logits ...
    TODO token_logprobs: not attempted yet (the function still raises NotImplementedError).

`python -m toyenv.course grade` reads these lines back, so keep the format.
Each notebook's checkers live in `checks_NN.py` (`checks_00.py` for the tour, `checks_a1.py` for the appendix),
registered with `@register("name")`; `toyenv.course` imports every `checks_*.py` it finds, so a new notebook's
file needs no import list.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Verdict:
    status: str  # PASS, FAIL or TODO
    message: str

    def line(self, name: str) -> str:
        return f"{self.status} {name}: {self.message}"


# The verdict for a function that still raises NotImplementedError, the learner notebooks' stub.
UNATTEMPTED = Verdict("TODO", "not attempted yet (the function still raises NotImplementedError).")
CHECKS: dict[str, Callable[[Callable], Verdict]] = {}


def register(name: str):
    def deco(fn: Callable[[Callable], Verdict]):
        CHECKS[name] = fn
        return fn

    return deco


def run_check(name: str, fn: Callable) -> Verdict:
    """Run the checker `name` on the learner's `fn` and return its verdict (prints nothing)."""
    if name not in CHECKS:
        raise KeyError(f"no checker named {name!r}; known: {sorted(CHECKS)}")
    try:
        return CHECKS[name](fn)
    except NotImplementedError:
        return UNATTEMPTED
    except Exception as e:  # the learner's code crashed: say where, in one line
        frame = traceback.extract_tb(e.__traceback__)[-1]
        return Verdict("FAIL", f"your function raised {type(e).__name__}: {e} (line {frame.lineno}: {frame.line!r}).")


class CheckFailed(AssertionError):
    """A check cell's FAIL or TODO verdict, raised so that the cell counts as failed wherever cells are graded by
    whether they raise (nbgrader's autograded test cells). Jupyter shows only the verdict line, not a traceback, and
    the learner notebooks tag check cells `raises-exception`, so "Run All" goes on past a failing check."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line

    def _render_traceback_(self) -> list[str]:  # IPython displays these lines instead of a traceback
        return [self.line]


def check(name: str, fn: Callable) -> None:
    """The verdict of checker `name` on the learner's `fn` (the notebooks' check cells): a PASS line is printed; a
    FAIL or TODO verdict is raised as `CheckFailed`, whose message is the verdict line.

    Returns None so that a check cell shows only the verdict line; use `run_check` for the Verdict object.
    """
    verdict = run_check(name, fn)
    if verdict.status != "PASS":
        raise CheckFailed(verdict.line(name))
    print(verdict.line(name))


def fail(msg: str) -> Verdict:
    return Verdict("FAIL", msg)


def answer_dict(answers, required, example: str, noun: str = ""):
    """For multiple-choice checkers: `(answers as a dict, None)`, or `(None, a FAIL verdict)` when the learner's
    answer (a dict, or a function returning one) is not a dict or lacks some of the `required` keys."""
    if callable(answers):
        answers = answers()
    if not isinstance(answers, dict):
        return None, fail(f"expected a dict like {example}, got {type(answers).__name__}.")
    missing = sorted(set(required) - set(answers))
    if missing:
        return None, fail(f"no answer yet for {noun}{', '.join(missing)}.")
    return answers, None


def as_tensor(out, what: str):
    if not isinstance(out, torch.Tensor):
        return None, fail(f"{what} should return a torch.Tensor, got {type(out).__name__}.")
    return out, None
