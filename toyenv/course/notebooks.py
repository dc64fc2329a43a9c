"""solutions/ -> notebooks/: turn solution regions into stubs, keep everything else.

Markers are nbgrader's, so teachers who use nbgrader can feed it solutions/ as
is. In a code cell

    def f(x):
        ### BEGIN SOLUTION
        return 2 * x
        ### END SOLUTION

becomes

    def f(x):
        # YOUR CODE HERE
        raise NotImplementedError()

and the cell is tagged `raises-exception`, so nbval (and "Run All") go on past
it. Learner notebooks carry no outputs.

Every generated notebook is also an nbgrader assignment (`nbgrader_notebook`): a
cell with a solution region is an nbgrader solution cell; a check cell (one that
calls `check("name", ...)`) is an autograded, locked test cell worth one point per
exercise, which imports `check` itself and is tagged `raises-exception` (a FAIL or
TODO verdict raises, which is how nbgrader counts a failed test); every markdown
cell is read-only. `python -m toyenv.course nbgrader` writes the course's source
folder for nbgrader from solutions/ with the same metadata.

CI runs each learner notebook once, as `ci_notebook` makes it (the root conftest.py): the learner's cells, with the
outputs solutions/ stores for its NBVAL_CHECK_OUTPUT cells, and after each check cell one added cell that runs that
exercise's solution and its check (`run_solution`) without changing what the learner's cells see.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .checks import UNATTEMPTED

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)
STUB_TAG = "raises-exception"
CHECK_OUTPUT_MARK = "# NBVAL_CHECK_OUTPUT"
# A check cell is a code cell that calls check("name", ...); the names are its exercises.
CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([\w.-]+)["']""")
# The line a check cell gets in the generated notebooks (after nbval's marker): the graded cell imports the course's
# checker itself, so that a `check` the learner defined elsewhere is not the one nbgrader's test runs.
CHECK_IMPORT = "from toyenv.course import check"
NBGRADER_SCHEMA = 3  # nbgrader's cell-metadata schema version (nbgrader 0.9)
ROOT = Path(__file__).resolve().parents[2]
# notebooks/.generated.json: the sha256 of each notebook as `build` last wrote it. A file in notebooks/ whose hash
# is not the recorded one was edited after it was generated (by a learner, most likely), and `build` will not
# overwrite it unless told to.
MANIFEST = ".generated.json"
# A learner notebook's metadata names the course notebook it was generated from, so that `grade` finds the check
# cells to restore even in a renamed copy: {"rlhf_reg_course": {"source": "02_kl_estimators.ipynb"}}.
METADATA_KEY = "rlhf_reg_course"


class MarkerError(ValueError):
    pass


class EditedError(RuntimeError):
    """`build` would overwrite or remove notebooks that were edited after it generated them."""

    def __init__(self, names: list[str], tree: "Tree"):
        self.names = names
        files = ", ".join(f"notebooks/{n}" for n in names)
        super().__init__(
            f"{files} changed since `build` wrote {'them' if len(names) > 1 else 'it'}, so building would lose those "
            f"edits. Learners work in {tree.work.name}/ (`python -m toyenv.course workspace` copies the notebooks "
            f"there and never overwrites a file). To regenerate anyway, run `python -m toyenv.course build --force`: "
            f"it first copies each edited file into {tree.work.name}/{tree.backups.name}/.")


def stub_source(source: str, stub: tuple[str, ...] = CODE_STUB, where: str = "cell") -> tuple[str, bool]:
    """Replace each BEGIN/END SOLUTION region of `source`; returns (new source, whether any was found)."""
    out, inside, found = [], False, False
    for n, line in enumerate(source.split("\n"), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise MarkerError(f"{where}, line {n}: '{BEGIN}' inside another solution region")
            inside, found = True, True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + s for s in stub)
        elif stripped == END:
            if not inside:
                raise MarkerError(f"{where}, line {n}: '{END}' without a matching '{BEGIN}'")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "\n".join(out), found


def _tag(cell: nbformat.NotebookNode, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def _nbgrader(cell: nbformat.NotebookNode, grade_id: str, *, solution: bool, grade: bool, locked: bool,
              points: int | None = None) -> None:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": NBGRADER_SCHEMA,
            "solution": solution}
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta


