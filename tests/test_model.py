import pytest
import torch

from toyenv import EOS_ID, PAD_ID, GPT, GPTConfig, seed_everything, token_logprobs


def _prompts(tok):
    return [tok.encode(t, bos=True) for t in ("reverse abc:", "hi", "Cards: K 5 3 A. Make 24.\nAnswer: ")]


def test_forward_returns_logits_at_every_position(small_model):
    idx = torch.randint(3, 99, (3, 17))
    assert small_model(idx).shape == (3, 17, small_model.config.vocab_size)
    with pytest.raises(ValueError, match="exceeds block_size"):
        small_model(torch.zeros(1, small_model.config.block_size + 1, dtype=torch.long))


def test_tied_embeddings(small_model):
    assert small_model.lm_head.weight is small_model.transformer.wte.weight


def test_left_padding_does_not_change_logits(small_model, tok):
    prompts = _prompts(tok)
    ids, mask = tok.pad_batch(prompts, side="left")
    padded = small_model(ids, mask)
    for b, p in enumerate(prompts):
        alone = small_model(torch.tensor([p]))[0]
        torch.testing.assert_close(padded[b, -len(p):], alone, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(padded).all()  # pad queries never see an all-masked row


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_kv_cache_equals_no_cache(small_model, tok, seed):
    seed_everything(seed)
    model = GPT(GPTConfig(block_size=96, n_layer=2, n_head=4, n_embd=64)).eval()
    a, ma = model.generate(_prompts(tok), 40, greedy=True, use_cache=True)
    b, mb = model.generate(_prompts(tok), 40, greedy=True, use_cache=False)
    assert torch.equal(a, b) and torch.equal(ma, mb)


def test_sampling_with_cache_equals_no_cache_given_same_generator(small_model, tok):
    a, _ = small_model.generate(_prompts(tok), 30, temperature=1.3, top_k=10, generator=torch.Generator().manual_seed(5))
    b, _ = small_model.generate(_prompts(tok), 30, temperature=1.3, top_k=10, generator=torch.Generator().manual_seed(5),
                                use_cache=False)
    assert torch.equal(a, b)


def test_num_return_sequences_shares_the_prompt(small_model, tok):
    """k samples per prompt: rows i*k..i*k+k-1 belong to prompt i, and equal generating from repeated prompts."""
    prompts, k = _prompts(tok), 3
    repeated = [p for p in prompts for _ in range(k)]
    a, ma = small_model.generate(prompts, 20, greedy=True, num_return_sequences=k)
    b, mb = small_model.generate(repeated, 20, greedy=True)
    assert a.shape[0] == len(prompts) * k and torch.equal(a, b) and torch.equal(ma, mb)
    # sampling: the same as the repeated prompts with the same generator, with and without the cache
    s1, _ = small_model.generate(prompts, 20, generator=torch.Generator().manual_seed(1), num_return_sequences=k)
    s2, _ = small_model.generate(repeated, 20, generator=torch.Generator().manual_seed(1))
    s3, _ = small_model.generate(prompts, 20, generator=torch.Generator().manual_seed(1), num_return_sequences=k,
                                 use_cache=False)
    assert torch.equal(s1, s2) and torch.equal(s1, s3)
    texts = tok.decode_batch(s1, small_model.generate(prompts, 20, generator=torch.Generator().manual_seed(1),
                                                      num_return_sequences=k)[1])
    assert len(set(texts)) > len(prompts)  # the k samples of a prompt differ
    t0, m0 = small_model.generate(prompts, 0, num_return_sequences=k)
    assert t0.shape[0] == len(prompts) * k and not m0.any()


def test_batched_generation_equals_one_prompt_at_a_time(small_model, tok):
    prompts = _prompts(tok)
    tokens, mask = small_model.generate(prompts, 25, greedy=True)
    batched = tok.decode_batch(tokens, mask)
    for i, p in enumerate(prompts):
        t1, m1 = small_model.generate([p], 25, greedy=True)
        assert tok.decode_batch(t1, m1)[0] == batched[i]


def test_generated_mask_and_eos_stop(small_model, tok):
    model = small_model
    prompts = _prompts(tok)
    P = max(len(p) for p in prompts)
    tokens, mask = model.generate(prompts, 12, greedy=True)
    assert tokens.shape == mask.shape and tokens.shape[1] <= P + 12
    assert not mask[:, :P].any()  # prompts are never marked as generated
    # Force EOS: a model whose only output is EOS stops after one token, with EOS marked generated.
    class AlwaysEOS(GPT):
        def _forward(self, idx, pos, attn_mask=None, caches=None, cache_pos=0):
            out = torch.full((*idx.shape, self.config.vocab_size), -1e9)
            out[..., EOS_ID] = 0.0
            return out
    eos_model = AlwaysEOS(model.config)
    t, m = eos_model.generate(prompts, 12, greedy=True)
    assert t.shape[1] == P + 1 and (t[:, -1] == EOS_ID).all() and m[:, -1].all()


def test_rows_stop_independently_and_are_padded_after_eos(small_model, tok):
    seed_everything(3)
    tokens, mask = small_model.generate(_prompts(tok) * 8, 30, temperature=3.0, eos_id=tok.encode("e")[0])
    P = max(len(p) for p in _prompts(tok))
    e = tok.encode("e")[0]
    for row, m in zip(tokens.tolist(), mask.tolist()):
        gen = row[P:]
        if e in gen:
            k = gen.index(e)
            assert all(t == PAD_ID for t in gen[k + 1:]) and not any(m[P + k + 1:]) and all(m[P:P + k + 1])
        else:
            assert all(m[P:])


def test_generate_rejects_bad_arguments(small_model, tok):
    with pytest.raises(ValueError, match="empty"):
        small_model.generate([[]], 3)
    with pytest.raises(ValueError, match="exceeds block_size"):
        small_model.generate([[1] * 90], 10)
    with pytest.raises(ValueError, match="temperature"):
        small_model.generate([[1]], 3, temperature=0)
    with pytest.raises(ValueError, match="top_k"):
        small_model.generate([[1]], 3, top_k=0)
    with pytest.raises(ValueError, match="num_return_sequences"):
        small_model.generate([[1]], 3, num_return_sequences=0)


def test_top_k_1_is_greedy(small_model, tok):
    a, _ = small_model.generate(_prompts(tok), 15, greedy=True)
    b, _ = small_model.generate(_prompts(tok), 15, top_k=1, temperature=0.7)
    assert torch.equal(a, b)


def test_token_logprobs_equals_hand_computation(small_model, tok):
    prompts = _prompts(tok)
    tokens, mask = small_model.generate(prompts, 10, greedy=False, generator=torch.Generator().manual_seed(0))
    lp = token_logprobs(small_model, tokens)
    assert lp.shape == tokens.shape and (lp[:, 0] == 0).all()
    for b in range(tokens.shape[0]):
        row = tokens[b][tokens[b] != PAD_ID]  # this row alone, no padding at all
        logits = small_model(row[None])[0]
        for t in range(1, len(row)):
            hand = logits[t - 1].double().softmax(-1)[row[t]].log()
            col = (tokens[b] != PAD_ID).nonzero()[t].item()
            assert abs(lp[b, col].item() - hand.item()) < 1e-4
    # Sum over generated tokens = log-probability of the completion.
    assert torch.all((lp * mask).sum(-1) <= 0)


def test_token_logprobs_has_gradients(small_model):
    tokens = torch.randint(3, 99, (2, 8))
    lp = token_logprobs(small_model, tokens)
    lp.sum().backward()
    assert small_model.lm_head.weight.grad is not None and torch.isfinite(small_model.lm_head.weight.grad).all()


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=100, n_head=3)


