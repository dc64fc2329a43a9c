"""A learner's work survives every course command and `git pull` (toyenv.course.workspace, notebooks.build)."""
import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from toyenv.course import notebooks as nbs
from toyenv.course import workspace as ws

ROOT = Path(__file__).resolve().parents[1]
SOLVED = "def k3(logr):\n    return (logr.exp() - 1) - logr  # the learner's answer"


def _solution(path: Path, body: str = "return 1") -> None:
    src = f"def f():\n    ### BEGIN SOLUTION\n    {body}\n    ### END SOLUTION"
    nbformat.write(new_notebook(cells=[new_code_cell(src)]), path)


def _course(root: Path) -> nbs.Tree:
    """A tiny course: one solution notebook, built, with the repository's .gitignore."""
    (root / "solutions").mkdir(parents=True)
    _solution(root / "solutions" / "a.ipynb")
    shutil.copy(ROOT / ".gitignore", root / ".gitignore")
    tree = nbs.Tree(root / "solutions", root / "notebooks", root / "work")
    nbs.build(tree)
    return tree


def _solve(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell(SOLVED))
    nbformat.write(nb, path)


def _solved(path: Path) -> bool:
    return "# the learner's answer" in path.read_text()


def test_workspace_copies_once_and_never_overwrites(tmp_path):
    tree = _course(tmp_path)
    assert ws.workspace(tree) == ["copied notebooks/a.ipynb to work/a.ipynb"]
    assert (tree.work / "a.ipynb").read_text() == (tree.notebooks / "a.ipynb").read_text()
    _solve(tree.work / "a.ipynb")
    assert ws.workspace(tree) == []  # `make lab` a second time
    assert _solved(tree.work / "a.ipynb")


def test_make_test_and_check_ignore_the_workspace(tmp_path):
    tree = _course(tmp_path)
    ws.workspace(tree)
    _solve(tree.work / "a.ipynb")
    (tree.work / "scratch.ipynb").write_text("{}")
    assert nbs.check(tree) == []
    assert nbs.build(tree) == [] and _solved(tree.work / "a.ipynb")
    assert sorted(p.name for p in tree.work.iterdir()) == [".copied.json", "a.ipynb", "scratch.ipynb"]


def test_build_refuses_to_overwrite_an_edited_notebook_and_backs_it_up_when_forced(tmp_path):
    tree = _course(tmp_path)
    _solve(tree.notebooks / "a.ipynb")  # a learner who worked in notebooks/ as the README used to say
    _solution(tree.solutions / "a.ipynb", "return 2")  # and a course update
    problems = nbs.check(tree)
    assert problems[0] == ("notebooks/a.ipynb was edited after `build` wrote it (if that is your work, copy it "
                           "into work/ first)")
    with pytest.raises(nbs.EditedError, match=r"notebooks/a.ipynb changed since `build` wrote it.*--force"):
        nbs.build(tree)
    assert _solved(tree.notebooks / "a.ipynb")  # nothing written
    changed = nbs.build(tree, force=True)
    assert changed[0].startswith("kept a copy of notebooks/a.ipynb in work/backups/a.")
    backups = list(tree.backups.glob("a.*.ipynb"))
    assert len(backups) == 1 and _solved(backups[0])
    assert not _solved(tree.notebooks / "a.ipynb") and nbs.check(tree) == []
    # an edit that build would write anyway is no loss: nothing to refuse
    nbs.build(tree, force=True)
    assert nbs.build(tree) == []


def test_build_cli_refuses_with_exit_1(tmp_path, monkeypatch):
    from toyenv.course import __main__ as cli
    tree = _course(tmp_path)
    _solve(tree.notebooks / "a.ipynb")
    _solution(tree.solutions / "a.ipynb", "return 2")
    monkeypatch.setattr(cli.nbs, "Tree", lambda: tree)
    assert cli.main(["build"]) == 1
    assert _solved(tree.notebooks / "a.ipynb")
    assert cli.main(["build", "--force"]) == 0


def test_fresh_copy_keeps_the_old_one(tmp_path):
    tree = _course(tmp_path)
    ws.workspace(tree)
    _solve(tree.work / "a.ipynb")
    lines = ws.fresh("a", tree)
    assert lines[0].startswith("kept your work/a.ipynb as work/backups/a.")
    assert not _solved(tree.work / "a.ipynb")
    assert [_solved(p) for p in tree.backups.iterdir()] == [True]
    ws.fresh("a.ipynb", tree)  # twice in the same second: a second backup, not an overwrite
    assert len(list(tree.backups.iterdir())) == 2
    with pytest.raises(FileNotFoundError, match="no notebook named 'zz' in notebooks/; the course has: a"):
        ws.fresh("zz", tree)


def _git(cwd: Path, *args: str) -> str:
    res = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_pull_of_a_course_update_keeps_the_learners_work(tmp_path):
    upstream = tmp_path / "upstream"
    _course(upstream)
    _git(upstream, "init", "-q", "-b", "main")
    _git(upstream, "add", "-A")
    _git(upstream, "commit", "-qm", "course")
    _git(tmp_path, "clone", "-q", str(upstream), "learner")
    learner = tmp_path / "learner"
    tree = nbs.Tree(learner / "solutions", learner / "notebooks", learner / "work")
    ws.workspace(tree)  # `make lab`
    _solve(tree.work / "a.ipynb")
    assert _git(learner, "status", "--porcelain") == ""  # work/ is invisible to git

    up = nbs.Tree(upstream / "solutions", upstream / "notebooks", upstream / "work")
    _solution(up.solutions / "a.ipynb", "return 2")  # the course is updated
    nbs.build(up)
    _git(upstream, "commit", "-qam", "update")

    _git(learner, "pull", "-q")
    assert "return 2" in (tree.solutions / "a.ipynb").read_text()
    assert _solved(tree.work / "a.ipynb")
    assert nbs.check(tree) == []
    lines = ws.workspace(tree)  # the next `make lab` says there is an update, and keeps the learner's file
    assert lines == ["The course has updated these since you copied them; your copies are untouched. "
                     "`python -m toyenv.course fresh NAME` gets the new version and keeps yours in work/backups/:",
                     "  a.ipynb"]
    assert _solved(tree.work / "a.ipynb")
    assert json.loads((tree.work / ".copied.json").read_text())["a.ipynb"] != nbs.digest(
        (tree.notebooks / "a.ipynb").read_text())


def test_the_repository_ignores_work_and_records_its_generated_notebooks():
    res = subprocess.run(["git", "check-ignore", "-q", "work/00_tour.ipynb"], cwd=ROOT)
    assert res.returncode == 0, ".gitignore must ignore work/"
    tree = nbs.Tree()
    assert set(tree.generated()) == {p.name for p in tree.sources()}
    assert not any(tree.edited(p.name) for p in tree.sources())
