import random

import numpy as np
import pytest
import torch

from toyenv import device, seed_everything


def test_seed_everything_repeats_every_rng():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()
    g1 = seed_everything(7)
    a, ga = draw(), torch.rand(2, generator=g1).tolist()
    g2 = seed_everything(7)
    assert draw() == a and torch.rand(2, generator=g2).tolist() == ga
    seed_everything(8)
    assert draw() != a
    with pytest.raises(TypeError):
        seed_everything("7")


def test_device_override(monkeypatch):
    monkeypatch.setenv("TOYENV_DEVICE", "cpu")
    assert device() == torch.device("cpu")
    monkeypatch.setenv("TOYENV_DEVICE", "toaster")
    with pytest.raises(ValueError, match="TOYENV_DEVICE='toaster' is not a torch device"):
        device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("TOYENV_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            device()


def test_device_default(monkeypatch):
    monkeypatch.delenv("TOYENV_DEVICE", raising=False)
    if torch.cuda.is_available():
        assert device().type == "cuda"
    elif not torch.backends.mps.is_available():
        assert device() == torch.device("cpu")


def test_smooth_is_a_bias_corrected_ema_and_rejects_bad_weights():
    import numpy as np
    import pytest

    from toyenv.plotting import smooth

    assert np.allclose(smooth([2.0, 2.0, 2.0], 0.9), [2.0, 2.0, 2.0])  # bias correction: no pull toward 0
    assert np.allclose(smooth([1.0, 3.0], 0.0), [1.0, 3.0])
    assert np.allclose(smooth([0.0, 1.0], 0.5), [0.0, 0.5 / 0.75])
    for bad in (1.0, 8, -0.1):
        with pytest.raises(ValueError, match="weight"):
            smooth([1.0], bad)


def test_eval_mode_restores_each_models_own_mode_even_after_an_error():
    import torch.nn as nn

    from toyenv.utils import eval_mode

    training, evaluating = nn.Linear(2, 2), nn.Linear(2, 2).eval()
    with eval_mode(training, evaluating):
        assert not training.training and not evaluating.training
    assert training.training and not evaluating.training
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(training):
            assert not training.training
            raise RuntimeError("boom")
    assert training.training

    class Stub:  # duck-typed stand-in: only generate(), no train/eval
        pass

    stub = Stub()
    with eval_mode(stub):
        pass
    assert not hasattr(stub, "training")


def test_label_offsets_move_close_points_apart():
    from toyenv.plotting import label_offsets

    # points 0 and 1 nearly coincide, 2 is far: 1 gets the second spot, 0 and 2 the first
    assert label_offsets([1.0, 1.01, 9.0], [0.0, 0.001, 1.0]) == [(4, 3), (4, -10), (4, 3)]
    # on a log axis 1 and 1.2 are far apart (log 1.2 = 0.18 of log 100 = 4.6 is 4%: just outside 0.035)
    assert label_offsets([1.0, 1.2, 100.0], [0.0, 0.0, 1.0], log_x=True, near=0.035) == [(4, 3)] * 3
    assert label_offsets([1.0, 1.2, 100.0], [0.0, 0.0, 1.0], log_x=False) == [(4, 3), (4, -10), (4, 3)]
