"""Grading a learner's notebook with the course's own check cells.

`python -m toyenv.course grade SUBMISSION` does not trust what the submission prints or what its check cells say:

1. It finds the course notebook the submission came from (the name `build` writes into its metadata, else the file
   name) and takes that notebook's check cells, the code cells that call `check("name", ...)`.
2. It puts each of them back into the submission, where it was (matched by cell id; a deleted check cell is put back
   after the cell it followed), replacing whatever the submission has there.
3. Each restored cell first re-imports the checkers afresh (`fresh_check`) and defines `check` itself, so a learner's
   own `check`, or a patched checker registry, is not the one that runs.
4. The restored cells report each verdict on a line that starts with a token drawn at random for this run; only
   those lines count. A learner's `print("PASS k3: ...")` is ignored.
5. The notebook runs top to bottom in a fresh kernel under one time limit for the whole notebook. If time runs out,
   the kernel dies or the file is not a notebook, the exercises reached keep their verdicts and the others are
   reported "not run", with the reason.

Threat model. Grading runs the learner's code with the grader's rights, as nbgrader does; it is not a sandbox. It
defends against the ways a learner can fake a pass by accident or by casual cheating: printing verdict lines,
redefining `check`, patching the checker registry, editing or deleting check cells, renaming the exercise. It does
not defend against code written to attack the grader from inside the kernel (reading the grader's cells to learn the
token, patching the modules the checkers use, touching files): run submissions you do not trust in a container or a
throw-away account.
"""
from __future__ import annotations

import copy
import csv
import json
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .notebooks import CHECK_CALL, METADATA_KEY, ROOT

STATUS_WORDS = {"PASS": "pass", "FAIL": "fail", "TODO": "not attempted", "MISSING": "missing", "NOT RUN": "not run"}


class GradeError(ValueError):
    """The submission cannot be matched to a course notebook (no exercise could be graded)."""


@dataclass
class Row:
    exercise: str
    status: str  # one of STATUS_WORDS
    message: str


@dataclass
class Report:
    """One submission's grades: a row per exercise of its course notebook, and why the run stopped early (if it did)."""

    submission: Path
    source: str
    rows: list[Row] = field(default_factory=list)
    stopped: str | None = None

    @property
    def passed(self) -> int:
        return sum(r.status == "PASS" for r in self.rows)

    @property
    def all_pass(self) -> bool:
        return bool(self.rows) and self.passed == len(self.rows)


# --------------------------------------------------------------------------- inside the grading kernel
def fresh_check(token: str):
    """The `check` a restored check cell uses: the checker modules re-imported afresh, and each verdict also printed
    on a line `token {json}` that the grader reads (and the learner's printing cannot forge without the token)."""
    import importlib
    import pkgutil

    checks = importlib.reload(importlib.import_module("toyenv.course.checks"))
    package = importlib.import_module("toyenv.course")
    for name in sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("checks_")):
        importlib.reload(importlib.import_module(f"toyenv.course.{name}"))  # registers into the fresh registry

    def check(name: str, fn) -> None:
        verdict = checks.run_check(name, fn)
        print(verdict.line(name))
        print(token, json.dumps({"exercise": name, "status": verdict.status, "message": verdict.message}))

    return check


def _restored_source(source: str, token: str) -> str:
    return ("import importlib as _grading_importlib  # restored by `python -m toyenv.course grade`\n"
            f"check = _grading_importlib.reload(_grading_importlib.import_module('toyenv.course.grading'))"
            f".fresh_check({token!r})\n" + source)


# --------------------------------------------------------------------------- building the graded notebook
def course_source(nb: nbformat.NotebookNode, path: Path, solutions: Path) -> Path:
    """The course notebook a submission came from: the one named in its metadata, else the one with its file name."""
    meta = nb.metadata.get(METADATA_KEY)
    named = meta.get("source") if isinstance(meta, dict) else None
    for candidate in (named, path.name):
        if isinstance(candidate, str) and Path(candidate).name == candidate and (solutions / candidate).is_file():
            return solutions / candidate
    raise GradeError(f"{path.name} is not one of the course's notebooks (no solutions/{path.name}); name the course "
                     "notebook it answers with --source NAME")


