"""The learner notebooks as nbgrader assignments: the cell metadata `build` writes, the export for nbgrader, and a
real round trip (nbgrader's generate_assignment, then autograde) on notebook 01 with a solved, an unsolved, a
half-done and a cheating copy. The round trip needs nbgrader (the `teach` extra; `dev` includes it) and is skipped
only when it is not installed."""
import copy
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from toyenv.course import notebooks as nbs

NAME = "01_kl_divergence"  # two exercises (reverse_kl, forward_kl), and it runs in a few seconds


def _meta(cell):
    return cell.metadata.get("nbgrader")


def test_metadata_of_each_kind_of_cell():
    nb = new_notebook(cells=[
        new_markdown_cell("# Title"),
        new_code_cell("import torch"),
        new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"),
        new_code_cell('# NBVAL_CHECK_OUTPUT\ncheck("double", f)'),
        new_code_cell('check("a", f)\ncheck("b", g)'),
        new_markdown_cell("Why?\n### BEGIN SOLUTION\nbecause\n### END SOLUTION"),
    ])
    for i, cell in enumerate(nb.cells):
        cell.id = f"x{i}"
    out = nbs.learner_notebook(nb, "demo.ipynb")
    text, setup, answer, check1, check2, essay = out.cells
    assert _meta(text) == {"grade": False, "grade_id": "text-x0", "locked": True, "schema_version": 3,
                           "solution": False}
    assert _meta(setup) is None and "tags" not in setup.metadata  # an ordinary code cell stays free
    assert _meta(answer) == {"grade": False, "grade_id": "answer-x2", "locked": False, "schema_version": 3,
                             "solution": True}
    assert answer.metadata["tags"] == ["raises-exception"]
    assert _meta(check1) == {"grade": True, "grade_id": "check-double", "locked": True, "points": 1,
                             "schema_version": 3, "solution": False}
    assert check1.metadata["tags"] == ["raises-exception"]
    # the graded cell imports the checker itself, after nbval's marker
    assert check1.source == '# NBVAL_CHECK_OUTPUT\nfrom toyenv.course import check\ncheck("double", f)'
    assert _meta(check2)["grade_id"] == "check-a-b" and _meta(check2)["points"] == 2
    assert check2.source.startswith("from toyenv.course import check\n")
    assert _meta(essay) == {"grade": True, "grade_id": "answer-x5", "locked": False, "points": 1, "schema_version": 3,
                            "solution": True}
    assert essay.source == "Why?\nYOUR ANSWER HERE"
    # nbgrader's source version keeps the solutions and has the same metadata
    source = nbs.nbgrader_notebook(nb, "demo.ipynb")
    assert "return 2 * x" in source.cells[2].source and _meta(source.cells[2]) == _meta(answer)
    assert [_meta(c) for c in source.cells] == [_meta(c) for c in out.cells]


def test_every_course_notebook_is_a_valid_assignment():
    """Unique grade ids, a solution cell for every exercise's stub, one point per checked exercise, no solution
    region outside a solution cell (what made nbgrader refuse the notebooks before)."""
    tree = nbs.Tree()
    for path in tree.sources():
        nb = nbs.nbgrader_notebook(nbformat.read(path, as_version=4), path.name)
        ids = [_meta(c)["grade_id"] for c in nb.cells if _meta(c)]
        assert len(ids) == len(set(ids)), path.name
        checked = [n for c in nb.cells if c.cell_type == "code" for n in nbs.CHECK_CALL.findall(c.source)]
        points = sum(_meta(c).get("points", 0) for c in nb.cells if _meta(c) and _meta(c)["grade"])
        assert points == len(checked) > 0, path.name
        for c in nb.cells:
            has_region = nbs.BEGIN in c.source
            assert has_region == bool(_meta(c) and _meta(c)["solution"]), (path.name, c.get("id"))


