"""`python -m toyenv.course grade`: the course's check cells decide, whatever the submission prints or deletes.

A tiny course notebook with three exercises (token_logprobs, card_value, reverse_kl, whose checkers are fast) stands
in for solutions/; submissions are built from its learner version, as a learner would edit it.
"""
import csv

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from toyenv.course import __main__ as cli
from toyenv.course import grading
from toyenv.course import notebooks as nbs

SETUP = "import torch\nfrom toyenv.course import check"
SOLVED = {
    "logprobs": "def logprobs(logits, tokens):\n    ### BEGIN SOLUTION\n"
                "    return torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)\n"
                "    ### END SOLUTION",
    "value": "def value(card, rule):\n    ### BEGIN SOLUTION\n"
             "    from toyenv.envs.general_points import card_value\n    return card_value(card, rule)\n"
             "    ### END SOLUTION",
    "reverse": "def reverse(policy_logits, ref_logits):\n    ### BEGIN SOLUTION\n"
               "    from toyenv.kl import exact_categorical\n    return exact_categorical(policy_logits, ref_logits)\n"
               "    ### END SOLUTION",
}
CHECKS = {"logprobs": 'check("token_logprobs", logprobs)', "value": 'check("card_value", value)',
          "reverse": 'check("reverse_kl", reverse)'}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """solutions/demo.ipynb: setup, then each exercise followed by its check cell."""
    root = tmp_path_factory.mktemp("course")
    cells = [new_markdown_cell("# demo"), new_code_cell(SETUP)]
    for key in SOLVED:
        cells += [new_code_cell(SOLVED[key]), new_code_cell(CHECKS[key])]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:02d}"
    (root / "solutions").mkdir()
    nbformat.write(nb, root / "solutions" / "demo.ipynb")
    return root


def _source(course):
    return nbformat.read(course / "solutions" / "demo.ipynb", as_version=4)


def _learner(course):
    return nbs.learner_notebook(_source(course), "demo.ipynb")


