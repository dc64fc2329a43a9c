import pytest
import torch

import toyenv
from toyenv import GPT, GPTConfig, Tokenizer, seed_everything


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
    torch.set_num_threads(2)
