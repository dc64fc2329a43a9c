"""The mutation-testing record: mutmut's verdicts, kept in git so that a fresh clone resumes a run (`make mutants`).

A whole mutmut run over the course's ~6,800 mutants takes hours on 2 cores, longer than one sitting; mutmut keeps
its results in mutants/, which git ignores and a fresh clone does not have. This script copies the verdicts between
mutants/ and tests/mutation_record.json:

    python tests/mutation_record.py restore   # before `mutmut run`: fill mutants/ from the record
    python tests/mutation_record.py save      # after it: write mutants/' verdicts into the record
    python tests/mutation_record.py score     # the score, per file and in all, from mutants/

Each verdict is stored with the hash mutmut computed of its function's source. mutmut regenerates the mutants of a
fresh clone and keeps a restored verdict only where that hash is unchanged, so editing a function still resets its
mutants. A verdict is not reset when only tests change: tests that get stronger can turn a survivor into a kill
(rerun it by name), never a kill into a survivor.
"""

import argparse
import glob
import json
import os
import sys
from pathlib import Path

RECORD = Path(__file__).with_name("mutation_record.json")
MUTANTS = Path("mutants")
# What mutmut's exit codes mean, as `mutmut results` names them; a timeout (an endless loop) and a kill by the memory
# limit ("segfault") count as caught.
CAUGHT = ("killed", "timeout", "segfault", "caught by type check")


def _meta_paths():
    return sorted(glob.glob(str(MUTANTS / "**" / "*.py.meta"), recursive=True))


def _source_of(meta_path):
    return os.path.relpath(meta_path, MUTANTS)[: -len(".meta")]


def _function_of(key, module):
    stem, _, number = key.rpartition("__mutmut_")
    if not stem.startswith(module + "."):
        raise ValueError(f"mutant {key!r} is not in module {module!r}")
    return stem[len(module) + 1 :], int(number)


def _module_of(source):
    return source[: -len(".py")].replace("/", ".")


def save():
    """mutants/ -> the record: per file, per function, its hash and the exit code of each of its mutants, in order."""
    files = {}
    for meta_path in _meta_paths():
        source = _source_of(meta_path)
        meta = json.loads(Path(meta_path).read_text())
        functions = {name: {"hash": h, "exit_codes": []} for name, h in sorted(meta["hash_by_function_name"].items())}
        module = _module_of(source)
        for key, code in meta["exit_code_by_key"].items():
            name, number = _function_of(key, module)
            if name not in functions:
                continue  # a mutant of a function mutmut no longer hashes: regenerated next run anyway
            codes = functions[name]["exit_codes"]
            codes.extend([None] * (number - len(codes)))
            codes[number - 1] = code
        functions = {name: f for name, f in functions.items() if f["exit_codes"]}
        if functions:
            files[source] = functions
    if not files:
        sys.exit("mutation_record save: mutants/ has no results (run `make mutants` first); the record is unchanged")
    # One line per function, so that a diff of the record shows which functions' verdicts changed.
    blocks = [f"  {json.dumps(source)}: {{\n"
              + ",\n".join(f"    {json.dumps(name, ensure_ascii=False)}: {json.dumps(f)}"
                           for name, f in sorted(fs.items()))
              + "\n  }" for source, fs in sorted(files.items())]
    text = "{\n" + ",\n".join(blocks) + "\n}"
    RECORD.write_text(text + "\n", encoding="utf-8")
    total = sum(len(f["exit_codes"]) for functions in files.values() for f in functions.values())
    checked = sum(c is not None for fs in files.values() for f in fs.values() for c in f["exit_codes"])
    print(f"mutation record: {checked} of {total} mutants' verdicts saved to {RECORD}")


def restore():
    """The record -> mutants/: a verdict is filled in where mutants/ has none; mutmut then drops it if the hash moved."""
    if not RECORD.exists():
        print(f"mutation record: no {RECORD}; mutmut starts from nothing")
        return
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    filled = 0
    for source, functions in record.items():
        meta_path = MUTANTS / (source + ".meta")
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
        else:
            meta = {"exit_code_by_key": {}, "hash_by_function_name": {}, "type_check_error_by_key": {},
                    "durations_by_key": {}, "estimated_durations_by_key": {}}
        module = _module_of(source)
        for name, f in functions.items():
            if meta["hash_by_function_name"].setdefault(name, f["hash"]) != f["hash"]:
                continue  # the function changed since the record was saved: its mutants are new
            for number, code in enumerate(f["exit_codes"], start=1):
                key = f"{module}.{name}__mutmut_{number}"
                if code is not None and meta["exit_code_by_key"].get(key) is None:
                    meta["exit_code_by_key"][key] = code
                    filled += 1
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=4))
    print(f"mutation record: {filled} verdicts restored into {MUTANTS}/ from {RECORD}")


def score():
    """Per file and in all: caught (killed, timed out, memory-killed) over the checked mutants a test reaches."""
    from mutmut.stats import status_by_exit_code

    columns = ["killed", "timeout", "segfault", "survived", "no tests", "not checked"]
    rows = []
    for meta_path in _meta_paths():
        codes = json.loads(Path(meta_path).read_text())["exit_code_by_key"].values()
        if codes:
            rows.append((_source_of(meta_path), [status_by_exit_code[c] for c in codes]))
    if not rows:
        sys.exit("mutation_record score: mutants/ has no results; run `make mutants` first")
    rows.append(("all", [s for _, statuses in rows for s in statuses]))
    print(f"{'file':<34} {'mutants':>7} " + " ".join(f"{c:>11}" for c in columns) + "  score")
    for name, statuses in rows:
        caught = sum(s in CAUGHT for s in statuses)
        reached = caught + statuses.count("survived")
        pct = f"{100 * caught / reached:.1f}%" if reached else "-"
        print(f"{name:<34} {len(statuses):>7} " + " ".join(f"{statuses.count(c):>11}" for c in columns) + f"  {pct}")
    print("score: caught (killed, timed out, or killed for memory) / (caught + survived), over the checked mutants")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["save", "restore", "score"])
    {"save": save, "restore": restore, "score": score}[parser.parse_args(argv).command]()


if __name__ == "__main__":
    main()
