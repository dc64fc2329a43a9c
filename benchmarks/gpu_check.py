"""`make gpu-check`: the course's single-GPU path, run for real.

With a CUDA GPU: the unit tests (tests/test_gpu.py among them) with TOYENV_DEVICE=cuda, then every notebook in
solutions/ executed one at a time in a fresh kernel, with the model on the GPU, and a table of each notebook's wall
time.
Without one it says so and exits 0, so the target is safe to call anywhere.

    python -m benchmarks.gpu_check [--skip-tests] [--notebooks NAME ...]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from .notebooks import run_notebooks

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-tests", action="store_true", help="only the notebooks")
    ap.add_argument("--notebooks", nargs="*", help="names in solutions/ (default: all)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU visible to torch (torch.cuda.is_available() is False); skipped.")
        return 0
    env = {"TOYENV_DEVICE": "cuda"}
    print(f"gpu-check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}",
          flush=True)
    failed = False
    if not args.skip_tests:
        # Unit tests only: the notebooks run below, one by one, with their times.
        proc = subprocess.run([sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"], cwd=ROOT,
                              env={**os.environ, **env})
        failed |= proc.returncode != 0
    names = args.notebooks or sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    paths = [ROOT / "solutions" / (n if n.endswith(".ipynb") else n + ".ipynb") for n in names]
    runs = run_notebooks(paths, env=env)
    print(f"\n{'notebook (model on the GPU)':<44} {'seconds':>8}  result")
    for r in runs:
        print(f"{r.name:<44} {r.seconds:8.1f}  {'ok' if r.ok else 'FAILED: ' + r.error}")
    print(f"{'all ' + str(len(runs)) + ' notebooks':<44} {sum(r.seconds for r in runs):8.1f}")
    failed |= not all(r.ok for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
