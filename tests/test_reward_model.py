import math
import random

import pytest
import torch
import torch.nn.functional as F

from toyenv import GPT, GPTConfig, seed_everything
from toyenv.pairs import PreferencePair
from toyenv.tokenizer import BOS_ID, EOS_ID, PAD_ID, encode_pairs
from toyenv.trainers import reward_model
from toyenv.trainers.reward_model import (
    RewardConfig, RewardModel, as_reward_fn, bradley_terry_loss, encode_preference, preference_accuracy, score_texts,
)

TINY = dict(block_size=32, n_layer=2, n_head=2, n_embd=32)


def _gpt(seed=0):
    seed_everything(seed)
    return GPT(GPTConfig(**TINY))


def _rm(seed=0):
    seed_everything(seed)
    return RewardModel(GPTConfig(**TINY))


def marker_pairs(n, seed):
    """Random letters; the chosen completion holds a "!" somewhere, the rejected one does not."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = "".join(rng.choice("abcdef") for _ in range(rng.randint(1, 4))) + ":"
        c, r = ([rng.choice("abcdef") for _ in range(rng.randint(2, 6))] for _ in range(2))
        c.insert(rng.randrange(len(c) + 1), "!")
        out.append((prompt, "".join(c), "".join(r)))
    return out


# --------------------------------------------------------------------------- the loss
def test_bt_loss_matches_hand_computation():
    r_c, r_r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # -log sigmoid(d) = log(1 + exp(-d)), for d = 1 and d = -2
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(2))) / 2
    assert bradley_terry_loss(r_c, r_r).item() == pytest.approx(expected, rel=1e-6)
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))


def test_bt_margin():
    r_c, r_r = torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 1.0, -3.0])
    plain = bradley_terry_loss(r_c, r_r)
    assert bradley_terry_loss(r_c, r_r, 0.0).item() == plain.item()
    assert bradley_terry_loss(r_c, r_r, torch.zeros(3)).item() == plain.item()
    assert bradley_terry_loss(r_c, r_r, 1.0).item() > plain.item()
    per_pair = torch.tensor([1.0, 0.0, 2.0])
    expected = -F.logsigmoid(r_c - r_r - per_pair).mean()
    assert torch.allclose(bradley_terry_loss(r_c, r_r, per_pair), expected)
    with pytest.raises(ValueError, match="shape|!="):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_bt_gradient_raises_chosen_and_lowers_rejected():
    r_c = torch.tensor([0.3, -1.0], requires_grad=True)
    r_r = torch.tensor([0.1, 2.0], requires_grad=True)
    bradley_terry_loss(r_c, r_r, 0.5).backward()
    assert (r_c.grad < 0).all() and (r_r.grad > 0).all()  # gradient descent raises r_c, lowers r_r
    assert torch.allclose(r_c.grad, -r_r.grad)


# --------------------------------------------------------------------------- the model
def test_encoding_matches_sft(tok):
    ids = encode_preference("ab:", "ba", tok)
    assert ids == [BOS_ID] + tok.encode("ab:") + tok.encode("ba") + [EOS_ID]
    assert ids == encode_pairs([("ab:", "ba")], tok)[0][0]
    tokens, mask = tok.pad_batch([ids, ids[:3]], side="right")
    assert tokens[1].tolist() == ids[:3] + [PAD_ID] * (len(ids) - 3) and mask.sum().item() == len(ids) + 3


def test_score_is_read_at_last_real_token(tok):
    rm = _rm().eval()
    a, b = encode_preference("abc:", "cba", tok), encode_preference("x:", "xyzzy!", tok)
    alone = [rm(torch.tensor([s])).item() for s in (a, b)]
    for side in ("left", "right"):
        tokens, mask = tok.pad_batch([a, b], side=side)
        assert torch.allclose(rm(tokens, mask), torch.tensor(alone), atol=1e-5), side
    # Appending padding (right) or prepending it (left) changes nothing, with or without an explicit mask.
    tokens = torch.tensor([a + [PAD_ID] * 5, [PAD_ID] * 5 + a])
    assert torch.allclose(rm(tokens), torch.tensor([alone[0]] * 2), atol=1e-5)
    assert torch.allclose(rm(tokens, tokens != PAD_ID), torch.tensor([alone[0]] * 2), atol=1e-5)
    # ...while the last real token does matter
    assert rm(torch.tensor([a[:-1]])).item() != pytest.approx(alone[0])


def test_from_gpt_copies_the_trunk(tok):
    gpt = _gpt()
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    rm = RewardModel.from_gpt(gpt)
    for name, p in gpt.transformer.state_dict().items():
        assert torch.equal(rm.transformer.state_dict()[name], p), name
    assert not any(p.data_ptr() == q.data_ptr() for p in rm.parameters() for q in gpt.parameters())
    reward_model.train(rm, marker_pairs(16, 0), RewardConfig(max_steps=3, batch_size=8, learning_rate=1e-2),
                       tok, progress=False)
    assert not torch.equal(rm.transformer.wte.weight, gpt.transformer.wte.weight)  # the copy trained...
    for name, p in gpt.state_dict().items():  # ...the GPT did not
        assert torch.equal(p, before[name]), name


def test_score_texts_and_reward_fn(tok):
    rm = _rm().train()
    prompts, completions = ["ab:", "x:", "abc:"], ["ba", "x", "c"]
    scores = score_texts(rm, prompts, completions, tok, batch_size=2)
    assert scores.shape == (3,) and rm.training  # train mode restored
    one = rm.eval()(torch.tensor([encode_preference("x:", "x", tok)])).item()
    assert scores[1].item() == pytest.approx(one, abs=1e-5)
    reward_fn = as_reward_fn(rm, tok)
    rewards = reward_fn(prompts, completions, [{}] * 3)
    assert isinstance(rewards, list) and all(isinstance(r, float) for r in rewards)
    assert rewards == pytest.approx(scores.tolist(), abs=1e-6)
    # The RL trainer's completions are untrusted: too long is truncated, not an error.
    assert len(reward_fn(["ab:"], ["z" * 100])) == 1
    with pytest.raises(ValueError, match="block_size"):
        score_texts(rm, ["ab:"], ["z" * 100], tok)


def test_preference_accuracy_counts_ties_half(tok):
    rm = _rm()
    with torch.no_grad():
        rm.score.weight.zero_()  # every score is 0: all ties
    assert preference_accuracy(rm, marker_pairs(10, 0), tok) == 0.5


# --------------------------------------------------------------------------- training
def test_learns_a_marker_preference_and_is_deterministic(tok):
    cfg = RewardConfig(max_steps=20, batch_size=16, learning_rate=3e-3, warmup_steps=5, eval_every=10)
    train, held_out = marker_pairs(400, 0), marker_pairs(100, 1)
    rm = _rm()
    h1 = reward_model.train(rm, train, cfg, tok, eval_pairs=held_out, progress=False)
    assert [s for s, _ in h1["eval"]] == [0, 10, 20]
    assert h1["eval"][0][1]["accuracy"] < 0.7
    assert h1["eval"][-1][1]["accuracy"] >= 0.9
    assert preference_accuracy(rm, held_out, tok) == h1["eval"][-1][1]["accuracy"]
    assert len(h1["loss"]) == len(h1["accuracy"]) == len(h1["lr"]) == 20
    assert h1["config"]["learning_rate"] == 3e-3 and not rm.training

    pairs = [PreferencePair(*p) for p in train]  # dataclasses and tuples train the same
    h2 = reward_model.train(_rm(), pairs, cfg, tok, eval_pairs=held_out, progress=False)
    assert h2["loss"] == h1["loss"] and h2["eval"] == h1["eval"]
    h3 = reward_model.train(_rm(), pairs, RewardConfig(**{**h1["config"], "seed": 1}), tok, progress=False)
    assert h3["loss"] != h1["loss"]


def test_margin_is_used_only_when_asked(tok):
    pairs = [PreferencePair(p, c, r, margin=3.0) for p, c, r in marker_pairs(8, 0)]
    cfg = dict(max_steps=1, batch_size=8)
    plain = reward_model.train(_rm(), pairs, RewardConfig(**cfg), tok, progress=False)["loss"][0]
    with_margin = reward_model.train(_rm(), pairs, RewardConfig(**cfg, use_margin=True), tok, progress=False)["loss"][0]
    assert with_margin > plain


def test_nan_loss_stops_with_clear_message(tok):
    rm = _rm()
    with torch.no_grad():
        rm.score.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        reward_model.train(rm, marker_pairs(8, 0), RewardConfig(max_steps=2, batch_size=4), tok, progress=False)


def test_bad_inputs(tok):
    rm = _rm()
    cfg = RewardConfig(max_steps=1)
    with pytest.raises(ValueError, match="at least one"):
        reward_model.train(rm, [], cfg, tok, progress=False)
    with pytest.raises(ValueError, match=r"pairs\[0\]"):
        reward_model.train(rm, [("prompt", "only one completion")], cfg, tok, progress=False)
    with pytest.raises(ValueError, match="exceed block_size 32"):
        reward_model.train(rm, [("a" * 40, "b", "c")], cfg, tok, progress=False)
    with pytest.raises(ValueError, match="exceeds block_size"):
        rm(torch.ones(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="no real token"):
        rm(torch.ones(2, 4, dtype=torch.long), torch.tensor([[True] * 4, [False] * 4]))
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        score_texts(rm, ["a", "b"], ["c"], tok)
    with pytest.raises(ValueError, match="learning_rate"):
        RewardConfig(learning_rate=0)
    with pytest.raises(TypeError, match="GPT"):
        RewardModel.from_gpt(rm)


def test_save_and_load_round_trip(tmp_path):
    from toyenv.checkpoint import CheckpointError
    from toyenv.trainers.reward_model import load_reward_model, save_reward_model

    torch.manual_seed(0)
    rm = RewardModel(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    tokens = torch.randint(3, 99, (3, 12))
    path = save_reward_model(tmp_path / "rm.pt", rm, held_out_accuracy=0.75)
    loaded, meta = load_reward_model(path)
    assert meta == {"held_out_accuracy": 0.75} and not loaded.training
    assert torch.equal(loaded(tokens), rm.eval()(tokens))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_reward_model(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError):
        load_reward_model(tmp_path / "missing.pt")
