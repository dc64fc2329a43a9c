"""What a test run needs so that mutmut's test selection sees every test that depends on a mutated function.

For each mutant, mutmut reruns only the tests that called the mutated function while it collected its stats. A result
computed once and then reused (a module-scoped fixture, a solver's `lru_cache`) is computed inside one test alone: the
tests after it that read the result were never recorded as callers, so a mutant there ran without them and could
"survive" a test that would have caught it. Under mutmut (which sets MUTANT_UNDER_TEST), such results are computed
afresh in every test; a normal test run keeps them shared, as it is faster.
"""
import os


def under_mutmut() -> bool:
    """Whether mutmut runs this test. Its trampolines also add a frame to every call of a mutated function, so a
    warning's stacklevel lands one frame off there: tests that check where a warning points do so only without it."""
    return "MUTANT_UNDER_TEST" in os.environ


def module_scope_unless_mutmut(fixture_name: str, config: object) -> str:
    """A fixture scope (pytest calls it at collection): "module" normally, "function" under mutmut."""
    return "function" if under_mutmut() else "module"
