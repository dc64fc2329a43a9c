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
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MARKDOWN_STUB = ("YOUR ANSWER HERE",)
STUB_TAG = "raises-exception"
CHECK_OUTPUT_MARK = "# NBVAL_CHECK_OUTPUT"
ROOT = Path(__file__).resolve().parents[2]


class MarkerError(ValueError):
    pass


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


def learner_notebook(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's version of a solution notebook: stubs instead of solutions, no outputs."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        where = f"{name}, cell {i}"
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.source, found = stub_source(cell.source, CODE_STUB, where)
            cell.outputs, cell.execution_count = [], None
            if found:
                tags = cell.metadata.setdefault("tags", [])
                if STUB_TAG not in tags:
                    tags.append(STUB_TAG)
        elif cell.cell_type == "markdown":
            cell.source, _ = stub_source(cell.source, MARKDOWN_STUB, where)
    nb.metadata.pop("widgets", None)  # widget state belongs to a run, not to the source
    return nb


def to_text(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


@dataclass
class Tree:
    solutions: Path = ROOT / "solutions"
    notebooks: Path = ROOT / "notebooks"

    def sources(self) -> list[Path]:
        return sorted(self.solutions.glob("*.ipynb"))

    def expected(self) -> dict[str, str]:
        return {p.name: to_text(learner_notebook(nbformat.read(p, as_version=4), p.name)) for p in self.sources()}


def build(tree: Tree | None = None) -> list[str]:
    """Write notebooks/ from solutions/; remove learner notebooks whose source is gone. Returns what changed."""
    tree = tree or Tree()
    tree.notebooks.mkdir(parents=True, exist_ok=True)
    changed = []
    expected = tree.expected()
    for name, text in expected.items():
        target = tree.notebooks / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(f"wrote notebooks/{name}")
    for stale in sorted(tree.notebooks.glob("*.ipynb")):
        if stale.name not in expected:
            stale.unlink()
            changed.append(f"removed notebooks/{stale.name} (no solutions/{stale.name})")
    return changed


def check(tree: Tree | None = None) -> list[str]:
    """Problems that make notebooks/ differ from what `build` would write (empty list: in sync)."""
    tree = tree or Tree()
    problems = []
    expected = tree.expected()
    for name, text in expected.items():
        target = tree.notebooks / name
        if not target.exists():
            problems.append(f"notebooks/{name} is missing")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"notebooks/{name} differs from what solutions/{name} generates")
    for extra in sorted(tree.notebooks.glob("*.ipynb")):
        if extra.name not in expected:
            problems.append(f"notebooks/{extra.name} has no source solutions/{extra.name}")
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


CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([\w.-]+)["']""")
VERDICT_LINE = re.compile(r"^(PASS|FAIL|TODO) ([\w.-]+): (.*)$")


def grade(path: Path, timeout: int = 600) -> list[tuple[str, str, str]]:
    """Execute a learner's notebook; one (exercise, PASS/FAIL/TODO, message) row per check cell."""
    nb = execute(path, timeout, allow_errors=True)
    rows = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for name in CHECK_CALL.findall(cell.source):
            verdict = None
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    for line in out.get("text", "").splitlines():
                        m = VERDICT_LINE.match(line)
                        if m and m.group(2) == name:
                            verdict = (name, m.group(1), m.group(3))
                elif out.get("output_type") == "error" and verdict is None:
                    verdict = (name, "FAIL", f"the check cell raised {out.get('ename')}: {out.get('evalue')}")
            rows.append(verdict or (name, "FAIL", "the check cell printed no verdict (was it edited?)"))
    return rows


def format_table(rows: list[tuple[str, str, str]], width: int = 100) -> str:
    if not rows:
        return "no exercises found (no check cells calling check(\"name\", ...))"
    w = max(len("exercise"), *(len(r[0]) for r in rows))
    status = {"PASS": "pass", "FAIL": "fail", "TODO": "not attempted"}
    lines = [f"{'exercise':<{w}}  {'result':<13}  message", f"{'-' * w}  {'-' * 13}  {'-' * 7}"]
    for name, st, msg in rows:
        msg = msg if len(msg) <= width else msg[: width - 3] + "..."
        lines.append(f"{name:<{w}}  {status[st]:<13}  {msg}")
    n_pass = sum(r[1] == "PASS" for r in rows)
    lines.append(f"\n{n_pass}/{len(rows)} exercises pass")
    return "\n".join(lines)
