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


def test_num_params_counts_the_trunk_and_the_scalar_head(tok):
    V, C, block = tok.vocab_size, 8, 16
    rm = RewardModel(GPTConfig(block_size=block, n_layer=1, n_head=2, n_embd=C))
    # token and position embeddings; one block: two LayerNorm weights, q/k/v (3C x C), the attention's output (C x C),
    # the MLP (4C x C and C x 4C); the final LayerNorm; the score head (C, no bias). No LM head.
    assert rm.num_params() == V * C + block * C + (2 * C + 3 * C * C + C * C + 8 * C * C) + C + C


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
    with pytest.raises(ValueError, match="^the reward-model trainer needs at least one preference pair$"):
        reward_model.train(rm, [], cfg, tok, progress=False)
    with pytest.raises(ValueError, match=r"^pairs\[0\] should be"):
        reward_model.train(rm, [("prompt", "only one completion")], cfg, tok, progress=False)
    good = [("a:", "b", "c")]
    with pytest.raises(ValueError, match=r"^eval_pairs is empty; pass None for no evaluation$"):
        reward_model.train(rm, good, cfg, tok, progress=False, eval_pairs=[])
    with pytest.raises(ValueError, match=r"^eval_pairs\[0\] should be"):
        reward_model.train(rm, good, cfg, tok, progress=False, eval_pairs=[("prompt", "only one")])
    with pytest.raises(ValueError, match=r"^2 sequence\(s\) exceed block_size 32 \(longest 43 tokens, counting BOS "
                                         r"and EOS\)$"):
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
    with pytest.raises(CheckpointError, match=r"^reward model .*bad\.pt is truncated or not a toyenv reward model"):
        load_reward_model(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"^reward model .*missing\.pt does not exist"):
        load_reward_model(tmp_path / "missing.pt")


