"""Scripts that build the course's shipped artefacts and multi-run studies (run with `python -m`)."""
from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

import torch


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