# ---------------------------------------------------------------- completions scored with each prompt read once
def _grouped_rollout(tok, k=3):
    """Three left-padded prompts, k completions each (rows i*k .. i*k+k-1 continue prompt i), some ended early
    (pads after their EOS, and one that sampled the PAD id itself as a real token)."""
    ids, prompt_mask = tok.pad_batch(_prompts(tok), side="left")
    g = torch.Generator().manual_seed(0)
    completions = torch.randint(3, 99, (3 * k, 7), generator=g)
    completion_mask = torch.ones_like(completions, dtype=torch.bool)
    completions[1, 2], completions[1, 3:], completion_mask[1, 3:] = EOS_ID, PAD_ID, False
    completions[5, 0], completions[5, 1:], completion_mask[5, 1:] = EOS_ID, PAD_ID, False
    completions[7, 4] = PAD_ID  # sampled, so real
    return ids, prompt_mask, completions, completion_mask


def _whole_rows(model, ids, prompt_mask, completions, completion_mask, index):
    """The plain way: forward over each row [prompt, completion]; its logits at columns P-1 .. P+S-2."""
    rows = torch.cat((ids[index], completions), 1)
    attn = torch.cat((prompt_mask[index], completion_mask), 1)
    return model(rows, attn)[:, ids.shape[1] - 1: -1]


