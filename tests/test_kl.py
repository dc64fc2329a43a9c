import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from toyenv import GPT, GPTConfig, seed_everything, token_logprobs
from toyenv.kl import estimator, exact_categorical, k1, k2, k3, k3_clamped, per_token_kl, reduce_kl, sequence_kl


def _gauss_logpdf(x, mu):
    return -0.5 * (x - mu) ** 2 - 0.5 * math.log(2 * math.pi)


@pytest.fixture(scope="module")
def gaussian_samples():
    """x ~ P = N(0, 1); Q = N(1, 1); KL(P‖Q) = 0.5 exactly."""
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return _gauss_logpdf(x, 0.0), _gauss_logpdf(x, 1.0)


@pytest.mark.parametrize("fn", [k1, k3])
def test_k1_k3_unbiased_on_gaussians(fn, gaussian_samples):
    est = fn(*gaussian_samples)
    stderr = est.std().item() / math.sqrt(est.numel())
    assert abs(est.mean().item() - 0.5) < 4 * stderr


def test_k2_bias_matches_closed_form(gaussian_samples):
    # log Q − log P = x − 1/2 here, so E[k2] = ½ E[(x − ½)²] = ½ (1 + ¼) = 0.625: biased by +25% (Schulman's table).
    est = k2(*gaussian_samples)
    assert est.mean().item() == pytest.approx(0.625, abs=4 * est.std().item() / math.sqrt(est.numel()))


def test_variances_order_as_in_schulmans_note(gaussian_samples):
    assert k3(*gaussian_samples).std() < k1(*gaussian_samples).std()


@settings(max_examples=500, deadline=None)
@given(st.floats(-50, 50), st.floats(-50, 50))
def test_k2_k3_never_negative(lp, lq):
    logp, logq = torch.tensor(lp, dtype=torch.float64), torch.tensor(lq, dtype=torch.float64)
    assert k3(logp, logq).item() >= 0 and k2(logp, logq).item() >= 0
    assert k1(logp, logp).item() == k2(logp, logp).item() == k3(logp, logp).item() == 0


def test_estimator_by_name():
    assert estimator("k3") is k3
    with pytest.raises(ValueError, match=r"kl_estimator must be one of \('k1', 'k2', 'k3'\), got 'k4'"):
        estimator("k4")


def test_exact_categorical_by_hand_and_against_kl_div():
    p, q = torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.25, 0.25, 0.5])
    hand = 0.5 * math.log(2) + 0 + 0.25 * math.log(0.5)
    assert exact_categorical(p.log(), q.log()).item() == pytest.approx(hand)
    g = torch.Generator().manual_seed(1)
    pl, ql = torch.randn(4, 6, 11, generator=g), torch.randn(4, 6, 11, generator=g)
    # F.kl_div(input, target) = KL(target ‖ input): the order is the opposite of the math notation.
    ref = F.kl_div(torch.log_softmax(ql, -1), torch.log_softmax(pl, -1), log_target=True, reduction="none").sum(-1)
    torch.testing.assert_close(exact_categorical(pl, ql), ref)
    assert (exact_categorical(pl, ql) >= 0).all() and torch.allclose(exact_categorical(pl, pl), torch.zeros(4, 6))
    assert exact_categorical(torch.tensor([0.0, float("-inf")]), torch.tensor([0.0, 0.0])).item() == pytest.approx(math.log(2))


def _expected_grad(kl_estimator, theta0, ref_logits):
    """E_{x~π_θ}[∇_θ k(x)] with the sample treated as fixed (what autograd does), by exact enumeration."""
    theta = theta0.clone().requires_grad_(True)
    logp = torch.log_softmax(theta, -1)
    logq = torch.log_softmax(ref_logits, -1)
    weights = logp.exp().detach()  # the sampling distribution carries no gradient
    (weights * estimator(kl_estimator)(logp, logq)).sum().backward()
    return theta.grad


