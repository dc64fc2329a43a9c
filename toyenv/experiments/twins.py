"""A live run against its shipped twin: the one comparison every notebook and test uses.

Each notebook trains one run live and reads the rest of its sweep from a study in `toyenv/data/`, written by the
same code. On the machine that built the study (same CPU model, threads and torch build: `same_machine`) the two are
bit-identical. On another CPU the floats round differently in their last bits, and training carries that on, so
the honest promise is "the same within a stated tolerance", with the largest difference reported:

    >>> c = compare({"gold": 0.7617, "kl": [0.1, 1.68]}, {"gold": 0.7617, "kl": [0.1, 1.6838]}, rtol=0.01)
    >>> c.verdict, c.ok
    ('the same to 2 significant digits', True)

`compare` walks nested dicts, lists and tuples. Numbers are compared with |a − b| ≤ atol + rtol·|b| (b the shipped
value; NaN equals NaN); anything else (strings, keys, lengths, None) must be equal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .common import same_machine

__all__ = ["Comparison", "compare", "same_machine"]


@dataclass
class Comparison:
    name: str
    rtol: float
    atol: float
    numbers: int = 0                 # how many numbers were compared
    max_abs: float = 0.0             # the largest |live − shipped|
    max_rel: float = 0.0             # the largest |live − shipped| / max(|live|, |shipped|), over numbers above atol
    worst: str = ""                  # where the largest relative difference is
    outside: list[str] = field(default_factory=list)     # numbers outside the tolerance
    mismatched: list[str] = field(default_factory=list)  # structure or non-numeric values that differ

    @property
    def identical(self) -> bool:
        return self.max_abs == 0.0 and not self.mismatched

    @property
    def ok(self) -> bool:
        """Within the tolerance: every number close, everything else equal."""
        return not self.outside and not self.mismatched

    @property
    def digits(self) -> int | None:
        """Significant digits the two agree to (None when identical): floor(−log10 of the largest relative
        difference)."""
        if self.identical:
            return None
        if self.max_rel == 0.0:  # only differences below atol
            return max(0, math.floor(-math.log10(self.atol))) if self.atol > 0 else None
        return max(0, math.floor(-math.log10(self.max_rel)))

    @property
    def verdict(self) -> str:
        if self.identical:
            return "identical"
        if not self.ok:
            return "different"
        return f"the same to {self.digits} significant digits"

    def __str__(self) -> str:
        """One line for a notebook: the verdict, the largest difference and the tolerance it was held to."""
        if self.identical:
            return f"{self.name}: identical ({self.numbers} numbers, every one equal as recorded)"
        detail = f"largest difference {self.max_abs:.2g}" + (f" at {self.worst}" if self.worst else "")
        line = f"{self.name}: {self.verdict} ({self.numbers} numbers, {detail}; tolerance rtol {self.rtol:g}, " \
               f"atol {self.atol:g})"
        problems = self.mismatched + self.outside
        if problems:
            line += "\n  differs at: " + ", ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
        return line

    def check_line(self) -> str:
        """A verdict that reads the same on every CPU (for `# NBVAL_CHECK_OUTPUT` cells): only whether the pair is
        within the tolerance, never the digits."""
        return f"{self.name}: live run matches its shipped twin within rtol {self.rtol:g}: {'yes' if self.ok else 'NO'}"


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare(live, shipped, name: str = "live vs shipped", rtol: float = 1e-3, atol: float = 1e-4,
            ignore: tuple[str, ...] = ("seconds",)) -> Comparison:
    """Compare a live record with its shipped twin, number by number; dict keys in `ignore` (wall times) are
    skipped. Tuples and lists compare alike, since a JSON round trip turns one into the other."""
    if rtol < 0 or atol < 0:
        raise ValueError(f"compare: rtol and atol must be >= 0, got rtol={rtol}, atol={atol}")
    c = Comparison(name, rtol, atol)

    def walk(a, b, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            keys_a, keys_b = set(a) - set(ignore), set(b) - set(ignore)
            for k in sorted(keys_a ^ keys_b, key=str):
                c.mismatched.append(f"{where}[{k!r}] ({'only live' if k in keys_a else 'only shipped'})")
            for k in sorted(keys_a & keys_b, key=str):
                walk(a[k], b[k], f"{where}[{k!r}]")
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                c.mismatched.append(f"{where} (length {len(a)} vs {len(b)})")
                return
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}[{i}]")
        elif _is_number(a) and _is_number(b):
            c.numbers += 1
            a, b = float(a), float(b)
            if (math.isnan(a) and math.isnan(b)) or a == b:  # a == b also holds two equal infinities
                return
            diff = abs(a - b)
            if math.isnan(diff) or math.isinf(diff):  # a NaN against a number, or an infinity against anything else
                c.outside.append(where)
                c.max_abs = math.inf
                return
            c.max_abs = max(c.max_abs, diff)
            scale = max(abs(a), abs(b))
            if diff > 0 and scale > atol and diff / scale > c.max_rel:
                c.max_rel, c.worst = diff / scale, where
            if diff > atol + rtol * abs(b):
                c.outside.append(where)
        elif a != b:
            c.mismatched.append(f"{where} ({a!r} vs {b!r})")

    walk(live, shipped, "")
    return c
