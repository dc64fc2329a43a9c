"""Every shipped study in toyenv/data/ has exactly the fields its code writes today.

Each study's own entry point runs here on a tiny version of its experiment (a step or two, a few evaluation deals),
and the nested field names of its output, after the same JSON round trip the scripts do, must equal those of the
shipped file. A field the code writes and the file lacks (as `writes_ten` once was in sft_vs_rl.json), or one the
file keeps from older code, fails the test: rebuild that study with `python -m toyenv.experiments.<study>`.
"""
import dataclasses
import functools
import json

import pytest

from toyenv.experiments import kl_frontier as KF
from toyenv.experiments import kl_penalty as K
from toyenv.experiments import kl_placements as KP
from toyenv.experiments import policy_gradients as PG
from toyenv.experiments import preference as P
from toyenv.experiments import ptx
from toyenv.experiments import razor as R
from toyenv.experiments import razor_classifier as RC
from toyenv.experiments import sft_vs_rl as S
from toyenv.trainers.dpo import PreferenceConfig
from toyenv.trainers.reward_model import RewardConfig

LEAF = "."


def fields(x):
    """The nested field names of a JSON value: dicts by key, lists merged over their elements, other values a leaf."""
    if isinstance(x, dict):
        return {k: fields(v) for k, v in x.items()}
    if isinstance(x, list):
        merged = LEAF
        for v in x:
            merged = _merge(merged, fields(v))
        return [merged]
    return LEAF


def _merge(a, b):
    if a == LEAF:
        return b
    if b == LEAF:
        return a
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a.get(k, LEAF), b.get(k, LEAF)) for k in a.keys() | b.keys()}
    if isinstance(a, list) and isinstance(b, list):
        return [_merge(a[0], b[0])]
    raise AssertionError(f"one field holds both {a!r} and {b!r}")


def test_fields_by_hand():
    assert fields({"a": 1, "b": [{"x": 1}, {"y": [2, 3]}], "c": [[0, {"k": 1}]]}) == \
        {"a": LEAF, "b": [{"x": LEAF, "y": [LEAF]}], "c": [[{"k": LEAF}]]}
    assert fields({"a": [1]}) != fields({"a": [1], "b": 2})
    assert fields({"a": [{"x": 1}]}) != fields({"a": [{"x": 1, "z": 0}]})


def assert_same_fields(written: dict, shipped_path):
    written = json.loads(json.dumps(written))  # as the scripts write it: tuples become lists, None keys "null"
    shipped = json.loads(shipped_path.read_text())
    want, got = fields(shipped), fields(written)
    assert got == want, _diff(got, want)


def _diff(got, want, where="") -> str:
    if isinstance(got, dict) and isinstance(want, dict):
        extra, missing = sorted(got.keys() - want.keys()), sorted(want.keys() - got.keys())
        if extra or missing:
            return f"at {where or 'top level'}: the code writes {extra} that the file lacks; the file has {missing} " \
                   f"that the code no longer writes"
        return next((_diff(got[k], want[k], f"{where}[{k!r}]") for k in got if got[k] != want[k]), "")
    if isinstance(got, list) and isinstance(want, list):
        return _diff(got[0], want[0], where + "[*]")
    return f"at {where}: {got!r} vs {want!r}"


def test_kl_penalty():
    config = dataclasses.replace(K.CONFIG, max_steps=1, eval_every=1, num_prompts=2, num_generations=2, max_new_tokens=4)
    assert_same_fields(K.study((K.RUNS[0], K.RUNS[-1]), config, progress=False), K.PATH)


def test_kl_frontier():
    config = dataclasses.replace(KF.CONFIG, max_steps=1, eval_every=1, num_prompts=2, num_generations=2,
                                 max_new_tokens=4)
    assert_same_fields(KF.study(betas=(0.0, 1.0), seeds=(0,), config=config, progress=False), KF.PATH)


