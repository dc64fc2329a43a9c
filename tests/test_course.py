"""The course tooling: stub generation, the notebooks/ sync check, checkers and grading."""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from toyenv.course import CHECKS, CheckFailed, check, run_check
from toyenv.course import notebooks as nbs

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_in_sync_with_solutions():
    """`python -m toyenv.course check` passes on the repository as committed."""
    res = subprocess.run([sys.executable, "-m", "toyenv.course", "check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert nbs.Tree().sources(), "solutions/ holds no notebooks"


def test_stub_keeps_indentation_and_tags_cell():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\ny = 1"
    out, found = nbs.stub_source(src)
    assert found and out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\ny = 1"
    nb = new_notebook(cells=[new_code_cell(src), new_markdown_cell("a\n### BEGIN SOLUTION\nsecret\n### END SOLUTION"),
                             new_code_cell("print(1)")])
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[2].execution_count = 3
    learner = nbs.learner_notebook(nb)
    assert "raises-exception" in learner.cells[0].metadata["tags"]
    assert learner.cells[1].source == "a\nYOUR ANSWER HERE" and "secret" not in nbs.to_text(learner)
    assert learner.cells[2].outputs == [] and learner.cells[2].execution_count is None
    assert "tags" not in learner.cells[2].metadata


@pytest.mark.parametrize("src, msg", [
    ("### BEGIN SOLUTION\nx", "never closed"),
    ("x\n### END SOLUTION", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
])
def test_bad_markers(src, msg):
    with pytest.raises(nbs.MarkerError, match=msg):
        nbs.stub_source(src)


def test_no_solution_leaks_into_learner_notebooks():
    for path in nbs.Tree().notebooks.glob("*.ipynb"):
        assert "### BEGIN SOLUTION" not in path.read_text()
        nb = nbformat.read(path, as_version=4)
        assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")


def test_check_detects_drift_extra_and_missing(tmp_path):
    sol, lrn = tmp_path / "solutions", tmp_path / "notebooks"
    sol.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")]),
                   sol / "a.ipynb")
    tree = nbs.Tree(sol, lrn, tmp_path / "work")
    assert nbs.check(tree) == ["notebooks/a.ipynb is missing", "notebooks/.generated.json does not record what "
                               "solutions/ generates"]
    assert nbs.build(tree) == ["wrote notebooks/a.ipynb", "wrote notebooks/.generated.json"]
    assert nbs.check(tree) == [] and nbs.build(tree) == []
    # a changed solution: the generated copy is merely old, and build replaces it without a backup
    nbformat.write(new_notebook(cells=[new_code_cell("x = 2")]), sol / "a.ipynb")
    assert nbs.check(tree) == ["notebooks/a.ipynb is older than solutions/a.ipynb",
                               "notebooks/.generated.json does not record what solutions/ generates"]
    assert nbs.build(tree) == ["wrote notebooks/a.ipynb", "wrote notebooks/.generated.json"]
    # an extra notebook that build never wrote counts as someone's work: refused, then backed up under --force
    (lrn / "b.ipynb").write_text("{}")
    assert nbs.check(tree) == ["notebooks/b.ipynb has no source solutions/b.ipynb"]
    with pytest.raises(nbs.EditedError, match="notebooks/b.ipynb"):
        nbs.build(tree)
    changed = nbs.build(tree, force=True)
    assert changed[1:] == ["removed notebooks/b.ipynb (no solutions/b.ipynb)"]
    assert nbs.check(tree) == [] and not (lrn / "b.ipynb").exists()
    assert [p.read_text() for p in (tmp_path / "work" / "backups").iterdir()] == ["{}"]


# ----------------------------------------------------------------- checkers
def _ref(logits, tokens):
    return torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)


@pytest.mark.parametrize("fn, status, words", [
    (_ref, "PASS", "matches"),
    (lambda l, t: torch.log_softmax(l[:, 1:], -1).gather(-1, t[:, 1:, None]).squeeze(-1), "FAIL", "off by one"),
    (lambda l, t: torch.log_softmax(l, -1).gather(-1, t[:, :, None]).squeeze(-1), "FAIL", "drop the last position"),
    (lambda l, t: l[:, :-1].gather(-1, t[:, 1:, None]).squeeze(-1), "FAIL", "raw logits"),
    (lambda l, t: torch.softmax(l[:, :-1], -1).gather(-1, t[:, 1:, None]).squeeze(-1), "FAIL", "probabilities"),
    (lambda l, t: -_ref(l, t), "FAIL", "sign flipped"),
    (lambda l, t: torch.log_softmax(l[:, :-1], -1).gather(-1, t[:, 1:, None]), "FAIL", "squeeze"),
    (lambda l, t: [1, 2], "FAIL", "torch.Tensor"),
    (lambda l, t: 1 / 0, "FAIL", "ZeroDivisionError"),
])
def test_token_logprobs_checker_says_what_is_wrong(fn, status, words, capsys):
    verdict = run_check("token_logprobs", fn)
    assert verdict.status == status and words in verdict.message
    if status == "PASS":  # printed
        assert check("token_logprobs", fn) is None
        assert capsys.readouterr().out == verdict.line("token_logprobs") + "\n"
    else:  # raised, so that a graded cell fails, and shown as the verdict line alone
        with pytest.raises(CheckFailed) as raised:
            check("token_logprobs", fn)
        assert capsys.readouterr().out == ""
        assert str(raised.value) == verdict.line("token_logprobs")
        assert raised.value._render_traceback_() == [verdict.line("token_logprobs")]


def test_unattempted_exercise_is_todo(capsys):
    def stub(logits, tokens):
        raise NotImplementedError()
    assert run_check("token_logprobs", stub).status == "TODO"
    with pytest.raises(CheckFailed, match="^TODO token_logprobs: not attempted"):
        check("token_logprobs", stub)
    with pytest.raises(KeyError, match="no checker named"):
        check("nope", stub)


def test_every_check_call_in_solutions_names_a_registered_checker():
    for path in nbs.Tree().sources():
        for cell in nbformat.read(path, as_version=4).cells:
            for name in nbs.CHECK_CALL.findall(cell.source):
                assert name in CHECKS, f"{path.name} calls unknown checker {name!r}"


@pytest.mark.parametrize("fn, words", [
    (lambda c, r: 1 if c == "A" else 10 if c in "JQK" else int(c), "Under 'ranked' J=11"),
    (lambda c, r: 0 if c == "A" else 10 if c in "JQK" else int(c), "ace counts as 1"),
    (lambda c, r: {"A": 1, "J": 11, "Q": 12, "K": 13}[c] if c in "AJQK" else int(c), "Under 'ten' every face card"),
    (lambda c, r: str(c), "returned 'A'"),
])
def test_card_value_checker_says_what_is_wrong(fn, words):
    verdict = run_check("card_value", fn)
    assert verdict.status == "FAIL" and words in verdict.message, verdict.message


def test_card_value_checker_passes_the_reference():
    from toyenv.envs.general_points import card_value
    assert run_check("card_value", card_value).status == "PASS"


def _solution_notebook():
    """A solution notebook with one of each kind of cell CI treats differently (outputs as `refresh` stores them)."""
    nb = new_notebook(cells=[
        new_code_cell("import torch\nx = 1"),
        new_markdown_cell("Write k3."),
        new_code_cell("def k3(logp, logq):\n    ### BEGIN SOLUTION\n    r = torch.exp(logq - logp)\n"
                      "    return (r - 1) - torch.log(r)\n    ### END SOLUTION"),
        new_code_cell('# NBVAL_CHECK_OUTPUT\ncheck("k3", k3)'),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(x + 1)"),
        new_code_cell("print('not compared')"),
    ])
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="PASS k3: stored\n")]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nb.cells[3].execution_count, nb.cells[4].execution_count = 2, 3
    return nb


