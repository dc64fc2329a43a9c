"""tests/mutation_record.py: mutmut's verdicts survive a fresh clone, and only where the function is unchanged."""

import json

import pytest

import mutation_record


def _meta(exit_codes, hashes):
    return {"exit_code_by_key": exit_codes, "hash_by_function_name": hashes, "type_check_error_by_key": {},
            "durations_by_key": {}, "estimated_durations_by_key": {}}


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mutation_record, "RECORD", tmp_path / "record.json")
    return tmp_path


def _write_meta(workdir, source, meta):
    path = workdir / "mutants" / (source + ".meta")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta))


def _read_meta(workdir, source):
    return json.loads((workdir / "mutants" / (source + ".meta")).read_text())


def test_save_writes_each_functions_hash_and_verdicts_in_mutant_order(workdir):
    _write_meta(workdir, "pkg/kl.py", _meta(
        {"pkg.kl.x_k1__mutmut_2": 0, "pkg.kl.x_k1__mutmut_1": 1, "pkg.kl.x_k1__mutmut_3": None,
         "pkg.kl.xǁEnvǁstep__mutmut_1": -24},
        {"x_k1": "aaa", "xǁEnvǁstep": "bbb"}))
    _write_meta(workdir, "pkg/empty.py", _meta({}, {}))  # a file with nothing to mutate is left out
    mutation_record.save()
    record = json.loads((workdir / "record.json").read_text(encoding="utf-8"))
    assert record == {"pkg/kl.py": {"x_k1": {"hash": "aaa", "exit_codes": [1, 0, None]},
                                    "xǁEnvǁstep": {"hash": "bbb", "exit_codes": [-24]}}}


def test_restore_fills_a_fresh_clone_and_skips_changed_functions(workdir):
    (workdir / "record.json").write_text(json.dumps(
        {"pkg/kl.py": {"x_k1": {"hash": "aaa", "exit_codes": [1, None, 0]},
                       "x_k2": {"hash": "old", "exit_codes": [1]}}}))
    mutation_record.restore()  # no mutants/ yet: a fresh clone
    meta = _read_meta(workdir, "pkg/kl.py")
    assert meta["exit_code_by_key"] == {"pkg.kl.x_k1__mutmut_1": 1, "pkg.kl.x_k1__mutmut_3": 0,
                                        "pkg.kl.x_k2__mutmut_1": 1}
    assert meta["hash_by_function_name"] == {"x_k1": "aaa", "x_k2": "old"}

    # mutants/ already generated, where x_k2 has changed since the record was saved: its mutants stay unchecked,
    # and a verdict mutants/ already holds is never overwritten by the record's.
    _write_meta(workdir, "pkg/kl.py", _meta(
        {"pkg.kl.x_k1__mutmut_1": None, "pkg.kl.x_k1__mutmut_2": None, "pkg.kl.x_k1__mutmut_3": 1,
         "pkg.kl.x_k2__mutmut_1": None},
        {"x_k1": "aaa", "x_k2": "new"}))
    mutation_record.restore()
    assert _read_meta(workdir, "pkg/kl.py")["exit_code_by_key"] == {
        "pkg.kl.x_k1__mutmut_1": 1, "pkg.kl.x_k1__mutmut_2": None, "pkg.kl.x_k1__mutmut_3": 1,
        "pkg.kl.x_k2__mutmut_1": None}


def test_save_then_restore_round_trips(workdir):
    verdicts = {"pkg.envs.nav.x_parse__mutmut_1": 1, "pkg.envs.nav.x_parse__mutmut_2": 0,
                "pkg.envs.nav.x_parse__mutmut_3": 33}
    _write_meta(workdir, "pkg/envs/nav.py", _meta(verdicts, {"x_parse": "h1"}))
    mutation_record.save()
    (workdir / "mutants" / "pkg" / "envs" / "nav.py.meta").unlink()
    mutation_record.restore()
    assert _read_meta(workdir, "pkg/envs/nav.py")["exit_code_by_key"] == verdicts


def test_save_refuses_to_overwrite_the_record_with_nothing(workdir):
    (workdir / "record.json").write_text("{}")
    with pytest.raises(SystemExit, match="mutants/ has no results"):
        mutation_record.save()
    assert (workdir / "record.json").read_text() == "{}"


def test_score_counts_timeouts_as_caught_and_leaves_out_unchecked_and_untested(workdir, capsys):
    pytest.importorskip("mutmut")
    _write_meta(workdir, "pkg/kl.py", _meta(
        {"pkg.kl.x_a__mutmut_1": 1, "pkg.kl.x_a__mutmut_2": 1, "pkg.kl.x_a__mutmut_3": -24,
         "pkg.kl.x_a__mutmut_4": 0, "pkg.kl.x_a__mutmut_5": 33, "pkg.kl.x_a__mutmut_6": None},
        {"x_a": "h"}))
    mutation_record.score()
    lines = capsys.readouterr().out.splitlines()
    # 2 killed + 1 timeout caught, 1 survived: 3 / 4.
    assert lines[1].split() == ["pkg/kl.py", "6", "2", "1", "0", "1", "1", "1", "75.0%"]
    assert lines[2].split()[0] == "all" and lines[2].split()[-1] == "75.0%"