def nbgrader_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """A solution notebook with the course's cell metadata, solutions still in place (nbgrader's source version):

    - a code cell with a solution region: an nbgrader solution cell, tagged `raises-exception` (its stub raises
      NotImplementedError, and "Run All" should go on);
    - a check cell: an autograded, locked test cell, one point per exercise it checks, `grade_id` "check-NAME";
      it imports `check` itself and is tagged `raises-exception` (FAIL and TODO raise);
    - a markdown cell: read-only (a markdown solution region makes it a manually graded answer instead);
    - the notebook's metadata names the course notebook (for `grade`); outputs and run state are dropped."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        cell.metadata.pop("execution", None)
        cell_id = cell.get("id", str(i))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            names = CHECK_CALL.findall(cell.source)
            if stub_source(cell.source, CODE_STUB, where)[1]:
                _tag(cell, STUB_TAG)
                _nbgrader(cell, f"answer-{cell_id}", solution=True, grade=False, locked=False)
            elif names:
                lines = cell.source.split("\n")
                at = 1 if lines[0].strip() == CHECK_OUTPUT_MARK else 0
                cell.source = "\n".join(lines[:at] + [CHECK_IMPORT] + lines[at:])
                _tag(cell, STUB_TAG)
                _nbgrader(cell, "check-" + "-".join(names), solution=False, grade=True, locked=True,
                          points=len(names))
        elif cell.cell_type == "markdown":
            if stub_source(cell.source, MARKDOWN_STUB, where)[1]:
                _nbgrader(cell, f"answer-{cell_id}", solution=True, grade=True, locked=False, points=1)
            else:
                _nbgrader(cell, f"text-{cell_id}", solution=False, grade=False, locked=True)
    nb.metadata.pop("widgets", None)  # widget state belongs to a run, not to the source
    nb.metadata[METADATA_KEY] = {"source": name}
    return nb


def learner_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's version of a solution notebook: `nbgrader_notebook`'s, with stubs instead of solutions (what
    nbgrader's generate_assignment would write)."""
    nb = nbgrader_notebook(nb, name)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type in ("code", "markdown"):
            stub = CODE_STUB if cell.cell_type == "code" else MARKDOWN_STUB
            cell.source, _ = stub_source(cell.source, stub, f"{name}, cell {i}")
    return nb


# The cell `ci_notebook` adds after a check cell. It is never in a learner's notebook.
SOLUTION_CELL = """{mark}
# Added by CI: the exercise's solution from solutions/, run and checked in a copy of this kernel's namespace.
from toyenv.course.notebooks import run_solution
run_solution(globals(), {sources!r}, {check!r})"""
SOLVED = "__solutions__"  # where run_solution keeps, in the kernel's namespace, what earlier solutions defined
_UNBOUND = object()


