"""The shipped base model: it loads, and its recorded metrics are what its weights really score.

base_metrics.json records, besides the six metrics, the verdict on every answer behind them (500 deals per
GeneralPoints rule, 3,568 route steps per navigation action space). The metrics are checked to add up from those
verdicts, and the first REPLAYED episodes of each task are played again from the weights and compared answer by
answer: about a fifth of the work of measuring all 500 again (about 20 s instead of about 95 s at 2 threads on a
2-core AMD EPYC), and a finer check, since a change that turns some answers right and as many wrong leaves a metric
where it was but not the verdicts. The verdicts were recorded on a 2-core AMD EPYC with AVX2 (2026-12-03), where the
500-episode measurement reproduced all six recorded metrics exactly.
"""
import itertools
import json

import pytest
import torch

import toyenv
from conftest import THREADS
from toyenv.envs.navigation import oracle_episodes
from toyenv.experiments.base_model import (EVAL_SEED, METRICS_PATH, PATH as BASE_PATH, PretrainConfig, describe,
                                          measure, save)

REPLAYED = 100  # episodes per task played again from the weights
# Greedy decoding is deterministic, so on a machine that reproduces the recording every replayed verdict matches;
# other CPUs, thread counts or BLAS builds round differently, which can flip an answer that was a near tie.
MAX_FLIPPED = 0.01  # of the replayed verdicts of one task
BANDS = {  # the targets for the shipped checkpoint
    "general_points_ten": (0.15, 0.70),
    "general_points_ranked": (0.15, 0.70),
    "navigation_absolute_per_step": (0.40, 0.90),
    "navigation_relative_per_step": (0.40, 0.90),
}


def metrics_from_verdicts(outcomes: dict, n_episodes: int, seed: int) -> dict:
    """The six metrics, counted here from the per-answer verdicts: GeneralPoints accuracy is the share of deals
    answered right; navigation per-step accuracy the share of steps, route success the share of routes whose every
    step is right (the routes' lengths come from the environment's oracle)."""
    m = {f"general_points_{rule}": outcomes[f"general_points_{rule}"].count("1") / n_episodes
         for rule in ("ten", "ranked")}
    for kind in ("absolute", "relative"):
        bits = outcomes[f"navigation_{kind}"]
        ends = list(itertools.accumulate(len(route) for route in oracle_episodes(n_episodes, kind, seed, None)))
        assert ends[-1] == len(bits), (kind, ends[-1], len(bits))
        m[f"navigation_{kind}_per_step"] = bits.count("1") / len(bits)
        m[f"navigation_{kind}_route_success"] = sum(
            "0" not in bits[a:b] for a, b in zip([0] + ends[:-1], ends)) / n_episodes
    return {k: round(v, 4) for k, v in m.items()}


@pytest.fixture(scope="module")
def recorded():
    return json.loads(METRICS_PATH.read_text())


@pytest.fixture(scope="module")
def replayed(recorded):
    torch.set_num_threads(THREADS)  # a module fixture runs before conftest's per-test setting
    model, tok = toyenv.load_base(map_location="cpu")
    return measure(model, tok, n_episodes=REPLAYED, seed=recorded["eval"]["seed"], return_outcomes=True)


def test_checkpoint_is_small_and_loads():
    assert BASE_PATH.stat().st_size <= 10e6
    model, tok = toyenv.load_base(map_location="cpu")
    assert not model.training and tok == toyenv.Tokenizer()
    meta = toyenv.load_checkpoint(BASE_PATH)[2]
    assert meta["metrics"] == json.loads(METRICS_PATH.read_text())["metrics"]


def test_recorded_metrics_meet_the_bands(recorded):
    assert recorded["eval"]["episodes"] >= 500
    for key, (lo, hi) in BANDS.items():
        assert lo <= recorded["metrics"][key] <= hi, (key, recorded["metrics"][key])


def test_recorded_metrics_add_up_from_the_recorded_verdicts(recorded):
    outcomes = recorded["outcomes"]
    assert sorted(outcomes) == ["general_points_ranked", "general_points_ten", "navigation_absolute",
                                "navigation_relative"]
    assert all(set(bits) <= {"0", "1"} for bits in outcomes.values())
    n = recorded["eval"]["episodes"]
    assert len(outcomes["general_points_ten"]) == len(outcomes["general_points_ranked"]) == n
    assert metrics_from_verdicts(outcomes, n, recorded["eval"]["seed"]) == recorded["metrics"]


def test_replayed_episodes_give_the_recorded_verdicts(recorded, replayed):
    metrics, outcomes = replayed
    assert metrics == metrics_from_verdicts(outcomes, REPLAYED, recorded["eval"]["seed"])  # measure's own sums
    assert len(outcomes["general_points_ten"]) == REPLAYED and len(outcomes["navigation_absolute"]) > 5 * REPLAYED
    for task, bits in outcomes.items():
        shipped = recorded["outcomes"][task][: len(bits)]
        flipped = [i for i, (a, b) in enumerate(zip(bits, shipped)) if a != b]
        assert len(flipped) <= MAX_FLIPPED * len(bits), f"{task}: {len(flipped)} of {len(bits)} verdicts differ, " \
            f"at answers {flipped[:20]}"


def test_save_keeps_the_verdicts_out_of_the_checkpoint(tmp_path):
    meta = {"metrics": {"general_points_ten": 0.5}, "eval": {"episodes": 2}, "outcomes": {"general_points_ten": "10"}}
    save(toyenv.GPT(toyenv.GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32)), meta, tmp_path)
    assert json.loads((tmp_path / METRICS_PATH.name).read_text()) == meta
    stored = toyenv.load_checkpoint(tmp_path / BASE_PATH.name)[2]
    assert stored["metrics"] == meta["metrics"] and "outcomes" not in stored


def test_describe_records_the_verdicts_behind_its_metrics():
    """What a rebuild writes: describe's metrics add up from the verdicts it records beside them (a tiny random GPT,
    one episode per task)."""
    torch.manual_seed(0)
    tiny = toyenv.GPT(toyenv.GPTConfig(n_layer=1, n_head=2, n_embd=16))
    meta = describe(tiny, PretrainConfig(), 1.0, episodes=1)
    assert meta["eval"]["episodes"] == 1 and len(meta["outcomes"]["general_points_ten"]) == 1
    assert metrics_from_verdicts(meta["outcomes"], 1, EVAL_SEED) == meta["metrics"]