def test_ci_notebook_is_the_learners_with_solution_outputs_and_a_solution_cell_after_each_check():
    solution = _solution_notebook()
    learner = nbs.learner_notebook(solution, "a.ipynb")
    ci = nbs.ci_notebook(solution, learner, "a.ipynb")
    assert len(ci.cells) == 7
    assert [c.source for c in ci.cells[:4]] == [c.source for c in learner.cells[:4]]
    assert "raise NotImplementedError()" in ci.cells[2].source and "torch.exp" not in ci.cells[2].source
    assert ci.cells[3].outputs == [nbformat.v4.new_output(
        "error", ename="CheckFailed", evalue="TODO k3: not attempted yet (the function still raises "
        "NotImplementedError).", traceback=[])] and ci.cells[3].execution_count == 1  # what the stub must make it say
    added = ci.cells[4]
    assert added.source.startswith("# NBVAL_CHECK_OUTPUT\n") and "run_solution(globals(), " in added.source
    assert "return (r - 1) - torch.log(r)" in added.source  # the solution region, not the stub
    assert "from toyenv.course import check" in added.source  # the learner's check cell, run after it
    assert added.outputs == solution.cells[3].outputs and added.execution_count == 1
    assert ci.cells[5].outputs == solution.cells[4].outputs and ci.cells[5].execution_count == 3
    assert ci.cells[6].outputs == [] and ci.cells[6].execution_count is None  # not marked: never compared
    assert learner.cells[4].outputs == []  # the learner's notebook itself is left as it was
    # a second exercise: its solution cell runs its own region only (the first one's ran in the cell before)
    solution.cells += [new_code_cell("def k1(logp, logq):\n    ### BEGIN SOLUTION\n    return logp - logq\n"
                                     "    ### END SOLUTION"), new_code_cell('check("k1", k1)')]
    ci = nbs.ci_notebook(solution, nbs.learner_notebook(solution, "a.ipynb"), "a.ipynb")
    assert len(ci.cells) == 10 and "return logp - logq" in ci.cells[9].source and "torch.exp" not in ci.cells[9].source
    solution.cells.append(new_code_cell("y = 2"))  # solutions/ gained a cell, notebooks/ was not rebuilt
    with pytest.raises(ValueError, match="a.ipynb: the learner's notebook has 6 cells and the solution 9"):
        nbs.ci_notebook(solution, learner, "a.ipynb")