def _grad_of(fn, theta0):
    theta = theta0.clone().requires_grad_(True)
    fn(theta).backward()
    return theta.grad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_identities(seed):
    g = torch.Generator().manual_seed(seed)
    theta, ref = torch.randn(7, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)
    reverse = _grad_of(lambda t: exact_categorical(t, ref), theta)  # ∇ KL(π_θ ‖ ref)
    forward = _grad_of(lambda t: exact_categorical(ref, t), theta)  # ∇ KL(ref ‖ π_θ)
    torch.testing.assert_close(_expected_grad("k1", theta, ref), torch.zeros(7, dtype=torch.float64))
    torch.testing.assert_close(_expected_grad("k2", theta, ref), reverse)
    torch.testing.assert_close(_expected_grad("k3", theta, ref), forward)
    assert not torch.allclose(reverse, forward)


def test_per_token_and_reduction():
    logp = torch.tensor([[0.0, -1.0, -2.0, -3.0]])
    logq = torch.tensor([[0.0, -2.0, -2.5, -1.0]])
    mask = torch.tensor([[False, True, True, False]])
    per_tok = per_token_kl(logp, logq, mask, "k1")
    assert per_tok.tolist() == [[0.0, 1.0, 0.5, 0.0]]
    assert reduce_kl(per_tok, mask, "sum").tolist() == [1.5]
    assert reduce_kl(per_tok, mask, "mean").tolist() == [0.75]
    assert reduce_kl(per_tok, mask, "none").shape == (1, 4)
    # "none" zeroes what the mask leaves out (and keeps the rest as it is)
    assert reduce_kl(torch.tensor([[2.0, 3.0]]), torch.tensor([[True, False]]), "none").tolist() == [[2.0, 0.0]]
    with pytest.raises(ValueError, match="reduction"):
        reduce_kl(per_tok, mask, "max")


def test_defaults_mask_none_and_an_empty_row():
    """The defaults are k1 and "sum"; no mask keeps every token; a row with no generated token has mean 0."""
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]])
    logq = torch.tensor([[-2.0, -1.0], [-1.5, -0.5]])
    # k1 by hand: logp − logq = [[1, −1], [1, 0]]; k2 and k3 would both give positive values at (0, 1)
    assert per_token_kl(logp, logq).tolist() == [[1.0, -1.0], [1.0, 0.0]]
    mask = torch.tensor([[True, True], [False, False]])
    per_tok = per_token_kl(logp, logq, mask)
    assert per_tok.tolist() == [[1.0, -1.0], [0.0, 0.0]]
    assert reduce_kl(torch.tensor([[1.0, 2.0]]), torch.tensor([[True, True]])).tolist() == [3.0]  # "sum"
    # the empty row's mean is 0 / max(0, 1) = 0 (not NaN); a one-token row's mean is that token's value
    one = torch.tensor([[False, True], [False, False]])
    assert reduce_kl(torch.tensor([[5.0, 3.0], [7.0, 7.0]]), one, "mean").tolist() == [3.0, 0.0]


def test_sequence_kl_defaults_and_estimator(tok):
    seed_everything(1)
    cfg = GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=16)
    policy, ref = GPT(cfg), GPT(cfg)
    tokens, mask = policy.generate([tok.encode("hi", bos=True)] * 3, 6, generator=torch.Generator().manual_seed(1))
    d = ((token_logprobs(ref, tokens) - token_logprobs(policy, tokens)) * mask).detach()  # log r per token
    k1_sum = (-d).sum(-1)
    k3_sum = (torch.expm1(d) - d).sum(-1)
    torch.testing.assert_close(sequence_kl(policy, ref, tokens, mask).detach(), k1_sum)  # defaults: k1, sum
    torch.testing.assert_close(sequence_kl(policy, ref, tokens, mask, "k3").detach(), k3_sum)
    assert not torch.allclose(k1_sum, k3_sum)


def test_sequence_kl_on_models(tok):
    seed_everything(0)
    cfg = GPTConfig(block_size=64, n_layer=1, n_head=2, n_embd=32)
    policy, ref = GPT(cfg), GPT(cfg)
    prompts = [tok.encode("reverse ab:", bos=True), tok.encode("hi", bos=True)]
    tokens, mask = policy.generate(prompts, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sequence_kl(ref, ref, tokens, mask, "k3"), torch.zeros(2))
    kl = sequence_kl(policy, ref, tokens, mask, "k1", "sum")
    hand = ((token_logprobs(policy, tokens) - token_logprobs(ref, tokens)) * mask).sum(-1)
    torch.testing.assert_close(kl, hand)
    mean = sequence_kl(policy, ref, tokens, mask, "k1", "mean")
    torch.testing.assert_close(mean, hand / mask.sum(-1))
    kl.sum().backward()  # gradients reach the policy only
    assert policy.lm_head.weight.grad is not None and ref.lm_head.weight.grad is None