def check_cells(source: nbformat.NotebookNode) -> list[tuple[int, list[str]]]:
    """(cell index, exercise names) of every check cell of a course notebook, in order."""
    return [(i, CHECK_CALL.findall(c.source)) for i, c in enumerate(source.cells)
            if c.cell_type == "code" and CHECK_CALL.search(c.source)]


def graded_notebook(submission: nbformat.NotebookNode, source: nbformat.NotebookNode, token: str
                    ) -> tuple[nbformat.NotebookNode, list[tuple[str, list[str]]]]:
    """The submission with the course's check cells restored: (notebook, [(cell id, exercise names)] of the restored
    cells). A check cell the submission kept (same id) is overwritten in place; a deleted one is inserted after the
    nearest cell before it in the course notebook that the submission still has (at the top if none)."""
    cells = copy.deepcopy(list(submission.cells))
    restored = []
    for i, names in check_cells(source):
        original = source.cells[i]
        cell = nbformat.v4.new_code_cell(_restored_source(original.source, token))
        cell.id = f"graded-{original.get('id', i)}"
        ids = [c.get("id") for c in cells]
        if original.get("id") in ids:
            cells[ids.index(original.get("id"))] = cell
        else:
            before = [source.cells[j].get("id") for j in range(i - 1, -1, -1)]
            anchor = next((ids.index(b) for b in before if b in ids), -1)
            # after the anchor and after any check cells already restored right behind it
            at = anchor + 1
            while at < len(cells) and str(cells[at].get("id", "")).startswith("graded-"):
                at += 1
            cells.insert(at, cell)
        restored.append((cell.id, names))
    nb = nbformat.v4.new_notebook(cells=cells, metadata=dict(submission.metadata))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb, restored