def test_export_writes_the_config_and_one_source_folder_per_notebook_and_keeps_edits(tmp_path):
    written = nbs.export_nbgrader(tmp_path, [NAME])
    assert sorted(Path(w).relative_to(tmp_path).as_posix() for w in written) == \
        ["nbgrader_config.py", f"source/{NAME}/{NAME}.ipynb"]
    assert "c.Execute.timeout = 900" in (tmp_path / "nbgrader_config.py").read_text()
    assert nbs.export_nbgrader(tmp_path, [NAME]) == []  # nothing changed
    edited = tmp_path / "source" / NAME / f"{NAME}.ipynb"
    edited.write_text(edited.read_text() + " ")
    with pytest.raises(FileExistsError, match="--force"):
        nbs.export_nbgrader(tmp_path, [NAME])
    assert edited.read_text().endswith(" ")  # kept
    kept, rewritten = nbs.export_nbgrader(tmp_path, [NAME], force=True)
    assert kept.startswith(f"kept a copy of {edited} in {tmp_path / 'backups'}") and rewritten == str(edited)
    assert [p.read_text().endswith(" ") for p in (tmp_path / "backups").iterdir()] == [True]
    assert not edited.read_text().endswith(" ")
    with pytest.raises(FileNotFoundError, match="nope"):
        nbs.export_nbgrader(tmp_path, ["nope"])


def _nbgrader(*args: str, cwd: Path) -> None:
    # nbgrader runs alembic (its database migrations) as a program: the environment's bin/ must be on PATH.
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--force"], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


def test_generate_and_autograde_score_each_student_as_the_checks_say(tmp_path):
    pytest.importorskip("nbgrader")
    from nbgrader.api import Gradebook

    nbs.export_nbgrader(tmp_path, [NAME])
    _nbgrader("generate_assignment", NAME, cwd=tmp_path)
    release = nbformat.read(tmp_path / "release" / NAME / f"{NAME}.ipynb", as_version=4)
    # nbgrader's stubs are the course's: the released notebook is the learner notebook, cell for cell
    ours = nbformat.read(nbs.Tree().notebooks / f"{NAME}.ipynb", as_version=4)
    assert [c.source for c in release.cells] == [c.source for c in ours.cells]
    source = nbformat.read(tmp_path / "source" / NAME / f"{NAME}.ipynb", as_version=4)
    answers = {c.id: c.source for c in source.cells if (_meta(c) or {}).get("solution")}
    assert len(answers) == 2

    def submit(student: str, solved: list[str], extra: str = "", full: bool = False) -> None:
        nb = copy.deepcopy(release)
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        for c in nb.cells:
            if c.id in solved:
                c.source = answers[c.id]
            elif not full and c.cell_type == "code" and not _meta(c) and c is not first_code:
                c.source = ""  # a cell nbgrader neither grades nor locks: emptied, it costs nothing to run
        first = next(c for c in nb.cells if c.id in answers)
        first.source += extra
        folder = tmp_path / "submitted" / student / NAME
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{NAME}.ipynb")

    ids = list(answers)
    # The solved copy runs the whole notebook. The other three keep only the imports, the exercises and their graded
    # checks, which is all their scores depend on, so that the round trip runs the notebook's slow cells once, not four
    # times.
    submit("solved", ids, full=True)
    submit("unsolved", [])
    submit("half", ids[:1])
    # a learner who defines a `check` that always passes: the graded cells import the course's own
    submit("cheat", [], "\n\ndef check(name, fn):\n    print(f'PASS {name}: trust me')\n")
    _nbgrader("autograde", NAME, cwd=tmp_path)
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        scores = {s: (gb.find_submission(NAME, s).score, gb.find_submission(NAME, s).max_score)
                  for s in ("solved", "unsolved", "half", "cheat")}
    assert scores == {"solved": (2, 2), "unsolved": (0, 2), "half": (1, 2), "cheat": (0, 2)}


def test_the_command_writes_the_folder_and_names_a_bad_notebook(tmp_path, capsys):
    from toyenv.course.__main__ import main

    assert main(["nbgrader", "--dest", str(tmp_path), NAME]) == 0
    assert f"nbgrader generate_assignment {NAME}" in capsys.readouterr().out
    assert (tmp_path / "source" / NAME / f"{NAME}.ipynb").is_file()
    assert main(["nbgrader", "--dest", str(tmp_path), "nope"]) == 2
    assert "no such solution notebook(s)" in capsys.readouterr().err
