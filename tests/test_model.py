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
