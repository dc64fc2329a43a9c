"""The course's shipped studies, one module each, all with the same entry points (see `common.py`):
`PATH`, `run`, `study`, `load` and `main` (`python -m toyenv.experiments.<study>` rebuilds one)."""
from .common import cpu, machine, same_machine, yes_no

__all__ = ["cpu", "machine", "same_machine", "yes_no"]
