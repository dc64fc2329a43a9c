"""toyenv: the library behind the rlhf-reg-course notebooks.

A tiny character-level GPT, its tokenizer, checkpoints, trainers and the toy
tasks the course post-trains it on. Importing toyenv registers the gymnasium
environments ``toyenv/GeneralPoints-v0`` and ``toyenv/Navigation-v0``.
"""
from . import envs  # noqa: F401  (registers the gymnasium environments)
from . import kl  # noqa: F401
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .model import GPT, GPTConfig, token_logprobs
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from .utils import device, seed_everything


def load_base(map_location=None):
    """The course's shipped base model: `(model, tokenizer)`, in eval mode on `map_location` (default: `device()`).

    A tiny GPT pretrained on both toy tasks under both rules (see `toyenv.experiments.base_model`, which rebuilds
    it); its measured metrics are in `toyenv/data/base_metrics.json` and in `load_checkpoint(...)[2]`.
    """
    from .experiments import base_model  # here: the experiments import toyenv, not the other way round

    return base_model.load(map_location=map_location)

__all__ = [
    "GPT", "GPTConfig", "token_logprobs", "Tokenizer", "PAD_ID", "BOS_ID", "EOS_ID",
    "load_base", "save_checkpoint", "load_checkpoint", "CheckpointError", "seed_everything", "device",
]
__version__ = "0.1.0"
