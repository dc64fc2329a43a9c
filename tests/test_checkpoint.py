import pytest
import torch

from toyenv import CheckpointError, GPT, GPTConfig, load_checkpoint, save_checkpoint


def test_round_trip(small_model, tmp_path, tok):
    path = save_checkpoint(tmp_path / "sub" / "m.pt", small_model, tok, task="reverse", steps=3, acc=0.5)
    model, tok2, meta = load_checkpoint(path)
    assert tok2 == tok and meta == {"task": "reverse", "steps": 3, "acc": 0.5}
    assert model.config == small_model.config and not model.training
    idx = torch.randint(3, 99, (2, 11))
    assert torch.equal(model(idx), small_model(idx))
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied after loading
    assert not (tmp_path / "sub" / "m.pt.tmp").exists()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_truncated_file(small_model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.pt is truncated or not a toyenv checkpoint"):
        load_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="text.pt is truncated or not a toyenv checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt has format None"):
        load_checkpoint(tmp_path / "other.pt")


def test_code_in_file_is_refused(tmp_path):
    torch.save({"format": "toyenv-checkpoint-v1", "evil": GPTConfig()}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="pickled.pt is truncated or not a toyenv checkpoint"):
        load_checkpoint(tmp_path / "pickled.pt")  # weights_only=True refuses arbitrary objects


def test_mismatched_weights(small_model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    blob = torch.load(path, weights_only=True)
    blob["config"]["n_embd"] = 128
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match=r"m\.pt: weights do not match its config"):
        load_checkpoint(path)


def test_mismatched_vocabulary(small_model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    blob = torch.load(path, weights_only=True)
    blob["vocab"] = blob["vocab"][:-1]
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="different vocabulary"):
        load_checkpoint(path)


def test_unknown_config_field(small_model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    blob = torch.load(path, weights_only=True)
    blob["config"]["n_experts"] = 8
    torch.save(blob, path)
    with pytest.raises(CheckpointError, match="config this toyenv cannot read"):
        load_checkpoint(path)


def test_metadata_must_be_json_like(small_model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", small_model, version=torch.__version__)  # a str subclass: stored as str
    assert load_checkpoint(path)[2] == {"version": str(torch.__version__)}
    with pytest.raises(TypeError, match="JSON-like"):
        save_checkpoint(tmp_path / "bad.pt", small_model, config=GPTConfig())


# --------------------------------------------------------------------------- issue 19: D8, D9, D10
import hashlib  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402

import toyenv.checkpoint as ckpt  # noqa: E402
import toyenv.trainers.reward_model as rmod  # noqa: E402
from toyenv.experiments.proxy_reward import PATH as PROXY_PATH  # noqa: E402
from toyenv.experiments.base_model import PATH as BASE_PATH  # noqa: E402

_DROP = object()  # marks a field to remove from a stored blob


def _rewrite(path, **changes):
    """Re-save the blob in `path` (a valid zip with correct CRCs) with top-level fields replaced or dropped."""
    blob = torch.load(path, weights_only=True)
    for k, v in changes.items():
        if v is _DROP:
            del blob[k]
        else:
            blob[k] = v
    torch.save(blob, path)
    return path


def _corrupt_values(path, tensor, n=51):
    """Change the first `n` float32 values of `tensor` where its bytes sit in the file, keeping the zip's CRCs.

    torch.save stores each tensor's bytes uncompressed in the archive, so they can be found verbatim.
    """
    data = bytearray(path.read_bytes())
    raw = tensor.detach().contiguous().numpy().tobytes()
    at = data.find(raw)
    assert at >= 0 and data.find(raw, at + 1) < 0, "tensor bytes should appear exactly once in the file"
    bad = (tensor.detach().flatten()[:n] + 1.0).numpy().tobytes()  # 51 values, each off by 1.0
    data[at : at + len(bad)] = bad
    path.write_bytes(bytes(data))


def _tiny_rm():
    torch.manual_seed(0)
    return rmod.RewardModel(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))


def test_shipped_files_load_and_are_left_untouched():
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (BASE_PATH, PROXY_PATH)}
    model, tok, meta = load_checkpoint(BASE_PATH)
    assert model.config == GPTConfig() and "metrics" in meta
    rm, rm_meta = rmod.load_reward_model(PROXY_PATH)
    assert rm.config == GPTConfig() and "held_out_accuracy" in rm_meta
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (BASE_PATH, PROXY_PATH)} == before


def test_corrupted_weight_bytes_are_detected(small_model, tmp_path):  # D8
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    _corrupt_values(path, small_model.transformer.wpe.weight)
    with pytest.raises(CheckpointError, match=r"m\.pt is corrupted.*CRC"):
        load_checkpoint(path)