# --------------------------------------------------------------------------- running
def run_notebook(nb: nbformat.NotebookNode, timeout: float, cwd: Path) -> tuple[set[str], str | None]:
    """Run the cells in order in a fresh kernel within `timeout` seconds in all; (ids of the cells that ran, why the
    run stopped early or None). The kernel's own stderr (ZeroMQ and debugger warnings) is discarded."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client = NotebookClient(nb, timeout=max(1, int(timeout)), kernel_name="python3", allow_errors=True,
                            record_timing=False, resources={"metadata": {"path": str(cwd)}})
    deadline = time.monotonic() + timeout
    ran: set[str] = set()
    try:
        with client.setup_kernel(stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL):
            for index, cell in enumerate(nb.cells):
                left = deadline - time.monotonic()
                if left <= 0:
                    return ran, f"the notebook's time limit of {timeout:g} s ran out"
                client.timeout = max(1, int(left))
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    return ran, f"the notebook's time limit of {timeout:g} s ran out (in cell {index})"
                ran.add(cell.get("id"))
    except DeadKernelError:
        return ran, "the kernel died (the code exited Python, crashed it, or ran out of memory)"
    return ran, None


def _verdict(cell: nbformat.NotebookNode, name: str, token: str) -> Row:
    found, error = None, None
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            for line in out.get("text", "").splitlines():
                if line.startswith(token + " "):
                    try:
                        v = json.loads(line[len(token) + 1:])
                    except ValueError:
                        continue
                    if v.get("exercise") == name and v.get("status") in ("PASS", "FAIL", "TODO"):
                        found = Row(name, v["status"], str(v.get("message", "")))
        elif out.get("output_type") == "error":
            error = (out.get("ename", "Error"), out.get("evalue", ""))
    if found:
        return found
    if error and error[0] == "NameError":
        return Row(name, "MISSING", f"{error[1]}: the exercise's function is not defined (renamed or deleted?)")
    if error:
        return Row(name, "FAIL", f"the check cell raised {error[0]}: {error[1]}")
    return Row(name, "FAIL", "the check cell ran but gave no verdict")


def grade(path: Path, timeout: float = 1800, source: Path | None = None, solutions: Path | None = None) -> Report:
    """Grade one submission (see the module docstring). Never raises on a broken submission: the report says why."""
    path = Path(path)
    solutions = solutions or ROOT / "solutions"
    try:
        submission = nbformat.read(path, as_version=4)
    except Exception as e:  # not JSON, not a notebook, unreadable: grade nothing, say why
        src = source or (solutions / path.name if (solutions / path.name).is_file() else None)
        report = Report(path, src.name if src else "?", stopped=f"the file is not a readable notebook ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})")
        if src:
            report.rows = [Row(n, "NOT RUN", report.stopped) for _, names in
                           check_cells(nbformat.read(src, as_version=4)) for n in names]
        return report
    src = source or course_source(submission, path, solutions)
    course = nbformat.read(src, as_version=4)
    token = "toyenv-verdict-" + secrets.token_hex(16)
    nb, restored = graded_notebook(submission, course, token)
    ran, stopped = run_notebook(nb, timeout, path.parent)
    by_id = {c.get("id"): c for c in nb.cells}
    rows = []
    for cell_id, names in restored:
        for name in names:
            rows.append(_verdict(by_id[cell_id], name, token) if cell_id in ran
                        else Row(name, "NOT RUN", stopped or "not reached"))
    return Report(path, src.name, rows, stopped)


def format_table(report: Report, width: int = 100) -> str:
    if not report.rows:
        return f"{report.submission.name}: no exercises graded" + (f" ({report.stopped})" if report.stopped else "")
    w = max(len("exercise"), *(len(r.exercise) for r in report.rows))
    lines = [f"{'exercise':<{w}}  {'result':<13}  message", f"{'-' * w}  {'-' * 13}  {'-' * 7}"]
    for r in report.rows:
        msg = r.message if len(r.message) <= width else r.message[: width - 3] + "..."
        lines.append(f"{r.exercise:<{w}}  {STATUS_WORDS[r.status]:<13}  {msg}")
    lines.append(f"\n{report.passed}/{len(report.rows)} exercises pass")
    if report.stopped:
        lines.append(f"stopped early: {report.stopped}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- a folder of submissions
def submissions(folder: Path) -> list[tuple[str, Path]]:
    """(student, notebook) for every .ipynb under `folder`: `folder/student/.../x.ipynb` (nbgrader's layout) or
    `folder/x.ipynb` (the student is the file's stem). Checkpoint folders are skipped."""
    out = []
    for p in sorted(Path(folder).rglob("*.ipynb")):
        rel = p.relative_to(folder)
        if ".ipynb_checkpoints" in rel.parts:
            continue
        out.append((rel.parts[0] if len(rel.parts) > 1 else p.stem, p))
    return out


def gradebook(folder: Path, csv_path: Path, timeout: float = 1800, solutions: Path | None = None,
              progress=print) -> list[tuple[str, Report]]:
    """Grade every submission under `folder`; write `csv_path` (one row per student and notebook, one column per
    exercise) and a feedback file per submission (`<csv stem>_feedback/<student>/<notebook>.txt`)."""
    csv_path = Path(csv_path)
    feedback = csv_path.with_name(csv_path.stem + "_feedback")
    results = []
    for student, path in submissions(folder):
        progress(f"grading {student}: {path.relative_to(folder)}")
        try:
            report = grade(path, timeout, solutions=solutions)
        except GradeError as e:
            report = Report(path, "?", stopped=str(e))
        results.append((student, report))
        out = feedback / student / (path.stem + ".txt")
        out.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(f"{r.exercise}: {STATUS_WORDS[r.status]}. {r.message}" for r in report.rows)
        out.write_text(f"{path.name} (course notebook {report.source})\n\n{body}\n\n{report.passed}/"
                       f"{len(report.rows)} exercises pass\n" + (f"stopped early: {report.stopped}\n" if report.stopped
                                                                 else ""), encoding="utf-8")
    exercises = list(dict.fromkeys(r.exercise for _, rep in results for r in rep.rows))
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "notebook", "source", *exercises, "passed", "total", "stopped"])
        for student, rep in results:
            status = {r.exercise: STATUS_WORDS[r.status] for r in rep.rows}
            w.writerow([student, rep.submission.name, rep.source, *(status.get(e, "") for e in exercises),
                        rep.passed, len(rep.rows), rep.stopped or ""])
    return results
