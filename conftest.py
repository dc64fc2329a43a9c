"""How pytest runs the course's notebooks (`make test`, `make notebooks`).

Each learner notebook in notebooks/ runs once, in one kernel, as `toyenv.course.notebooks.ci_notebook` makes it: the
learner's cells with their stubs, compared with the outputs solutions/ stores for the NBVAL_CHECK_OUTPUT cells, and
after each check cell a cell that runs the exercise's solution and checks it. Only the marked cells are compared
(nbval's --nbval-lax); the others must run without error. The unit tests' conftest.py is in tests/.

This collector is used when neither --nbval nor --nbval-lax is given; with either, nbval runs the files as they are
(e.g. `pytest --nbval-lax solutions/` runs the complete notebooks and compares their stored outputs).
"""
from collections import defaultdict
from pathlib import Path

import nbformat
from nbval.plugin import IPyNbCell, IPyNbFile, find_comment_markers, find_metadata_tags

from toyenv.course import notebooks as nbs

ROOT = Path(__file__).resolve().parent


class LearnerNotebook(IPyNbFile):
    """nbval's collector for one notebooks/ file, run as `ci_notebook` makes it. Items are named after the learner's
    code cells ("Cell 4"); the cell added after check cell N is "Cell N solution"."""

    def collect(self):
        path = Path(self.fspath)
        solution = nbformat.read(ROOT / "solutions" / path.name, as_version=4)
        self.nb = nbs.ci_notebook(solution, nbformat.read(path, as_version=4), path.name)
        n = -1
        for cell in self.nb.cells:
            if cell.cell_type != "code":
                continue
            options = defaultdict(bool, find_metadata_tags(cell.metadata))
            options.update(find_comment_markers(cell.source))
            options.setdefault("check", False)  # as --nbval-lax: only the NBVAL_CHECK_OUTPUT cells are compared
            added = cell.get("id", "").startswith("ci-solution-")
            n += 0 if added else 1
            yield IPyNbCell.from_parent(self, name=f"Cell {n}" + (" solution" if added else ""), cell_num=n,
                                        cell=cell, options=options)


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if (file_path.suffix == ".ipynb" and file_path.parent == ROOT / "notebooks"
            and not (getattr(opt, "nbval", False) or getattr(opt, "nbval_lax", False))):
        return LearnerNotebook.from_parent(parent, path=file_path)
