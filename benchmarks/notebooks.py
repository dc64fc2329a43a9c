"""Wall time of executing notebooks one at a time, alone on the machine, as a learner runs them: `jupyter nbconvert
--to notebook --execute`. (CI runs two at a time, `make test`.)

Each notebook runs in a fresh kernel from its own folder (nbconvert's default), and the executed copy goes to a
temporary folder, so the notebooks themselves are never rewritten. The time includes the kernel's start-up.
`python -m benchmarks.run --notebooks` puts the numbers in its table.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class NotebookRun:
    name: str
    seconds: float
    error: str | None = None  # the last line nbconvert printed, when it failed

    @property
    def ok(self) -> bool:
        return self.error is None


def run_notebook(path: Path, timeout: int = 900, env: dict[str, str] | None = None) -> NotebookRun:
    """Execute one notebook; `timeout` is per cell, as in CI's --ExecutePreprocessor.timeout."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        # sys.executable -m jupyter: the kernel and nbconvert of this environment, whatever is on PATH.
        cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
               f"--ExecutePreprocessor.timeout={timeout}", "--output", str(Path(tmp) / "x.ipynb"), str(path)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
        seconds = time.perf_counter() - t0
    error = None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        error = (lines[-1] if lines else f"nbconvert exited with {proc.returncode}")
        error = ANSI.sub("", error)[:200]  # tracebacks come colored
    return NotebookRun(path.name, seconds, error)


def run_notebooks(paths: list[Path], timeout: int = 900, env: dict[str, str] | None = None,
                  progress: bool = True) -> list[NotebookRun]:
    runs = []
    for i, path in enumerate(paths, 1):
        if progress:
            print(f"  notebook {i}/{len(paths)}: {Path(path).name}", file=sys.stderr, flush=True)
        runs.append(run_notebook(path, timeout, env))
    return runs