def test_kl_placements():
    config = dataclasses.replace(KP.CONFIG, max_steps=2, num_prompts=2, num_generations=2, max_new_tokens=4)
    assert_same_fields(KP.study(KP.PLACEMENTS[:1] + KP.PLACEMENTS[-1:], seeds=(0,), config=config, progress=False),
                       KP.PATH)


def test_policy_gradients():
    config = dataclasses.replace(PG.CONFIG, max_steps=1, num_prompts=2, num_generations=2, max_new_tokens=4)
    assert_same_fields(PG.study(config=config, eval_episodes=4, progress=False), PG.PATH)


def test_ptx(monkeypatch):
    config = dataclasses.replace(ptx.CONFIG, max_steps=2, num_prompts=2, num_generations=2, max_new_tokens=4,
                                 ptx_batch_size=2, eval_every=1)
    held_out = ptx.held_out_data()[:16]  # the pretraining loss over all 321 pairs took 3 s per evaluation, 8 of them
    monkeypatch.setattr(ptx, "held_out_data", lambda: held_out)
    assert_same_fields(ptx.study(gammas=(0.0, 1.0), seeds=(0,), config=config, eval_episodes=4, progress=False),
                       ptx.PATH)


def test_preference(monkeypatch):
    tiny = dict(num_pairs=8, monitor_pairs=8, eval_episodes=4, kl_prompts=4,
                training=PreferenceConfig(max_steps=2, batch_size=4, eval_every=1))
    monkeypatch.setattr(P, "DPOExperiment", functools.partial(P.DPOExperiment, **tiny))
    monkeypatch.setattr(P, "policy_margin_experiment",
                        lambda: P.DPOExperiment(training=PreferenceConfig(max_steps=2, eval_every=2)))
    # enough pairs that every strength shows up in training and in every held-out bucket
    monkeypatch.setattr(P, "MarginExperiment", functools.partial(P.MarginExperiment, num_train=200, num_test=200,
                                                                 training=RewardConfig(max_steps=2)))
    assert_same_fields(P.study(seeds=(0,), progress=False), P.PATH)


def test_razor(monkeypatch):
    runs = [R.RazorRun("RL lr 1e-4", "rl", 1e-4, 1), R.RazorRun("SFT lr 1e-4", "sft", 1e-4, 1)]
    for name, small in (("new_task_score", 8), ("old_skill", 8)):
        monkeypatch.setattr(R, name, functools.partial(getattr(R, name), n=small))
    monkeypatch.setattr(R, "navigation_skill", functools.partial(R.navigation_skill, n_routes=2))
    assert_same_fields(R.study(runs, progress=False), R.PATH)


def test_sft_vs_rl(monkeypatch):
    for name, spec in list(S.SPECS.items()):
        monkeypatch.setitem(S.SPECS, name, dataclasses.replace(spec, eval_episodes=4))
    monkeypatch.setattr(S, "COLD_START_STEPS", 3)  # a multiple of StudyConfig.num_evals
    monkeypatch.setattr(S, "rule_usage", functools.partial(S.rule_usage, n=20))
    monkeypatch.setattr(S, "action_space_usage", functools.partial(S.action_space_usage, n_routes=2))
    cfg = S.StudyConfig(num_evals=1, kl_prompts=4, expert_pairs=64,
                        rl=dataclasses.replace(S.StudyConfig().rl, max_steps=1, num_prompts=2, num_generations=2))
    assert_same_fields(S.study(seeds=(0,), cfg=cfg, progress=False), S.PATH)


def test_razor_classifier():
    runs = [r for r in RC.RUNS if r.name in ("SFT oracle, lr 0.0003, 1 ep", "RL lr 0.001, 100 steps")]
    assert len(runs) == 2
    assert_same_fields(RC.study(runs, progress=False), RC.PATH)


@pytest.mark.parametrize("path", [K.PATH, KF.PATH, KP.PATH, PG.PATH, ptx.PATH, P.PATH, R.PATH, RC.PATH, S.PATH])
def test_every_study_says_where_it_was_built(path):
    study = json.loads(path.read_text())
    assert "threads" in study["machine"] and "torch" in study["machine"]