def test_malformed_reward_model_files_are_named_as_reward_models(tmp_path, monkeypatch):
    import re

    from toyenv import checkpoint
    from toyenv.checkpoint import CheckpointError
    from toyenv.trainers.reward_model import load_reward_model, save_reward_model

    torch.manual_seed(0)
    rm = RewardModel(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    # a folder that does not exist yet, two levels deep, is created
    path = save_reward_model(tmp_path / "new" / "deeper" / "rm.pt", rm)
    blob = torch.load(path, weights_only=True)

    def rewritten(name, **changes):
        out = tmp_path / name
        torch.save({**blob, **changes}, out)
        return out

    bad_config = rewritten("config.pt", config={**blob["config"], "n_head": 3})
    with pytest.raises(CheckpointError, match=re.escape(f"reward model {bad_config}: config field n_embd (16) must be "
                                                        "divisible by n_head (3)")):
        load_reward_model(bad_config)
    state = dict(blob["state_dict"])
    state["score.weight"] = torch.zeros(2, 16)
    bad_weights = rewritten("weights.pt", state_dict=state)
    with pytest.raises(CheckpointError, match=re.escape(f"reward model {bad_weights}: weights do not match")):
        load_reward_model(bad_weights)
    # the last guard, behind check_weights: were it to let a mismatch through, loading still names the file
    monkeypatch.setattr(checkpoint, "check_weights", lambda *a, **k: None)
    with pytest.raises(CheckpointError, match=re.escape(f"{bad_weights}: weights do not fit the stored config")):
        load_reward_model(bad_weights)


def test_reward_fn_passes_its_tokenizer_and_batch_size(tok, monkeypatch):
    calls = []
    monkeypatch.setattr(reward_model, "score_texts", lambda *args, **kwargs: calls.append((args, kwargs))
                        or torch.zeros(len(args[2])))
    rm = _rm()
    as_reward_fn(rm, tok)(["a:"], ["b"])
    as_reward_fn(rm, tok, batch_size=3)(["a:"], ["b"])
    assert [(a[0], a[1], a[2], a[3], a[4], k) for a, k in calls] == [
        (rm, ["a:"], ["b"], tok, 256, {"truncate": True}), (rm, ["a:"], ["b"], tok, 3, {"truncate": True})]


def test_from_gpt_keeps_the_gpts_dtype():
    rm = RewardModel.from_gpt(_gpt().double())
    assert {p.dtype for p in rm.parameters()} == {torch.float64}


def test_from_gpt_names_what_it_got():
    with pytest.raises(TypeError, match=r"^from_gpt expects a toyenv GPT, got RewardModel$"):
        RewardModel.from_gpt(_rm())


def test_preference_accuracy_passes_its_tokenizer_and_batch_size(tok, monkeypatch):
    calls = []

    def spy(rm, prompts, completions, tokenizer, batch_size):
        calls.append((list(prompts), list(completions), tokenizer, batch_size))
        return torch.tensor([1.0 if c == "good" else 0.0 for c in completions])

    monkeypatch.setattr(reward_model, "score_texts", spy)
    pairs = [PreferencePair("a:", "good", "bad"), PreferencePair("b:", "bad", "good")]
    assert reward_model.preference_accuracy(_rm(), pairs, tok) == 0.5
    assert reward_model.preference_accuracy(_rm(), pairs, tok, batch_size=3) == 0.5
    assert calls == [(["a:", "b:"], ["good", "bad"], tok, 256), (["a:", "b:"], ["bad", "good"], tok, 256),
                     (["a:", "b:"], ["good", "bad"], tok, 3), (["a:", "b:"], ["bad", "good"], tok, 3)]
    with pytest.raises(ValueError, match=r"^preference_accuracy needs at least one pair$"):
        reward_model.preference_accuracy(_rm(), [], tok)


def test_encode_preference_cuts_the_completion_at_max_length_by_hand(tok):
    """Characters are tokens: BOS a b (3) + c d e f (4) + EOS = 8 ids."""
    full = [BOS_ID, *tok.encode("ab"), *tok.encode("cdef"), EOS_ID]
    assert encode_preference("ab", "cdef") == full                      # the tokenizer defaults to the course's
    assert encode_preference("ab", "cdef", tok, max_length=8) == full    # exactly fits: nothing cut
    assert encode_preference("ab", "cdef", tok, max_length=7) == full[:6] + [EOS_ID]  # loses "f"
    assert encode_preference("ab", "cdef", tok, max_length=4) == full[:3] + [EOS_ID]  # the prompt and EOS only
    with pytest.raises(ValueError, match=r"^prompt of 3 tokens \(with BOS\) leaves no room within max_length 3$"):
        encode_preference("ab", "cdef", tok, max_length=3)


def test_pairs_as_tuples_of_three_or_four():
    from toyenv.pairs import as_pairs

    assert as_pairs([("a:", "b", "c", 0.5)])[0].margin == 0.5
    with pytest.raises(ValueError, match=r"^pairs\[0\] should be"):
        as_pairs([("a:", "b", "c", 0.5, "extra")])


def test_the_history_records_steps_rates_accuracies_and_the_eval_schedule(tok):
    pairs = marker_pairs(6, 0)
    cfg = RewardConfig(max_steps=5, batch_size=6, learning_rate=1e-3, warmup_steps=2, min_lr_ratio=0.1, eval_every=2)
    history = reward_model.train(_rm(), pairs, cfg, tok, progress=False, eval_pairs=pairs[:4])
    assert history["step"] == [0, 1, 2, 3, 4]
    # warmup 5e-4, 1e-3, then a cosine from 1e-3 down to 1e-4 over steps 2..5: 1e-3, 7.75e-4, 3.25e-4
    assert history["lr"] == pytest.approx([5e-4, 1e-3, 1e-3, 7.75e-4, 3.25e-4], rel=1e-12)
    # each step's accuracy on its batch of six pairs: a multiple of 1/12 (a tie counts half)
    for a in history["accuracy"]:
        assert isinstance(a, float) and abs(12 * a - round(12 * a)) < 1e-9 and 0 <= a <= 1
    # evaluated before training, every 2 steps, and after the last step
    assert [s for s, _ in history["eval"]] == [0, 2, 4, 5]


def test_a_diverging_reward_model_names_the_learning_rate(tok):
    with pytest.raises(FloatingPointError, match=r"learning_rate=1e\+30\)"):
        reward_model.train(_rm(), marker_pairs(8, 0), RewardConfig(max_steps=10, batch_size=4, learning_rate=1e30,
                                                                   warmup_steps=0), tok, progress=False)


def test_forward_takes_a_mask_of_any_dtype_and_names_a_wrong_shape():
    rm = _rm().eval()
    tokens = torch.tensor([[PAD_ID, BOS_ID, 40, 41], [BOS_ID, 42, 43, 44]])
    mask = tokens != PAD_ID
    want = rm(tokens, mask)
    assert torch.equal(rm(tokens, mask.long()), want) and torch.equal(rm(tokens, mask.float()), want)
    with pytest.raises(ValueError, match=r"^attention_mask shape \(2, 3\) != tokens shape \(2, 4\)$"):
        rm(tokens, mask[:, :3])


def test_a_row_half_padding_on_the_left_scores_what_it_scores_alone():
    rm = _rm().eval()
    alone = rm(torch.tensor([[BOS_ID, 40]]))
    padded = torch.tensor([[PAD_ID, PAD_ID, BOS_ID, 40]])
    assert torch.allclose(rm(padded, padded != PAD_ID), alone, atol=1e-6)
    with pytest.raises(ValueError, match=r"^row 1 has no real token to score$"):
        rm(torch.ones(2, 4, dtype=torch.long), torch.tensor([[True] * 4, [False] * 4]))


def test_bt_margin_is_applied_at_the_scores_precision_and_bad_batches_are_named():
    c, r = torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    # -log sigmoid(0.5 - 0.1) in float64; a float32 margin would be off by about 1e-9
    assert bradley_terry_loss(c, r, 0.1).item() == pytest.approx(math.log1p(math.exp(-0.4)), rel=0, abs=1e-15)
    with pytest.raises(ValueError, match=r"^empty batch: the mean loss of zero pairs is undefined$"):
        bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match=r"^margins must be finite and >= 0 \(see toyenv.pairs.LLAMA2_MARGINS\)$"):
        bradley_terry_loss(c, r, -0.5)