def test_k1_on_sampled_tokens_estimates_the_exact_next_token_kl(tok):
    """Average k1 over many one-token samples from the policy ≈ exact KL of the next-token distributions."""
    seed_everything(1)
    cfg = GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=32)
    policy, ref = GPT(cfg), GPT(cfg)
    with torch.no_grad():
        policy.lm_head.weight.mul_(20)  # make the two next-token distributions clearly different
    prompt = tok.encode("abc", bos=True)
    tokens, mask = policy.generate([prompt] * 20_000, 1, eos_id=None, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        est = sequence_kl(policy, ref, tokens, mask, "k1")
        x = torch.tensor([prompt])
        exact = exact_categorical(policy(x)[0, -1], ref(x)[0, -1]).item()
    assert exact > 0.1
    assert abs(est.mean().item() - exact) < 4 * est.std().item() / math.sqrt(est.numel())


# ---------------------------------------------------------------- completion_kl (KL of two models on completions)
def _tiny_pair():
    torch.manual_seed(0)
    p = GPT(GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=16))
    q = GPT(GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=16))
    return p, q


def test_completion_kl_of_one_token_is_the_exact_categorical_kl():
    from toyenv.kl import completion_kl
    from toyenv.tokenizer import Tokenizer

    p, q = _tiny_pair()
    tok = Tokenizer()
    prompts = ["ab", "hello", "x"]
    got = completion_kl(p, q, prompts, tok, max_new_tokens=1)
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([tok.encode(prompt, bos=True)])
        with torch.no_grad():
            want = exact_categorical(p(ids)[0, -1], q(ids)[0, -1])
        assert got[i].item() == pytest.approx(want.item(), rel=1e-4)


def test_completion_kl_is_zero_for_the_same_model_and_positive_otherwise():
    from toyenv.kl import completion_kl
    from toyenv.tokenizer import Tokenizer

    p, q = _tiny_pair()
    tok = Tokenizer()
    same = completion_kl(p, p, ["ab", "cd"], tok, max_new_tokens=8)
    assert torch.allclose(same, torch.zeros(2), atol=1e-6)
    other = completion_kl(p, q, ["ab", "cd"], tok, max_new_tokens=8, seed=1)
    assert (other > 0).all()
    assert torch.equal(other, completion_kl(p, q, ["ab", "cd"], tok, max_new_tokens=8, seed=1))  # seeded
    assert p.training and q.training  # modes restored
    with pytest.raises(ValueError, match="at least one prompt"):
        completion_kl(p, q, [], tok)


# ---------------------------------------------------------------- completion_tv (total variation on completions)
def test_completion_tv_of_one_token_estimates_the_exact_total_variation():
    """With one-token completions TV(P, Q) = ½ Σ_v |P(v) − Q(v)| over the next token, exactly; the estimator
    (1 − Q(y)/P(y))₊ with y ~ P averages to it (within 4 standard errors over 3,000 samples)."""
    from toyenv.kl import completion_tv
    from toyenv.tokenizer import Tokenizer

    p, q = _tiny_pair()
    with torch.no_grad():
        q.lm_head.weight.mul_(40)  # move Q's next-token distribution well away from P's
    tok = Tokenizer()
    est = completion_tv(p, q, ["ab"] * 3000, tok, max_new_tokens=1, seed=0)
    ids = torch.tensor([tok.encode("ab", bos=True)])
    with torch.no_grad():
        exact = 0.5 * (p(ids)[0, -1].softmax(-1) - q(ids)[0, -1].softmax(-1)).abs().sum().item()
    assert exact > 0.1
    assert ((est >= 0) & (est <= 1)).all()
    assert abs(est.mean().item() - exact) < 4 * est.std().item() / math.sqrt(est.numel())


