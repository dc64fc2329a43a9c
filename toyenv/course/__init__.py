"""Course tooling: learner-notebook generation, exercise checkers and grading.

In a notebook, a check cell calls ``check("name", learner_function)``, which
shows a one-line verdict in words (a FAIL or TODO is raised, as ``CheckFailed``). From a shell::

    python -m toyenv.course workspace        # copy notebooks/ into the learner's work/, never overwriting
    python -m toyenv.course fresh NAME       # a fresh copy of one notebook in work/ (the old one is backed up)
    python -m toyenv.course build            # solutions/ -> notebooks/ (solution regions become stubs)
    python -m toyenv.course check            # fail if notebooks/ is stale
    python -m toyenv.course grade NB.ipynb   # run a learner's notebook, print one row per exercise
    python -m toyenv.course nbgrader         # an nbgrader course folder (config, source/) from solutions/
    python -m toyenv.course refresh          # re-run solutions/, store the outputs nbval compares
"""
import importlib
import pkgutil

from .checks import CHECKS, CheckFailed, Verdict, check, run_check

# Every checks_NN.py registers its notebook's checkers when imported; import them all, in name order, so that a new
# notebook's checker file needs no list to be added to.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("checks_")):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["check", "run_check", "CHECKS", "CheckFailed", "Verdict"]