def test_corrupted_reward_model_bytes_are_detected(tmp_path):  # D8
    rm = _tiny_rm()
    path = rmod.save_reward_model(tmp_path / "rm.pt", rm)
    _corrupt_values(path, rm.transformer.wpe.weight)
    with pytest.raises(CheckpointError, match=r"rm\.pt is corrupted.*CRC"):
        rmod.load_reward_model(path)


def test_save_writes_crcs_even_when_torch_is_told_not_to(small_model, tmp_path):  # D8
    old = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)
    try:
        path = save_checkpoint(tmp_path / "m.pt", small_model)
        rm_path = rmod.save_reward_model(tmp_path / "rm.pt", _tiny_rm())
        assert torch.serialization.get_crc32_options() is False  # the caller's setting is restored
    finally:
        torch.serialization.set_crc32_options(old)
    for p in (path, rm_path):
        with zipfile.ZipFile(p) as z:
            assert z.testzip() is None and all(i.CRC != 0 for i in z.infolist())
    load_checkpoint(path)
    rmod.load_reward_model(rm_path)


def test_not_a_zip_archive_is_refused(small_model, tmp_path):  # D9
    # torch's legacy (pre-1.6) format is a bare pickle: it loads, but has no CRC to check, and save never writes it
    torch.save(torch.load(save_checkpoint(tmp_path / "m.pt", small_model), weights_only=True), tmp_path / "old.pt",
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old\.pt is truncated or not a toyenv checkpoint.*not a zip"):
        load_checkpoint(tmp_path / "old.pt")


@pytest.mark.parametrize("field, value, message", [
    ("config", {"n_head": 3}, r"n_embd \(64\) must be divisible by n_head \(3\)"),
    ("config", {"n_layer": "2"}, r"config field n_layer must be an int >= 0, got '2'"),
    ("config", {"n_layer": 2.0}, r"config field n_layer must be an int >= 0, got 2\.0"),
    ("config", {"n_embd": True}, r"config field n_embd must be an int >= 1, got True"),
    ("config", {"block_size": 0}, r"config field block_size must be an int >= 1, got 0"),
    ("config", {"vocab_size": 50}, r"config field vocab_size must be an int >= 99"),
    ("config", {"dropout": "0.1"}, r"config field dropout must be a number in \[0, 1\), got '0\.1'"),
    ("config", {"dropout": float("nan")}, r"config field dropout must be a number in \[0, 1\), got nan"),
    ("config", {"bias": 1}, r"config field bias must be a bool, got 1"),
])
def test_bad_config_values_name_the_file_and_field(small_model, tmp_path, field, value, message):  # D9
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    config = dict(torch.load(path, weights_only=True)["config"], **value)
    _rewrite(path, config=config)
    with pytest.raises(CheckpointError, match=r"m\.pt.*" + message):
        load_checkpoint(path)


@pytest.mark.parametrize("changes, message", [
    ({"vocab": 5}, r"vocab must be a list of strings, got int"),
    ({"meta": [1, 2]}, r"meta must be a dict, got list"),
    ({"config": [1, 2]}, r"config must be a dict, got list"),
    ({"config": _DROP}, r"lacks the field\(s\) \['config'\]"),
    ({"state_dict": _DROP, "meta": _DROP}, r"lacks the field\(s\) \['state_dict', 'meta'\]"),
    ({"state_dict": [1, 2]}, r"state_dict must be a dict of tensors, got list"),
    ({"format": 7}, r"has format 7, expected 'toyenv-checkpoint-v1'"),
])
def test_bad_fields_name_the_file_and_field(small_model, tmp_path, changes, message):  # D9
    path = _rewrite(save_checkpoint(tmp_path / "m.pt", small_model), **changes)
    with pytest.raises(CheckpointError, match=r"m\.pt.*" + message):
        load_checkpoint(path)


def test_a_top_level_list_is_refused(tmp_path):  # D9
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt has format 'list'"):
        load_checkpoint(tmp_path / "list.pt")


def test_bad_weights_name_the_file_and_tensor(small_model, tmp_path):  # D9
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    good = torch.load(path, weights_only=True)["state_dict"]
    cases = [
        ({k: v for k, v in good.items() if k != "transformer.h.1.mlp.c_fc.weight"},
         r"missing weights \['transformer\.h\.1\.mlp\.c_fc\.weight'\]"),
        (dict(good, **{"transformer.h.9.ln_1.weight": torch.ones(64)}),
         r"unexpected weights \['transformer\.h\.9\.ln_1\.weight'\]"),
        (dict(good, **{"transformer.ln_f.weight": [1.0] * 64}), r"transformer\.ln_f\.weight is a list, not a tensor"),
        (dict(good, **{"transformer.ln_f.weight": torch.ones(64, dtype=torch.long)}),
         r"transformer\.ln_f\.weight has dtype torch\.int64"),
        (dict(good, **{"transformer.wpe.weight": torch.zeros(96, 32)}),
         r"transformer\.wpe\.weight has shape \(96, 32\) but the config implies \(96, 64\)"),
        (dict(good, **{"transformer.ln_f.weight": torch.full((64,), float("nan"))}),
         r"transformer\.ln_f\.weight holds NaN or infinite values"),
    ]
    for state, message in cases:
        _rewrite(path, state_dict=state)
        with pytest.raises(CheckpointError, match=r"m\.pt.*" + message):
            load_checkpoint(path)


def test_tied_head_stored_twice_still_loads(small_model, tmp_path):
    # Files that also store lm_head.weight (the tied copy of wte) loaded before; they still do.
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    blob = torch.load(path, weights_only=True)
    blob["state_dict"]["lm_head.weight"] = blob["state_dict"]["transformer.wte.weight"].clone()
    torch.save(blob, path)
    model, _, _ = load_checkpoint(path)
    idx = torch.randint(3, 99, (2, 7))
    assert torch.equal(model(idx), small_model(idx))


def _refuse_to_build(*args, **kwargs):
    raise AssertionError("the loader built a model before checking the stored shapes against the config")


@pytest.mark.parametrize("config", [{"n_embd": 6000}, {"block_size": 10**7}, {"n_layer": 10**9}])
def test_shapes_are_checked_before_the_model_is_built(small_model, tmp_path, monkeypatch, config):  # D10
    # A few-KB file whose config asks for a model of gigabytes (n_embd=6000: ~3.5 GB of float32 for 2 layers)
    # must be refused from the stored shapes, without building (allocating) that model.
    path = save_checkpoint(tmp_path / "m.pt", small_model)
    _rewrite(path, config=dict(torch.load(path, weights_only=True)["config"], **config))
    monkeypatch.setattr(ckpt, "GPT", _refuse_to_build)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"m\.pt.*(config implies|missing weights)"):
        load_checkpoint(path)
    assert time.perf_counter() - start < 1.0  # n_layer=10**9 must not be looped over