def ci_notebook(solution: nbformat.NotebookNode, learner: nbformat.NotebookNode,
                name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's notebook as CI runs it: one kernel executes the learner's own cells top to bottom, stubs and all,
    so that "Run All" is tested as a learner meets it. Added to it:

    - each NBVAL_CHECK_OUTPUT cell carries the outputs solutions/ stores for it, so the live run is compared with them;
    - each check cell must say TODO for its first exercise, as it does for a learner who has not started (a FAIL, or
      an error such as a NameError, would mean the stubs leave the learner a broken notebook);
    - after each check cell, a cell that runs the solution regions written since the previous check cell, then the
      check, and is compared with the PASS line solutions/ stores (`run_solution`).

    Every cell of the learner's notebook but the stubbed ones is the solution's, so this one run executes all the
    code of both copies. It replaces running solutions/ and notebooks/ separately, which took twice as long."""
    if len(solution.cells) != len(learner.cells):
        raise ValueError(f"{name}: the learner's notebook has {len(learner.cells)} cells and the solution "
                         f"{len(solution.cells)}; run `python -m toyenv.course build`")
    nb = copy.deepcopy(learner)
    cells, pending = [], []
    for i, (ours, theirs) in enumerate(zip(solution.cells, nb.cells)):
        cells.append(theirs)
        if ours.cell_type != "code":
            continue
        if stub_source(ours.source, CODE_STUB, f"{name}, cell {i}")[1]:
            pending.append(ours.source)
        elif checked := CHECK_CALL.findall(ours.source):
            todo = UNATTEMPTED.line(checked[0])
            theirs.outputs = [nbformat.v4.new_output("error", ename="CheckFailed", evalue=todo, traceback=[])]
            theirs.execution_count = 1
            source = SOLUTION_CELL.format(mark=CHECK_OUTPUT_MARK, sources=pending, check=theirs.source)
            # execution_count 1 even where the solution was never run: nbval then compares, and no stored PASS fails.
            cells.append(nbformat.v4.new_code_cell(source, id=f"ci-solution-{i}", outputs=ours.outputs,
                                                   execution_count=1))
            pending = []
        elif ours.source.startswith(CHECK_OUTPUT_MARK):
            theirs.outputs, theirs.execution_count = copy.deepcopy(ours.outputs), ours.execution_count
    nb.cells = cells
    return nb


def _python(source: str) -> str:
    """A cell's source as plain Python (IPython's magics and `!` lines translated), for exec."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def run_solution(namespace: dict, sources: list[str], check_source: str) -> None:
    """Inside a kernel running `ci_notebook`'s notebook: exec the solution cells' `sources` in a copy of `namespace`
    (the kernel's globals) plus whatever earlier solutions defined, silently, then `check_source`, the check cell,
    whose PASS line is this cell's output. The kernel's own names stay as the learner's stubs left them; what the
    solutions defined is kept under `namespace[SOLVED]` for the exercises that build on them."""
    solved = namespace.setdefault(SOLVED, {})
    scope = {**namespace, **solved}
    with contextlib.redirect_stdout(io.StringIO()):
        for source in sources:
            exec(compile(_python(source), "<solution>", "exec"), scope)
    solved.update({k: v for k, v in scope.items() if not k.startswith("__") and namespace.get(k, _UNBOUND) is not v})
    exec(compile(_python(check_source), "<check>", "exec"), scope)


def to_text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Tree:
    """The course's folders: solutions/ (the source), notebooks/ (generated, tracked), work/ (the learner's, untracked)."""
    solutions: Path = ROOT / "solutions"
    notebooks: Path = ROOT / "notebooks"
    work: Path = ROOT / "work"

    @property
    def backups(self) -> Path:
        return self.work / "backups"

    @property
    def manifest(self) -> Path:
        return self.notebooks / MANIFEST

    def sources(self) -> list[Path]:
        return sorted(self.solutions.glob("*.ipynb"))

    def expected(self) -> dict[str, str]:
        return {p.name: to_text(learner_notebook(nbformat.read(p, as_version=4), p.name)) for p in self.sources()}

    def generated(self) -> dict[str, str]:
        """{name: sha256} of what `build` last wrote ({} before the first build, or if the record is unreadable)."""
        try:
            record = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def edited(self, name: str) -> bool:
        """Whether notebooks/name exists and is not what `build` last wrote there."""
        path = self.notebooks / name
        return path.exists() and self.generated().get(name) != digest(path.read_text(encoding="utf-8"))


def manifest_text(expected: dict[str, str]) -> str:
    return json.dumps({name: digest(text) for name, text in sorted(expected.items())}, indent=1) + "\n"


def backup(path: Path, backups: Path) -> Path:
    """Copy `path` to backups/<stem>.<time>.ipynb (never over an existing backup); returns the copy."""
    backups.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = backups / f"{path.stem}.{stamp}{path.suffix}", 1
    while target.exists():
        n += 1
        target = backups / f"{path.stem}.{stamp}-{n}{path.suffix}"
    shutil.copy2(path, target)
    return target


def build(tree: Tree | None = None, force: bool = False) -> list[str]:
    """Write notebooks/ from solutions/; remove learner notebooks whose source is gone. Returns what changed.

    A notebook edited since the last build is never overwritten or removed silently: without `force` nothing is
    written and EditedError names the files; with `force` each edited file is first copied to work/backups/."""
    tree = tree or Tree()
    expected = tree.expected()
    stale = sorted(p.name for p in tree.notebooks.glob("*.ipynb") if p.name not in expected)
    at_risk = [n for n in sorted(expected) if tree.edited(n)
               and (tree.notebooks / n).read_text(encoding="utf-8") != expected[n]]
    at_risk += [n for n in stale if tree.edited(n)]
    if at_risk and not force:
        raise EditedError(at_risk, tree)
    changed = [f"kept a copy of notebooks/{n} in {backup(tree.notebooks / n, tree.backups).relative_to(tree.work.parent)}"
               for n in at_risk]
    tree.notebooks.mkdir(parents=True, exist_ok=True)
    for name, text in expected.items():
        target = tree.notebooks / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(f"wrote notebooks/{name}")
    for name in stale:
        (tree.notebooks / name).unlink()
        changed.append(f"removed notebooks/{name} (no solutions/{name})")
    record = manifest_text(expected)
    if not tree.manifest.exists() or tree.manifest.read_text(encoding="utf-8") != record:
        tree.manifest.write_text(record, encoding="utf-8")
        changed.append(f"wrote notebooks/{MANIFEST}")
    return changed


