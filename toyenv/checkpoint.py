"""Saving and loading a GPT with its tokenizer and metadata.

A checkpoint is a plain dict of tensors, numbers and strings, so it loads with
`torch.load(weights_only=True)`: nothing in the file can run code on load.

Loading trusts nothing in the file. `torch.save` writes a zip archive with a CRC-32 per record, but
`torch.load` never checks them, so the loader does (`zipfile.testzip`, a few ms for the base model) and
damaged bytes are refused instead of loading as silently wrong weights. Then every field is checked, and
every stored tensor's shape is compared with the shape the config implies, *before* the model is built:
a small file claiming `n_embd=6000` is refused instead of allocating gigabytes. Every problem raises
CheckpointError naming the file and what is wrong. The reward model's files (`toyenv.trainers.reward_model`) go
through the same checks.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from .model import GPT, GPTConfig
from .tokenizer import Tokenizer

# The one folder the course ships its checkpoints and studies in (every study module and the base model write here).
DATA_DIR = Path(__file__).resolve().parent / "data"

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
    save_blob(blob, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """Load `(model, tokenizer, meta)`; the model is in eval mode on `map_location`.

    Raises CheckpointError naming the file and what is wrong: missing, truncated / not a checkpoint,
    corrupted bytes, wrong format, a missing or malformed field, a vocabulary different from this
    toyenv's tokenizer, or weights that do not fit the stored config.
    """
    path = Path(path)
    blob = read_blob(path, FORMAT, ("config", "vocab", "state_dict", "meta"), map_location)
    tokenizer = Tokenizer()
    vocab = blob["vocab"]
    if not isinstance(vocab, list) or not all(isinstance(t, str) for t in vocab):
        raise CheckpointError(f"checkpoint {path}: vocab must be a list of strings, got {type(vocab).__name__}")
    if vocab != tokenizer.itos:
        raise CheckpointError(
            f"checkpoint {path} was saved with a different vocabulary ({len(vocab)} tokens) than "
            f"this toyenv's tokenizer ({tokenizer.vocab_size} tokens)"
        )
    config = read_config(path, blob["config"])
    state = dict(blob["state_dict"])
    stored_head = state.pop("lm_head.weight", None)  # older files may hold the tied copy too: it is re-tied below
    check_weights(path, state, config, head=None)
    if stored_head is not None:
        check_state(path, {"lm_head.weight": stored_head}, {"lm_head.weight": (config.vocab_size, config.n_embd)})
    model = GPT(config)  # only now: its size is that of the tensors in the file
    state["lm_head.weight"] = state["transformer.wte.weight"]
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as e:  # not expected after check_state; kept so nothing escapes unnamed
        raise CheckpointError(f"checkpoint {path}: weights do not match its config: {str(e).splitlines()[0]}") from None
    model.to(map_location).eval()
    return model, tokenizer, blob["meta"]


# --------------------------------------------------------------------------- shared with toyenv.trainers.reward_model
def save_blob(blob: dict, path: Path) -> None:
    """`torch.save` through a temporary file, with CRC-32s written whatever torch's global setting.

    `torch.serialization.set_crc32_options(False)` would write zero CRCs, which `read_blob` rightly reads as
    damage; the caller's setting is restored afterwards.
    """
    tmp = path.with_name(path.name + ".tmp")
    crc = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(True)
    try:
        torch.save(blob, tmp)
    finally:
        torch.serialization.set_crc32_options(crc)
    tmp.replace(path)  # never leave a half-written checkpoint under the real name


def read_blob(path: Path, fmt: str, fields: tuple[str, ...], map_location: str | torch.device = "cpu",
              what: str = "checkpoint") -> dict:
    """The dict stored in `path`, after checking the archive's CRCs, its format tag and its top-level fields.

    `fields` must all be present; "meta" must be a dict, "config" a dict, "state_dict" a dict of tensors
    (their shapes are checked later by `check_weights`, once the config is known).
    """
    if not path.exists():
        raise CheckpointError(f"{what} {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a directory, not a file")
    bad = f"{what} {path} is truncated or not a toyenv {what}"
    try:  # torch.save always writes a zip archive whose records each carry a CRC-32; torch.load never checks them
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile:
        raise CheckpointError(f"{bad} (not a zip archive, the format torch.save writes)") from None
    except Exception as e:  # a damaged directory can raise EOFError, OSError, zlib.error, ...
        raise CheckpointError(f"{bad} ({type(e).__name__}: {e})") from None
    if damaged is not None:
        raise CheckpointError(
            f"{what} {path} is corrupted: the CRC of its record {damaged!r} does not match its bytes (damaged on "
            "disk or in transfer, or written with torch.serialization.set_crc32_options(False)); save it again"
        )
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds (UnpicklingError, KeyError, RuntimeError...) on bad bytes
        raise CheckpointError(f"{bad} ({type(e).__name__}: {e})") from None
    if not isinstance(blob, dict) or blob.get("format") != fmt:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise CheckpointError(f"{what} {path} has format {found!r}, expected {fmt!r}")
    missing = [k for k in fields if k not in blob]
    if missing:
        raise CheckpointError(f"{what} {path} lacks the field(s) {missing}")
    for name in ("config", "meta"):
        if name in fields and not isinstance(blob[name], dict):
            raise CheckpointError(f"{what} {path}: {name} must be a dict, got {type(blob[name]).__name__}")
    if "state_dict" in fields:
        state = blob["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CheckpointError(
                f"{what} {path}: state_dict must be a dict of tensors, got {type(state).__name__}"
            )
    return blob


# name -> (kind, minimum): what each GPTConfig field may hold in a file
_CONFIG_FIELDS = {
    "block_size": ("int", 1),
    "vocab_size": ("int", Tokenizer().vocab_size),  # smaller could not embed every token id
    "n_layer": ("int", 0),
    "n_head": ("int", 1),
    "n_embd": ("int", 1),
    "dropout": ("probability", None),
    "bias": ("bool", None),
}


def read_config(path: Path, raw: dict, what: str = "checkpoint") -> GPTConfig:
    """GPTConfig from a stored dict, every field type- and range-checked (missing fields take their defaults)."""
    unknown = sorted(set(map(str, raw)) - {f.name for f in dataclasses.fields(GPTConfig)})
    if unknown:
        raise CheckpointError(f"{what} {path} has a config this toyenv cannot read: unknown field(s) {unknown}")
    for name, value in raw.items():
        kind, low = _CONFIG_FIELDS.get(name, (None, None))  # a field added to GPTConfig later: its own checks apply
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise CheckpointError(f"{what} {path}: config field {name} must be an int >= {low}, got {value!r}")
        if kind == "probability" and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1  # NaN fails too
        ):
            raise CheckpointError(f"{what} {path}: config field {name} must be a number in [0, 1), got {value!r}")
        if kind == "bool" and not isinstance(value, bool):
            raise CheckpointError(f"{what} {path}: config field {name} must be a bool, got {value!r}")
    defaults = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    n_embd, n_head = raw.get("n_embd", defaults["n_embd"]), raw.get("n_head", defaults["n_head"])
    if n_embd % n_head:  # the heads split the embedding
        raise CheckpointError(f"{what} {path}: config field n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    try:
        return GPTConfig(**raw)
    except (TypeError, ValueError) as e:  # whatever GPTConfig itself refuses
        raise CheckpointError(f"{what} {path} has a config this toyenv cannot read: {e}") from None


def expected_shapes(config: GPTConfig, head: str | None = "lm_head") -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape in the state_dict of `GPT(config)` (head="lm_head") or of
    `RewardModel(config)` (head="score"); head=None: the trunk only.

    Written out by hand from model.py, so that a file's shapes are checked without building (allocating)
    the model; tests/test_checkpoint.py checks that it agrees with both models.
    """
    C, bias = config.n_embd, config.bias
    shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (config.vocab_size, C),
        "transformer.wpe.weight": (config.block_size, C),
    }

    def linear(name: str, n_out: int, n_in: int) -> None:
        shapes[name + ".weight"] = (n_out, n_in)
        if bias:
            shapes[name + ".bias"] = (n_out,)

    def layer_norm(name: str) -> None:
        shapes[name + ".weight"] = (C,)
        if bias:
            shapes[name + ".bias"] = (C,)

    for i in range(config.n_layer):
        h = f"transformer.h.{i}"
        layer_norm(f"{h}.ln_1")
        linear(f"{h}.attn.c_attn", 3 * C, C)
        linear(f"{h}.attn.c_proj", C, C)
        layer_norm(f"{h}.ln_2")
        linear(f"{h}.mlp.c_fc", 4 * C, C)
        linear(f"{h}.mlp.c_proj", C, 4 * C)
    layer_norm("transformer.ln_f")
    if head == "lm_head":
        shapes["lm_head.weight"] = (config.vocab_size, C)
    elif head == "score":
        shapes["score.weight"] = (1, C)
    return shapes


