import os

import pytest
import torch

import toyenv
from mutmut_isolation import under_mutmut
from toyenv import GPT, GPTConfig, Tokenizer, seed_everything
from toyenv.envs import general_points

# 2 threads: CI's machines have 2 cores, and the shipped studies were built with 2 threads. `make mutants`, which runs
# one test process per core, sets OMP_NUM_THREADS=1 and gets it: there the tests compare with tolerances, not bits.
THREADS = 1 if os.environ.get("OMP_NUM_THREADS") == "1" else 2


@pytest.fixture(scope="session")
def tok():
    return Tokenizer()


@pytest.fixture()
def small_model():
    """A random 2-layer GPT: big enough to exercise every code path, fast enough for unit tests."""
    seed_everything(0)
    return GPT(GPTConfig(block_size=96, n_layer=2, n_head=4, n_embd=64)).eval()


@pytest.fixture(scope="module")
def base():
    """The shipped base model and its tokenizer on the CPU, loaded afresh for each test module (train copies of it)."""
    return toyenv.load_base(map_location="cpu")


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(THREADS)  # before every test: a test may have changed it


@pytest.fixture(autouse=True)
def _cold_solver_caches():
    # Under mutmut every test meets GeneralPoints' solver caches empty, so that it calls (and is recorded as calling)
    # the helpers beneath them: see tests/mutmut_isolation.py.
    if under_mutmut():
        for cached in vars(general_points).values():
            if hasattr(cached, "cache_clear"):  # every functools.lru_cache in the module
                cached.cache_clear()
