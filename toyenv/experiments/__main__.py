"""Rebuild shipped studies into a scratch folder and compare them with the shipped files, number by number.

    python -m toyenv.experiments verify [STUDY ...]     (default: every study; about 2¼ hours on 2 cores)

Each study is rebuilt by its own `main` (`--out` pointing into a scratch folder, $TMPDIR/toyenv-verify/<study>/,
kept afterwards so that a study that differs can be inspected, or shipped if the change was meant) and compared with
its shipped file through `twins.compare` with no tolerance at all (rtol = atol = 0; wall times are skipped), and a
model's weights tensor by tensor. On the machine that built a study (`same_machine`) the verdict must be
"identical"; on another CPU the last bits differ and the verdict says by how much. Exit status 0 only when every
study is identical.
"""
from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from .common import machine, same_machine
from .twins import compare

# study -> the files its `main(["--out", ...])` writes: JSON studies write one file; the two models write a
# checkpoint and its metrics (base_model's --out is a folder).
STUDIES = {
    "base_model": ("base.pt", "base_metrics.json"),
    "proxy_reward": ("proxy_rm.pt", "proxy_rm_metrics.json"),
    "kl_penalty": ("kl_penalty.json",),
    "kl_frontier": ("kl_frontier.json",),
    "kl_placements": ("kl_placements.json",),
    "policy_gradients": ("policy_gradients.json",),
    "preference": ("preference_study.json",),
    "ptx": ("ptx_sweep.json",),
    "razor": ("razor.json",),
    "razor_classifier": ("razor_classifier.json",),
    "sft_vs_rl": ("sft_vs_rl.json",),
}


def _weights_verdict(rebuilt: Path, shipped: Path) -> tuple[bool, str]:
    """Are two checkpoint files' tensors bit-identical? (The zip bytes also hold the build's wall time.)"""
    a = torch.load(rebuilt, map_location="cpu", weights_only=True)
    b = torch.load(shipped, map_location="cpu", weights_only=True)
    sa, sb = a.get("state_dict", a.get("model")), b.get("state_dict", b.get("model"))
    if not isinstance(sa, dict) or not isinstance(sb, dict) or sa.keys() != sb.keys():
        return False, f"{shipped.name}: the stored tensors have different names"
    differ = {k: float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if not torch.equal(sa[k], sb[k])}
    if differ:
        worst = max(differ, key=differ.get)
        return False, (f"{shipped.name}: {len(differ)}/{len(sa)} tensors differ, the largest difference "
                       f"{differ[worst]:.2g} in {worst}")
    return True, f"{shipped.name}: identical ({len(sa)} tensors, every weight equal)"


def verify(name: str, data_dir: Path | None = None) -> bool:
    """Rebuild study `name` into a temporary folder and print how it compares with the shipped files."""
    from ..checkpoint import DATA_DIR
    data_dir = Path(data_dir or DATA_DIR)
    module = importlib.import_module(f"{__package__}.{name}")
    files = STUDIES[name]
    scratch = Path(tempfile.gettempdir()) / "toyenv-verify" / name
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    out = scratch if name == "base_model" else scratch / files[0]
    t0 = time.perf_counter()
    module.main(["--out", str(out)])
    print(f"[{name}] rebuilt in {time.perf_counter() - t0:.0f} s, into {scratch}")
    ok = True
    for f in files:
        rebuilt, shipped = scratch / f, data_dir / f
        if f.endswith(".pt"):
            same, line = _weights_verdict(rebuilt, shipped)
        else:
            new, old = json.loads(rebuilt.read_text()), json.loads(shipped.read_text())
            c = compare(new, old, name=f, rtol=0.0, atol=0.0, ignore=("seconds",))
            same, line = c.identical, str(c)
            if "machine" not in old:
                line += "\n  (the file does not record the CPU that built it: it may come from another machine)"
            elif not same_machine(old):
                line += f"\n  (built on {old['machine']!r}; this is {machine()!r}: last bits may differ)"
        ok &= same
        print(f"[{name}] {line}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toyenv.experiments", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="rebuild studies into a scratch folder and compare them with the shipped ones")
    v.add_argument("studies", nargs="*", metavar="STUDY", help=f"any of {', '.join(STUDIES)} (default: all)")
    args = ap.parse_args(argv)
    unknown = [s for s in args.studies if s not in STUDIES]
    if unknown:
        ap.error(f"unknown study {', '.join(unknown)}; choose from {', '.join(STUDIES)}")
    names = args.studies or list(STUDIES)
    results = {name: verify(name) for name in names}
    print("\n".join(f"{name:<18} {'identical' if ok else 'DIFFERENT'}" for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