def test_completion_tv_is_zero_for_the_same_model_and_seeded():
    from toyenv.kl import completion_tv
    from toyenv.tokenizer import Tokenizer

    p, q = _tiny_pair()
    tok = Tokenizer()
    assert torch.equal(completion_tv(p, p, ["ab", "cd"], tok, max_new_tokens=8), torch.zeros(2))
    other = completion_tv(p, q, ["ab", "cd"], tok, max_new_tokens=8, seed=1)
    assert torch.equal(other, completion_tv(p, q, ["ab", "cd"], tok, max_new_tokens=8, seed=1))
    assert p.training and q.training  # modes restored
    with pytest.raises(ValueError, match="at least one prompt"):
        completion_tv(p, q, [], tok)


def test_completion_kl_and_tv_score_both_models_in_eval_mode():
    """Dropout is off while sampling and scoring: models in train mode give what the same models in eval mode give,
    and keep their mode."""
    from toyenv.kl import completion_kl, completion_tv
    from toyenv.tokenizer import Tokenizer

    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, n_layer=1, n_head=2, n_embd=16, dropout=0.5)
    p, q = GPT(cfg), GPT(cfg)
    tok = Tokenizer()
    for fn in (completion_kl, completion_tv):
        want = fn(p.eval(), q.eval(), ["ab", "cd"], tok, max_new_tokens=6)
        for p_train, q_train in [(True, False), (False, True), (True, True)]:
            p.train(p_train), q.train(q_train)
            assert torch.equal(fn(p, q, ["ab", "cd"], tok, max_new_tokens=6), want), (fn.__name__, p_train, q_train)
            assert (p.training, q.training) == (p_train, q_train)


def test_k3_clamped_is_verls_two_clamps_with_their_gradients():
    """By hand: log r = log q − log p. Inside both ranges it is k3 with k3's gradient (dk3/dlog p = 1 − r); beyond
    k3 = 10 the value is 10 and the gradient 0; beyond |log r| = 20 the log-ratio is held at ±20 (value 10)."""
    logq = torch.zeros(5, dtype=torch.float64)
    log_r = torch.tensor([0.5, -0.5, 2.0, 3.0, 30.0], dtype=torch.float64)
    logp = (logq - log_r).requires_grad_(True)
    out = k3_clamped(logp, logq)
    r = log_r.exp()
    want = torch.minimum(r - 1 - log_r, torch.tensor(10.0, dtype=torch.float64))
    torch.testing.assert_close(out.detach(), want, rtol=0, atol=1e-12)
    assert math.exp(3.0) - 1 - 3.0 > 10 and out[3].item() == 10.0  # e^3 − 4 = 16.1: clamped
    out.sum().backward()
    grad_want = torch.tensor([1 - math.exp(0.5), 1 - math.exp(-0.5), 1 - math.exp(2.0), 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(logp.grad, grad_want, rtol=0, atol=1e-12)
    # the log-ratio clamp alone (value_max large): held at 20, so the value is e^20 − 21 and the gradient 0
    v = k3_clamped(torch.tensor([-30.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64),
                   value_max=1e12)
    assert v.item() == pytest.approx(math.exp(20) - 21, rel=1e-12)
    # float32: plain k3 overflows at log r = 100, the clamped one stays finite
    assert torch.isinf(k3(torch.tensor([-100.0]), torch.tensor([0.0]))).all()
    assert k3_clamped(torch.tensor([-100.0]), torch.tensor([0.0])).item() == 10.0
    with pytest.raises(ValueError, match="log_ratio_max and value_max must be > 0"):
        k3_clamped(logp, logq, value_max=0)


def test_k3_clamped_lower_log_ratio_clamp_and_the_ranges_it_accepts():
    """log r = −30 is held at −20 (k3 = e^−20 + 19, not e^−30 + 29) when the value clamp is out of the way; any
    positive bounds are accepted, 0 is not."""
    v = k3_clamped(torch.tensor([30.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64),
                   value_max=1e12)
    assert v.item() == pytest.approx(math.exp(-20) + 19, rel=1e-12)
    small = k3_clamped(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64),
                       log_ratio_max=0.5, value_max=0.5)  # log r = 1 held at 0.5: e^0.5 − 1.5 = 0.1487 < 0.5
    assert small.item() == pytest.approx(math.exp(0.5) - 1.5, rel=1e-12)
    with pytest.raises(ValueError, match="log_ratio_max and value_max must be > 0, got 0 and 10.0"):
        k3_clamped(torch.zeros(1), torch.zeros(1), log_ratio_max=0)
