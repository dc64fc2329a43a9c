"""The shipped base model: it loads, and its recorded metrics are what its weights really score."""
import json

import pytest
import torch

import toyenv
from conftest import THREADS
from toyenv.experiments.base_model import METRICS_PATH, PATH as BASE_PATH, measure

# Greedy decoding is deterministic, so on the machine that built the checkpoint the recomputed metrics match
# exactly; the tolerance absorbs float differences from other CPUs / thread counts / BLAS builds.
TOLERANCE = 0.03
BANDS = {  # the targets for the shipped checkpoint
    "general_points_ten": (0.15, 0.70),
    "general_points_ranked": (0.15, 0.70),
    "navigation_absolute_per_step": (0.40, 0.90),
    "navigation_relative_per_step": (0.40, 0.90),
}


@pytest.fixture(scope="module")
def recorded():
    return json.loads(METRICS_PATH.read_text())


@pytest.fixture(scope="module")
def remeasured(recorded):
    torch.set_num_threads(THREADS)  # a module fixture runs before conftest's per-test setting
    model, tok = toyenv.load_base(map_location="cpu")
    return measure(model, tok, n_episodes=recorded["eval"]["episodes"], seed=recorded["eval"]["seed"])


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


def test_metrics_recomputed_from_weights(recorded, remeasured):
    for key, value in recorded["metrics"].items():
        assert abs(remeasured[key] - value) <= TOLERANCE, (key, value, remeasured[key])
