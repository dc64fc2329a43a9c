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
