"""Course tooling: learner-notebook generation, exercise checkers and grading.

In a notebook, a check cell calls ``check("name", learner_function)``, which
prints a one-line verdict in words. From a shell::

    python -m toyenv.course workspace        # copy notebooks/ into the learner's work/, never overwriting
    python -m toyenv.course fresh NAME       # a fresh copy of one notebook in work/ (the old one is backed up)
    python -m toyenv.course build            # solutions/ -> notebooks/ (solution regions become stubs)
    python -m toyenv.course check            # fail if notebooks/ is stale
    python -m toyenv.course grade NB.ipynb   # run a learner's notebook, print one row per exercise
    python -m toyenv.course refresh          # re-run solutions/, store the outputs nbval compares
"""
from . import checks_01, checks_02, checks_03, checks_04, checks_05, checks_06, checks_07, checks_08, checks_09, checks_a1  # noqa: F401  (each registers its notebook's checkers)
from .checks import CHECKS, Verdict, check, run_check

__all__ = ["check", "run_check", "CHECKS", "Verdict"]