def test_completion_logits_equal_the_forward_over_whole_rows_and_so_do_their_gradients(small_model, tok):
    ids, pm, comp, cm = _grouped_rollout(tok)
    index = torch.arange(3).repeat_interleave(3)
    small_model.train()  # dropout is 0: train mode only switches autograd bookkeeping
    shared = small_model.completion_logits(ids, pm, comp, cm)
    whole = _whole_rows(small_model, ids, pm, comp, cm, index)
    assert shared.shape == (9, 7, small_model.config.vocab_size)
    torch.testing.assert_close(shared, whole, atol=2e-5, rtol=1e-5)
    # One scalar that weights every real completion position differently: the prompts' gradients gather from k rows.
    w = torch.linspace(0.5, 2.0, 7) * cm
    loss_of = lambda logits: (torch.log_softmax(logits, -1)[..., 5] * w).sum()  # noqa: E731
    g_shared = torch.autograd.grad(loss_of(shared), list(small_model.parameters()))
    g_whole = torch.autograd.grad(loss_of(whole), list(small_model.parameters()))
    for (name, _), a, b in zip(small_model.named_parameters(), g_shared, g_whole):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=f"gradient of {name}")


def test_completion_logits_of_any_rows_in_any_order(small_model, tok):
    ids, pm, comp, cm = _grouped_rollout(tok)
    rows = torch.tensor([7, 1, 2, 8])  # prompts 2, 0, 0, 2: a shuffled minibatch
    picked = small_model.completion_logits(ids[[0, 2]], pm[[0, 2]], comp[rows], cm[rows], torch.tensor([1, 0, 0, 1]))
    whole = _whole_rows(small_model, ids, pm, comp[rows], cm[rows], rows // 3)
    torch.testing.assert_close(picked, whole, atol=2e-5, rtol=1e-5)


def test_completion_logprobs_pick_each_completion_token_from_its_own_distribution(small_model, tok):
    from toyenv.model import completion_logprobs

    ids, pm, comp, cm = _grouped_rollout(tok)
    picked, logdist = completion_logprobs(small_model, ids, pm, comp, cm, temperature=2.0)
    logits = _whole_rows(small_model, ids, pm, comp, cm, torch.arange(3).repeat_interleave(3)) / 2.0
    expected = torch.log_softmax(logits, -1)
    torch.testing.assert_close(logdist, expected, atol=2e-5, rtol=1e-5)
    for b, j in ((0, 0), (4, 6), (7, 4)):  # written out: row b's token j under its own distribution
        torch.testing.assert_close(picked[b, j], expected[b, j, comp[b, j]])
    one = small_model.completion_logits(ids, pm, comp[:, :1], cm[:, :1])  # only the prompt predicts
    torch.testing.assert_close(one, _whole_rows(small_model, ids, pm, comp[:, :1], cm[:, :1],
                                                torch.arange(3).repeat_interleave(3)), atol=2e-5, rtol=1e-5)


def test_completion_logits_refuse_what_they_cannot_score(small_model, tok):
    ids, pm, comp, cm = _grouped_rollout(tok)
    with pytest.raises(ValueError, match=r"8 completions do not split evenly over 3 prompts; pass prompt_index"):
        small_model.completion_logits(ids, pm, comp[:8], cm[:8])
    with pytest.raises(ValueError, match=r"completion_mask \(9, 6\)"):
        small_model.completion_logits(ids, pm, comp, cm[:, :6])
    long = torch.full((9, 96 - ids.shape[1] + 1), 5)
    with pytest.raises(ValueError, match=rf"prompt \({ids.shape[1]}\) \+ completion \({long.shape[1]}\) tokens "
                                         r"exceed block_size 96"):
        small_model.completion_logits(ids, pm, long, torch.ones_like(long, dtype=torch.bool))