def _write(nb, folder, name="demo.ipynb"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(nb, path)
    return path


def _grade(course, nb, tmp_path, timeout=120, name="demo.ipynb"):
    return grading.grade(_write(nb, tmp_path, name), timeout, solutions=course / "solutions")


def _statuses(report):
    return {r.exercise: r.status for r in report.rows}


def test_faked_passes_do_not_count(course, tmp_path):
    """Three ways to fake a pass on an untouched notebook: print a verdict line (with a check( call in a comment, as
    the old grader read it), redefine check, patch the checker registry. None of them moves a TODO."""
    nb = _learner(course)
    nb.cells.insert(3, new_code_cell('print("PASS token_logprobs: ok")  # check("token_logprobs", logprobs)'))
    nb.cells.insert(2, new_code_cell(
        "import toyenv.course.checks as _c\n"
        "_c.CHECKS['card_value'] = lambda fn: _c.Verdict('PASS', 'ok')\n"
        "_c.run_check = lambda name, fn: _c.Verdict('PASS', 'ok')\n"
        "def check(name, fn):\n    print(f'PASS {name}: ok')"))
    report = _grade(course, nb, tmp_path, name="my copy.ipynb")  # renamed: the metadata names the course notebook
    assert report.source == "demo.ipynb"
    assert _statuses(report) == {"token_logprobs": "TODO", "card_value": "TODO", "reverse_kl": "TODO"}
    assert report.stopped is None and not report.all_pass


def test_deleted_check_cells_are_restored_and_renamed_exercises_are_missing(course, tmp_path):
    nb = _source(course)  # fully solved ...
    nb.cells = [c for c in nb.cells if c.id != "c03"]  # ... with token_logprobs's check cell deleted,
    rename = next(c for c in nb.cells if c.id == "c04")
    rename.source = rename.source.replace("def value(", "def my_value(")  # card_value's function renamed,
    check_cell = next(c for c in nb.cells if c.id == "c07")
    check_cell.source = 'print("PASS reverse_kl: trust me")'  # and reverse_kl's check cell rewritten
    report = _grade(course, nb, tmp_path)
    assert _statuses(report) == {"token_logprobs": "PASS", "card_value": "MISSING", "reverse_kl": "PASS"}
    assert "value" in report.rows[1].message and "not defined" in report.rows[1].message
    table = grading.format_table(report)
    assert "missing" in table and "2/3 exercises pass" in table


def test_an_endless_loop_stops_at_the_time_limit_and_keeps_the_verdicts_before_it(course, tmp_path):
    nb = _source(course)
    # after token_logprobs's check, before card_value's; it sleeps rather than spins, so that it does not take a core
    # from the test process beside it for 25 s (the time limit is wall-clock time either way)
    nb.cells.insert(5, new_code_cell("import time\nwhile True:\n    time.sleep(0.05)"))
    report = _grade(course, nb, tmp_path, timeout=25)
    assert _statuses(report) == {"token_logprobs": "PASS", "card_value": "NOT RUN", "reverse_kl": "NOT RUN"}
    assert "time limit of 25 s" in report.stopped and "time limit" in report.rows[2].message
    assert "stopped early" in grading.format_table(report)


def test_a_dying_kernel_keeps_the_verdicts_before_it(course, tmp_path):
    nb = _source(course)
    nb.cells.insert(7, new_code_cell("import os\nos._exit(3)"))  # after card_value's check
    report = _grade(course, nb, tmp_path)
    assert _statuses(report) == {"token_logprobs": "PASS", "card_value": "PASS", "reverse_kl": "NOT RUN"}
    assert "kernel died" in report.stopped


def test_malformed_json_is_reported_not_raised(course, tmp_path):
    path = tmp_path / "demo.ipynb"
    path.write_text('{"cells": [', encoding="utf-8")
    report = grading.grade(path, 60, solutions=course / "solutions")
    assert _statuses(report) == {"token_logprobs": "NOT RUN", "card_value": "NOT RUN", "reverse_kl": "NOT RUN"}
    assert "not a readable notebook" in report.stopped
    with pytest.raises(grading.GradeError, match="not one of the course's notebooks"):
        grading.grade(_write(_source(course), tmp_path, "other.ipynb"), 60, solutions=course / "solutions")


def test_gradebook_and_exit_codes(course, tmp_path, monkeypatch, capfd):
    subs = tmp_path / "submitted"
    _write(_source(course), subs / "ada")        # solved
    _write(_learner(course), subs / "bob")       # untouched
    tree = nbs.Tree(solutions=course / "solutions", notebooks=tmp_path / "nb", work=tmp_path / "work")
    monkeypatch.setattr(cli.nbs, "Tree", lambda: tree)
    book = tmp_path / "grades.csv"
    assert cli.main(["grade", str(subs), "--csv", str(book), "--timeout", "120"]) == 1  # bob does not pass
    rows = list(csv.DictReader(book.open()))
    assert [(r["student"], r["token_logprobs"], r["card_value"], r["reverse_kl"], r["passed"], r["total"])
            for r in rows] == [("ada", "pass", "pass", "pass", "3", "3"),
                               ("bob", "not attempted", "not attempted", "not attempted", "0", "3")]
    feedback = (tmp_path / "grades_feedback" / "bob" / "demo.txt").read_text()
    assert "token_logprobs: not attempted. not attempted yet" in feedback and "0/3 exercises pass" in feedback
    assert cli.main(["grade", str(subs / "ada" / "demo.ipynb"), "--timeout", "120"]) == 0
    captured = capfd.readouterr()
    assert "3/3 exercises pass" in captured.out
    assert "encryption" not in captured.out + captured.err  # the kernel's ZeroMQ warning is not passed on
    assert cli.main(["grade", str(subs), "--timeout", "120"]) == 2  # a folder needs --csv
    assert cli.main(["grade", str(subs / "ada" / "demo.ipynb"), "--timeout", "0"]) == 2