NBGRADER_CONFIG = ROOT / "nbgrader_config.py"


def export_nbgrader(dest: Path, names: list[str] | None = None, tree: Tree | None = None,
                    force: bool = False) -> list[str]:
    """Write an nbgrader course folder: dest/nbgrader_config.py and, for each solution notebook (or those `names`),
    dest/source/<stem>/<name>.ipynb as `nbgrader_notebook` makes it (one nbgrader assignment per notebook, named by
    its stem).

    A file there that differs from what would be written (a teacher's edit, or an older export) is not overwritten
    unless `force`, and then it is first copied to dest/backups/; without `force` nothing is written if anything
    would be lost. Returns what it did, a line per file."""
    tree = tree or Tree()
    dest = Path(dest)
    sources = tree.sources()
    if names:
        wanted = {n if n.endswith(".ipynb") else n + ".ipynb" for n in names}
        unknown = sorted(wanted - {p.name for p in sources})
        if unknown:
            raise FileNotFoundError(f"no such solution notebook(s) in {tree.solutions}: {', '.join(unknown)}")
        sources = [p for p in sources if p.name in wanted]
    files = {dest / "nbgrader_config.py": NBGRADER_CONFIG.read_text(encoding="utf-8")}
    for p in sources:
        files[dest / "source" / p.stem / p.name] = to_text(nbgrader_notebook(nbformat.read(p, as_version=4), p.name))
    clash = [str(f) for f, text in files.items() if f.exists() and f.read_text(encoding="utf-8") != text]
    if clash and not force:
        raise FileExistsError(f"{', '.join(clash)} differ from what the export would write (edited by hand, or "
                              "from an older course version); rerun with --force to overwrite them")
    written = [f"kept a copy of {f} in {backup(Path(f), dest / 'backups')}" for f in clash]
    for f, text in files.items():
        if not f.exists() or f.read_text(encoding="utf-8") != text:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(text, encoding="utf-8")
            written.append(str(f))
    return written


def check(tree: Tree | None = None) -> list[str]:
    """Problems that make notebooks/ differ from what `build` would write (empty list: in sync).

    Only the generated copies are compared: the learner's work/ is never looked at."""
    tree = tree or Tree()
    problems = []
    expected = tree.expected()
    for name, text in expected.items():
        target = tree.notebooks / name
        if not target.exists():
            problems.append(f"notebooks/{name} is missing")
        elif target.read_text(encoding="utf-8") != text:
            why = ("was edited after `build` wrote it (if that is your work, copy it into work/ first)"
                   if tree.edited(name) else f"is older than solutions/{name}")
            problems.append(f"notebooks/{name} {why}")
    for extra in sorted(tree.notebooks.glob("*.ipynb")):
        if extra.name not in expected:
            problems.append(f"notebooks/{extra.name} has no source solutions/{extra.name}")
    if not tree.manifest.exists() or tree.manifest.read_text(encoding="utf-8") != manifest_text(expected):
        problems.append(f"notebooks/{MANIFEST} does not record what solutions/ generates")
    return problems


def execute(path: Path, timeout: int = 600, allow_errors: bool = False) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh kernel, in its own folder; returns the executed notebook."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=allow_errors, record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def refresh(paths: list[Path], timeout: int = 600) -> None:
    """Re-run solution notebooks and keep only the outputs nbval compares (cells marked NBVAL_CHECK_OUTPUT)."""
    for path in paths:
        nb = execute(path, timeout)
        for cell in nb.cells:
            cell.metadata.pop("execution", None)  # timestamps: churn without information
            if cell.cell_type == "code" and CHECK_OUTPUT_MARK not in cell.source:
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        path.write_text(to_text(nb), encoding="utf-8")
