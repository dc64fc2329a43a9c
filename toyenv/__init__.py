"""toyenv: the library behind the rlhf-reg-course notebooks.

A tiny character-level GPT, its tokenizer, checkpoints, trainers and the toy
tasks the course post-trains it on. Importing toyenv registers the gymnasium
environments ``toyenv/GeneralPoints-v0`` and ``toyenv/Navigation-v0``.
"""
from . import envs  # noqa: F401  (registers the gymnasium environments)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .model import GPT, GPTConfig, token_logprobs
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer
from .utils import device, seed_everything

__all__ = [
    "GPT", "GPTConfig", "token_logprobs", "Tokenizer", "PAD_ID", "BOS_ID", "EOS_ID",
    "save_checkpoint", "load_checkpoint", "CheckpointError", "seed_everything", "device",
]
__version__ = "0.1.0"
