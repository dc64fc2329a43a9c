"""What every shipped study shares: where its file lives, how it is written and read, and which machine built it.

Every study module (`kl_penalty`, `policy_gradients`, `preference`, `ptx`, `razor`, `sft_vs_rl`, `proxy_reward`)
has the same entry points:

    PATH                 the shipped file, in the one data folder (`toyenv.checkpoint.DATA_DIR`)
    run(...)             one run, live, as a notebook calls it
    study(...)           every run of the study, as a dict (`main` writes it to PATH)
    load(path=PATH)      the shipped study
    main(argv)           `python -m toyenv.experiments.<study>` rebuilds the file

A live run is compared with its shipped twin only through `toyenv.experiments.twins.compare`, with a tolerance
measured across machines; bit-exact equality is asserted only where `same_machine(study)` is true.
"""
from __future__ import annotations

import json
import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

from ..checkpoint import DATA_DIR

__all__ = ["DATA_DIR", "save", "load", "cpu", "machine", "same_machine", "yes_no"]


def save(study: dict, path: Path) -> Path:
    """Write `study` as indented JSON (one space, a final newline) to `path`, through a temporary file, so that an
    interrupted rebuild never leaves half a study behind."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(study, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load(path: Path) -> dict:
    """The study stored at `path`, or a FileNotFoundError that says how to rebuild it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the study {path} is missing; rebuild it with "
                                f"`python -m toyenv.experiments.<study>` (see that module's docstring)")
    return json.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def cpu() -> str:
    """The CPU model and the kernels torch picks on it, e.g. "AMD EPYC, AVX512" or "Intel(R) Xeon(R) ..., AVX512,
    AMX". Two CPUs with the same instruction set can still round differently (AMX tiles, cache-dependent blocking),
    so the model name is part of what makes a run bit-identical."""
    model, flags = "", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    parts = [model, torch.backends.cpu.get_cpu_capability()]
    if "amx_tile" in flags:
        parts.append("AMX")
    return ", ".join(parts)


def machine() -> str:
    """What a shipped study records about the machine that built it: its numbers are only bit-identical on the same
    CPU model, thread count and torch build (`toyenv.experiments.twins` compares with a tolerance elsewhere)."""
    return f"{cpu()} ({platform.machine()}), {torch.get_num_threads()} threads, torch {torch.__version__}"


def same_machine(study: dict) -> bool:
    """Was `study` built on a machine like this one (same CPU model, threads and torch), so that a live run must
    reproduce it bit for bit? Studies built before the CPU model was recorded never count as the same machine."""
    return study.get("machine") == machine()


def yes_no(ok: bool) -> str:
    """The word a verdict line ends with ("... on 3/3 seeds: yes"), the same on every CPU."""
    return "yes" if ok else "no"