def test_run_solution_checks_the_solution_without_touching_the_learners_names(capsys):
    def k3(logp, logq):
        raise NotImplementedError()
    namespace = {"torch": torch, "check": check, "k3": k3}
    solution = ("print('defining')\ndef k3(logp, logq):\n    r = torch.exp(logq - logp)\n"
                "    return (r - 1) - torch.log(r)")
    nbs.run_solution(namespace, [solution], "check('k3', k3)")
    assert capsys.readouterr().out.startswith("PASS k3: ")  # the solution's own print is not part of the output
    assert namespace["k3"] is k3  # the learner's stub, for the cells that follow
    # a later exercise builds on an earlier solution
    nbs.run_solution(namespace, ["def twice(p, q):\n    return 2 * k3(p, q)"],
                     "print(float(twice(torch.tensor(0.0), torch.log(torch.tensor(2.0)))))")
    assert float(capsys.readouterr().out) == pytest.approx(2 * (1 - torch.log(torch.tensor(2.0)).item()))
    assert "twice" not in namespace and set(namespace[nbs.SOLVED]) == {"k3", "twice"}


def test_run_solution_fails_the_cell_on_a_wrong_solution():
    namespace = {"torch": torch, "check": check}
    with pytest.raises(CheckFailed, match="^FAIL k3: "):
        nbs.run_solution(namespace, ["def k3(logp, logq):\n    return torch.exp(logq - logp) - 1"], "check('k3', k3)")
    with pytest.raises(ZeroDivisionError):
        nbs.run_solution(namespace, ["1 / 0"], "check('k3', k3)")


def test_make_test_runs_each_learner_notebook_once_with_its_solution_cells():
    """The root conftest.py collects notebooks/ as `ci_notebook` makes them: one item per learner code cell, plus
    "Cell N solution" after each check cell; with --nbval-lax, nbval's own collector runs the file as it is."""
    path = "notebooks/A1_policy_gradients.ipynb"
    learner = nbformat.read(ROOT / path, as_version=4)
    code = [c for c in learner.cells if c.cell_type == "code"]
    checks = [n for n, c in enumerate(code) if nbs.CHECK_CALL.search(c.source)]

    def collected(*args):  # {item name: whether nbval compares its outputs}
        script = ("import sys, pytest\nclass Items:\n    def pytest_collection_modifyitems(self, items):\n"
                  "        for item in items: print('ITEM', item.name, '|', item.options['check'], sep='')\n"
                  "sys.exit(pytest.main(sys.argv[1:], plugins=[Items()]))")
        res = subprocess.run([sys.executable, "-c", script, "--collect-only", "-q", "-p", "no:cacheprovider", path,
                              *args], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        return dict(line[4:].split("|") for line in res.stdout.splitlines() if line.startswith("ITEM"))

    ours = collected()
    names = list(ours)
    assert len(checks) == 4 and len(names) == len(code) + 4
    assert [names.index(f"Cell {n} solution") for n in checks] == [names.index(f"Cell {n}") + 1 for n in checks]
    # as --nbval-lax: outputs compared only where marked (the check cells carry their TODO, the added cells a PASS)
    marked = {f"Cell {n}" for n, c in enumerate(code) if c.source.startswith("# NBVAL_CHECK_OUTPUT")}
    assert {name for name, check in ours.items() if check == "True"} == marked | {f"Cell {n} solution" for n in checks}
    assert list(collected("--nbval-lax")) == [f"Cell {n}" for n in range(len(code))]