def test_the_head_starts_as_lm_human_preferences_does():
    """N(0, 1/(n_embd + 1)) weights and no bias: the initial scores are of order 1 and centred on 0."""
    rm = _rm()
    assert rm.score.bias is None
    torch.manual_seed(5)
    rm._init_head()
    torch.manual_seed(5)
    want = torch.empty(1, 32).normal_(0.0, 1.0 / math.sqrt(33))
    assert torch.equal(rm.score.weight.detach(), want)


def test_completion_scores_equal_the_forward_over_whole_rows_and_so_do_their_gradients(tok):
    rm = _rm().train()  # dropout is 0: train mode only switches autograd bookkeeping
    prompts = ["abc:", "x:", "defg:"]
    completions = [["cba", "c!"], ["xyzzy!", "z"], ["g", "gfedcba"]]  # two per prompt, of different lengths
    p_ids = [tok.encode(p, bos=True) for p in prompts]
    c_ids = [tok.encode(c, eos=True) for pair in completions for c in pair]
    pt, pm = tok.pad_batch(p_ids, side="left")
    ct, cm = tok.pad_batch(c_ids, side="right")
    shared = rm.completion_scores(pt, pm, ct, cm)
    rows, rmask = tok.pad_batch([encode_preference(prompts[i // 2], c, tok)
                                 for i, c in enumerate(c for pair in completions for c in pair)], side="right")
    whole = rm(rows, rmask)  # the independent expectation: each row [prompt, completion] read whole
    torch.testing.assert_close(shared, whole, atol=2e-5, rtol=1e-5)
    w = torch.linspace(-1.0, 2.0, 6)  # one scalar that weights every score differently
    g_shared = torch.autograd.grad((shared * w).sum(), list(rm.parameters()))
    g_whole = torch.autograd.grad((whole * w).sum(), list(rm.parameters()))
    for (name, _), a, b in zip(rm.named_parameters(), g_shared, g_whole):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")
    # any rows in any order, with their prompts named
    rows_picked = torch.tensor([5, 0, 3])
    picked = rm.completion_scores(pt, pm, ct[rows_picked], cm[rows_picked], rows_picked // 2)
    torch.testing.assert_close(picked, whole[rows_picked].detach(), atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="^completion 1 has no real token to score$"):
        rm.completion_scores(pt[:1], pm[:1], ct[:2], torch.tensor([[True] * ct.shape[1], [False] * ct.shape[1]]))
    with pytest.raises(ValueError, match="5 completions do not split evenly over 3 prompts"):
        rm.completion_scores(pt, pm, ct[:5], cm[:5])


def test_the_trainers_evaluation_scores_chosen_against_rejected_as_whole_rows_do(tok):
    # Before any step, the trainer's held-out accuracy and loss (each prompt read once, chosen and rejected in rows
    # 2i and 2i + 1) equal those of scores read from whole rows: swapped or misaligned rows would not.
    held_out = marker_pairs(40, 1)
    rm = _rm()
    r_c = score_texts(rm, [p for p, _, _ in held_out], [c for _, c, _ in held_out], tok)
    r_r = score_texts(rm, [p for p, _, _ in held_out], [r for _, _, r in held_out], tok)
    expected_loss = float(-F.logsigmoid(r_c - r_r).mean())
    assert float((r_c > r_r).double().mean()) != 0.5  # so that swapping chosen and rejected shows
    history = reward_model.train(rm, marker_pairs(8, 0), RewardConfig(max_steps=1, batch_size=8), tok,
                                 eval_pairs=held_out, progress=False)
    step, first = history["eval"][0]
    assert step == 0
    assert first["accuracy"] == float((r_c > r_r).double().mean())
    assert first["loss"] == pytest.approx(expected_loss, abs=1e-5)
