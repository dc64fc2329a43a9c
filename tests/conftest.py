import pytest
import torch

from toyenv import GPT, GPTConfig, Tokenizer, seed_everything


@pytest.fixture(scope="session")
def tok():
    return Tokenizer()


@pytest.fixture()
def small_model():
    """A random 2-layer GPT: big enough to exercise every code path, fast enough for unit tests."""
    seed_everything(0)
    return GPT(GPTConfig(block_size=96, n_layer=2, n_head=4, n_embd=64)).eval()


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
