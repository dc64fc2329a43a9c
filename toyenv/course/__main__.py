"""python -m toyenv.course {workspace,fresh,build,check,grade,nbgrader,refresh}"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import grading
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
    g = sub.add_parser("grade", help="grade a learner's notebook (or a folder of them) with the course's own checks; "
                                     "exit 0 only if every exercise passes")
    g.add_argument("path", type=Path, help="a submitted notebook, or a folder of them (then give --csv)")
    g.add_argument("--timeout", type=float, default=1800, help="seconds for a whole notebook (default 1800)")
    g.add_argument("--source", help="the course notebook it answers, e.g. 02_kl_estimators (default: from the "
                                    "notebook's metadata, else its file name)")
    g.add_argument("--csv", type=Path, help="with a folder: the gradebook to write (one row per student and notebook; "
                                            "feedback files go beside it)")
    n = sub.add_parser("nbgrader", help="write an nbgrader course folder (nbgrader_config.py, source/) from solutions/")
    n.add_argument("names", nargs="*", help="notebook names (default: all in solutions/)")
    n.add_argument("--dest", type=Path, default=nbs.ROOT / "nbgrader", help="the folder (default: nbgrader/)")
    n.add_argument("--force", action="store_true",
                   help="overwrite files there that differ (edited by hand), each copied to backups/ first")
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
            return _grade(args, tree)
        elif args.cmd == "nbgrader":
            written = nbs.export_nbgrader(args.dest, args.names, tree, force=args.force)
            print("\n".join(written) if written else f"{args.dest} is up to date")
            first = (args.names or [tree.sources()[0].stem])[0].removesuffix(".ipynb")
            print(f"next: cd {args.dest} && nbgrader generate_assignment {first} (see the README, 'For teachers')")
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
    except (FileNotFoundError, FileExistsError) as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def _grade(args, tree: nbs.Tree) -> int:
    if args.timeout <= 0:
        print(f"--timeout must be > 0 seconds, got {args.timeout:g}", file=sys.stderr)
        return 2
    source = None
    if args.source:
        source = tree.solutions / (args.source if args.source.endswith(".ipynb") else args.source + ".ipynb")
        if not source.is_file():
            print(f"--source: no course notebook {source.name} in {tree.solutions}", file=sys.stderr)
            return 2
    if args.path.is_dir():
        if args.csv is None:
            print("grading a folder needs --csv GRADEBOOK.csv", file=sys.stderr)
            return 2
        results = grading.gradebook(args.path, args.csv, args.timeout, solutions=tree.solutions)
        for student, report in results:
            print(f"{student:<20} {report.submission.name:<40} {report.passed}/{len(report.rows)}"
                  + (f"  (stopped: {report.stopped})" if report.stopped else ""))
        print(f"wrote {args.csv} and {args.csv.stem}_feedback/ ({len(results)} submissions)")
        return 0 if results and all(r.all_pass for _, r in results) else 1
    if not args.path.is_file():
        print(f"no such notebook or folder: {args.path}", file=sys.stderr)
        return 2
    try:
        report = grading.grade(args.path.resolve(), args.timeout, source=source, solutions=tree.solutions)
    except grading.GradeError as e:
        print(e, file=sys.stderr)
        return 2
    print(grading.format_table(report))
    return 0 if report.all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
