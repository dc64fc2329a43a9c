"""The learner's workspace: work/, a folder no course command overwrites.

notebooks/ is generated from solutions/ and tracked by git, so `build` and `git pull` change it. Learners work in
work/ instead, which git ignores:

    python -m toyenv.course workspace        # copy each notebook missing from work/ (`make lab` runs this)
    python -m toyenv.course fresh NAME       # a fresh copy of one notebook; yours goes to work/backups/ first

work/.copied.json records the hash of the notebooks/ version each work/ copy came from, so that `workspace` can
say which notebooks the course has updated since; it never replaces a learner's file to apply an update.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .notebooks import Tree, backup, digest

RECORD = ".copied.json"


def _record(tree: Tree) -> dict[str, str]:
    try:
        record = json.loads((tree.work / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _save_record(tree: Tree, record: dict[str, str]) -> None:
    (tree.work / RECORD).write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n", encoding="utf-8")


def _copy(tree: Tree, name: str, record: dict[str, str]) -> None:
    source = tree.notebooks / name
    shutil.copyfile(source, tree.work / name)
    record[name] = digest(source.read_text(encoding="utf-8"))


def workspace(tree: Tree | None = None) -> list[str]:
    """Copy into work/ every notebook it lacks; never touch one it has. Returns what was done and what is new."""
    tree = tree or Tree()
    tree.work.mkdir(parents=True, exist_ok=True)
    record, lines, updated = _record(tree), [], []
    for source in sorted(tree.notebooks.glob("*.ipynb")):
        name = source.name
        if not (tree.work / name).exists():
            _copy(tree, name, record)
            lines.append(f"copied notebooks/{name} to work/{name}")
        elif name in record and record[name] != digest(source.read_text(encoding="utf-8")):
            updated.append(name)
    _save_record(tree, record)
    if updated:
        lines.append("The course has updated these since you copied them; your copies are untouched. "
                     "`python -m toyenv.course fresh NAME` gets the new version and keeps yours in work/backups/:")
        lines += [f"  {name}" for name in updated]
    return lines


def fresh(name: str, tree: Tree | None = None) -> list[str]:
    """Replace work/NAME with a fresh copy of notebooks/NAME, after copying the learner's file to work/backups/."""
    tree = tree or Tree()
    name = name if name.endswith(".ipynb") else name + ".ipynb"
    if not (tree.notebooks / name).is_file():
        known = ", ".join(p.stem for p in sorted(tree.notebooks.glob("*.ipynb")))
        raise FileNotFoundError(f"no notebook named {Path(name).stem!r} in notebooks/; the course has: {known}")
    tree.work.mkdir(parents=True, exist_ok=True)
    lines, target = [], tree.work / name
    if target.exists():
        lines.append(f"kept your work/{name} as {backup(target, tree.backups).relative_to(tree.work.parent)}")
    record = _record(tree)
    _copy(tree, name, record)
    _save_record(tree, record)
    return lines + [f"copied notebooks/{name} to work/{name}"]