def check_weights(path: Path, state: dict, config: GPTConfig, head: str | None, what: str = "checkpoint") -> None:
    """Refuse unless `state` holds exactly the tensors `expected_shapes(config, head)` lists, without building it
    first when their number already differs (a config with n_layer=10**9 would take minutes to list)."""
    per_layer = 12 if config.bias else 6  # 2 layer norms and 4 linears, each with a bias or not
    n_expected = 2 + config.n_layer * per_layer + (2 if config.bias else 1) + (head is not None)
    if len(state) != n_expected:
        if n_expected <= 10 * len(state) + 100:  # cheap to list: name the missing and unexpected tensors
            check_state(path, state, expected_shapes(config, head), what)
        raise CheckpointError(
            f"{what} {path}: weights do not match its config: the config implies {n_expected} tensors "
            f"(n_layer={config.n_layer}, bias={config.bias}) but the file stores {len(state)}"
        )
    check_state(path, state, expected_shapes(config, head), what)


def check_state(path: Path, state: dict, expected: dict[str, tuple[int, ...]], what: str = "checkpoint") -> None:
    """Refuse unless `state` holds exactly the tensors of `expected`, with those shapes, floating and finite."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing weights {missing}"] if missing else []) + (
            [f"unexpected weights {unexpected}"] if unexpected else [])
        raise CheckpointError(f"{what} {path}: weights do not match its config: {'; '.join(parts)}")
    for name, shape in expected.items():
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{what} {path}: {name} is a {type(t).__name__}, not a tensor")
        if not t.is_floating_point():
            raise CheckpointError(f"{what} {path}: {name} has dtype {t.dtype}, expected a floating-point tensor")
        if tuple(t.shape) != shape:
            raise CheckpointError(
                f"{what} {path}: weights do not match its config: {name} has shape {tuple(t.shape)} but the config "
                f"implies {shape}"
            )
    for name in expected:  # after the shape checks: only tensors of the right size are read
        if not bool(torch.isfinite(state[name]).all()):
            raise CheckpointError(f"{what} {path}: {name} holds NaN or infinite values (saved from a diverged run?)")