def test_reward_model_shapes_are_checked_before_it_is_built(tmp_path, monkeypatch):  # D10
    path = rmod.save_reward_model(tmp_path / "rm.pt", _tiny_rm())
    _rewrite(path, config=dict(torch.load(path, weights_only=True)["config"], n_embd=6000))
    monkeypatch.setattr(rmod, "RewardModel", _refuse_to_build)
    with pytest.raises(CheckpointError, match=r"rm\.pt.*config implies"):
        rmod.load_reward_model(path)


@pytest.mark.parametrize("bias", [False, True])
def test_expected_shapes_match_the_model(bias):
    # The loader's shape table is written out by hand (so it costs no allocation); it must agree with model.py.
    config = GPTConfig(block_size=20, n_layer=3, n_head=2, n_embd=8, bias=bias)
    gpt = {k: tuple(v.shape) for k, v in GPT(config).state_dict().items()}
    assert ckpt.expected_shapes(config, head="lm_head") == gpt
    rm = {k: tuple(v.shape) for k, v in rmod.RewardModel(config).state_dict().items()}
    assert ckpt.expected_shapes(config, head="score") == rm


@pytest.mark.parametrize("changes, message", [
    ({"config": _DROP}, r"lacks the field\(s\) \['config'\]"),
    ({"config": "big"}, r"config must be a dict, got str"),
    ({"meta": [1, 2]}, r"meta must be a dict, got list"),
    ({"state_dict": _DROP}, r"lacks the field\(s\) \['state_dict'\]"),
    ({"format": "toyenv-checkpoint-v1"}, r"has format 'toyenv-checkpoint-v1', expected 'toyenv-reward-model-v1'"),
])
def test_bad_reward_model_files_name_the_file_and_field(tmp_path, changes, message):  # D9
    path = _rewrite(rmod.save_reward_model(tmp_path / "rm.pt", _tiny_rm()), **changes)
    with pytest.raises(CheckpointError, match=r"rm\.pt.*" + message):
        rmod.load_reward_model(path)


def test_bad_reward_model_weights_and_configs(tmp_path):  # D9
    path = rmod.save_reward_model(tmp_path / "rm.pt", _tiny_rm())
    blob = torch.load(path, weights_only=True)
    state = {k: v for k, v in blob["state_dict"].items() if k != "score.weight"}
    _rewrite(path, state_dict=state)
    with pytest.raises(CheckpointError, match=r"rm\.pt.*missing weights \['score\.weight'\]"):
        rmod.load_reward_model(path)
    _rewrite(path, state_dict=blob["state_dict"], config=dict(blob["config"], n_head=3))
    with pytest.raises(CheckpointError, match=r"rm\.pt.*n_embd \(16\) must be divisible by n_head \(3\)"):
        rmod.load_reward_model(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"rm\.pt is truncated or not a toyenv reward model"):
        rmod.load_reward_model(path)
