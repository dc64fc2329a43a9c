"""python -m toyenv.course {workspace,fresh,build,check,grade,refresh}"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import notebooks as nbs
from . import workspace as ws


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m toyenv.course", description="Course tooling for rlhf-reg-course.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("workspace", help="copy into work/ each notebook it lacks (never overwrites); `make lab` runs it")
    f = sub.add_parser("fresh", help="a fresh copy of one notebook in work/; yours is kept in work/backups/")
    f.add_argument("name", help="notebook name, e.g. 02_kl_estimators")
    b = sub.add_parser("build", help="generate notebooks/ from solutions/")
    b.add_argument("--force", action="store_true",
                   help="overwrite notebooks edited since the last build (each is copied to work/backups/ first)")
    sub.add_parser("check", help="fail if notebooks/ differs from what build would write")
    g = sub.add_parser("grade", help="execute a learner's notebook and print one row per exercise")
    g.add_argument("notebook", type=Path)
    g.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    r = sub.add_parser("refresh", help="re-run solution notebooks, store the outputs nbval checks, then build")
    r.add_argument("names", nargs="*", help="notebook names (default: all in solutions/)")
    args = ap.parse_args(argv)

    tree = nbs.Tree()
    try:
        if args.cmd == "workspace":
            print("\n".join(ws.workspace(tree)) or f"work/ has all {len(tree.sources())} notebooks")
        elif args.cmd == "fresh":
            print("\n".join(ws.fresh(args.name, tree)))
        elif args.cmd == "build":
            changed = nbs.build(tree, force=args.force)
            print("\n".join(changed) if changed else "notebooks/ already up to date")
        elif args.cmd == "check":
            problems = nbs.check(tree)
            if problems:
                print("notebooks/ is out of sync with solutions/:")
                print("\n".join("  " + p for p in problems))
                print("Run `python -m toyenv.course build`; it refuses to overwrite a notebook edited by hand.")
                return 1
            print(f"notebooks/ matches solutions/ ({len(tree.sources())} notebooks)")
        elif args.cmd == "grade":
            if not args.notebook.is_file():
                print(f"no such notebook: {args.notebook}", file=sys.stderr)
                return 2
            print(nbs.format_table(nbs.grade(args.notebook.resolve(), args.timeout)))
        elif args.cmd == "refresh":
            paths = [tree.solutions / (n if n.endswith(".ipynb") else n + ".ipynb") for n in args.names] or tree.sources()
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                print(f"no such solution notebook(s): {', '.join(missing)}", file=sys.stderr)
                return 2
            for p in paths:
                print(f"running {p.name} ...", flush=True)
                nbs.refresh([p])
            print("\n".join(nbs.build(tree)) or "notebooks/ already up to date")
    except nbs.MarkerError as e:
        print(f"solution markers: {e}", file=sys.stderr)
        return 2
    except nbs.EditedError as e:
        print(f"build refused: {e}", file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
