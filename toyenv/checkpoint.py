"""Saving and loading a GPT with its tokenizer and metadata.

A checkpoint is a plain dict of tensors, numbers and strings, so it loads with
`torch.load(weights_only=True)`: nothing in the file can run code on load.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from .model import GPT, GPTConfig
from .tokenizer import Tokenizer

FORMAT = "toyenv-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or does not match this version of toyenv."""


def save_checkpoint(path: str | Path, model: GPT, tokenizer: Tokenizer | None = None, **meta: Any) -> Path:
    """Write model weights, config, the tokenizer's vocabulary and `meta` (JSON-like values) to `path`."""
    path = Path(path)
    tokenizer = tokenizer or Tokenizer()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state.pop("lm_head.weight", None)  # tied to wte: store once, re-tied on load
    try:  # plain JSON types only, or weights_only loading would refuse the file (e.g. torch.__version__)
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint metadata must be JSON-like (numbers, strings, lists, dicts): {e}") from None
    blob = {
        "format": FORMAT,
        "config": dataclasses.asdict(model.config),
        "vocab": list(tokenizer.itos),
        "state_dict": state,
        "meta": meta,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """Load `(model, tokenizer, meta)`; the model is in eval mode on `map_location`.

    Raises CheckpointError naming the file and what is wrong: missing, truncated / not a checkpoint,
    wrong format, a vocabulary different from this toyenv's tokenizer, or weights that do not fit the
    stored config.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory, not a file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds (UnpicklingError, KeyError, RuntimeError...) on bad bytes
        raise CheckpointError(f"checkpoint {path} is truncated or not a toyenv checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r}, expected {FORMAT!r}")
    missing = [k for k in ("config", "vocab", "state_dict", "meta") if k not in blob]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the field(s) {missing}")
    tokenizer = Tokenizer()
    if list(blob["vocab"]) != tokenizer.itos:
        raise CheckpointError(
            f"checkpoint {path} was saved with a different vocabulary ({len(blob['vocab'])} tokens) than "
            f"this toyenv's tokenizer ({tokenizer.vocab_size} tokens)"
        )
    try:
        config = GPTConfig(**blob["config"])
    except TypeError as e:
        raise CheckpointError(f"checkpoint {path} has a config this toyenv cannot read: {e}") from None
    model = GPT(config)
    state = dict(blob["state_dict"])
    state["lm_head.weight"] = state.get("transformer.wte.weight")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path}: weights do not match its config: {str(e).splitlines()[0]}") from None
    model.to(map_location).eval()
    return model, tokenizer, dict(blob["meta"])
