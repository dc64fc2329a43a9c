import pytest
import torch

from toyenv import CheckpointError, GPT, GPTConfig, Tokenizer, load_checkpoint, save_checkpoint


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
