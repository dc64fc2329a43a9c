"""The pairwise preference losses against hand computations: DPO, DPO+NLL, RPO and REBEL
(`toyenv.trainers.dpo`), the Bradley–Terry loss with Llama 2's margins (`toyenv.trainers.reward_model`), and the
sequence log-probs they read."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toyenv import GPT, GPTConfig, Tokenizer, seed_everything
from toyenv.pairs import PreferencePair, margins_for
from toyenv.tokenizer import PAD_ID, collate, encode_pairs
from toyenv.trainers.dpo import dpo_loss, dpo_nll_loss, pair_logprobs, rebel_loss, rpo_loss, sequence_logprob
from toyenv.trainers.reward_model import bradley_terry_loss

TINY = dict(block_size=32, n_layer=2, n_head=2, n_embd=32)
T = torch.tensor


def nlogsig(x: float) -> float:
    """−log σ(x) = log(1 + e^(−x)), by hand."""
    return math.log1p(math.exp(-x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _gpt(seed=0):
    seed_everything(seed)
    return GPT(GPTConfig(**TINY)).eval()


# --------------------------------------------------------------------------- sequence log-probs
def test_sequence_logprob_matches_a_manual_sum():
    model = _gpt()
    data = [("ab:", "ba"), ("abcd:", "x")]
    tokens, completion_mask = collate(encode_pairs(data))  # right-padded; row 0 is shorter
    got_sum = sequence_logprob(model, tokens, tokens != PAD_ID, completion_mask)
    got_avg = sequence_logprob(model, tokens, tokens != PAD_ID, completion_mask, average=True)
    tok = Tokenizer()
    for b, (prompt, completion) in enumerate(data):
        ids = tok.encode(prompt, bos=True) + tok.encode(completion, eos=True)
        with torch.no_grad():
            logdist = torch.log_softmax(model(T([ids]))[0], -1)  # the row alone, no padding
        n_prompt = len(tok.encode(prompt, bos=True))
        terms = [logdist[t - 1, ids[t]].item() for t in range(n_prompt, len(ids))]  # position t-1 predicts token t
        assert len(terms) == len(completion) + 1  # the completion and its EOS
        assert got_sum[b].item() == pytest.approx(sum(terms), abs=1e-4)
        assert got_avg[b].item() == pytest.approx(sum(terms) / len(terms), abs=1e-4)


def test_sequence_logprob_reads_the_given_masks_not_the_pad_id():
    """A sampled row may hold the PAD id as a real token: with an explicit attention_mask it is scored like any
    other (here against the plain causal forward pass), and a 0/1 completion mask of any dtype means the same as
    a bool one."""
    model = _gpt()
    tokens = T([[1, 5, PAD_ID, 7, 8, 9]])       # PAD_ID at position 2 is a real, sampled token
    attn = torch.ones_like(tokens, dtype=torch.bool)
    scored = T([[False, False, True, True, True, False]])
    with torch.no_grad():
        logdist = torch.log_softmax(model(tokens)[0], -1)
        want = sum(logdist[t - 1, tokens[0, t]].item() for t in (2, 3, 4))
        for mask in (scored, scored.float(), scored.long()):
            assert sequence_logprob(model, tokens, attn, mask).item() == pytest.approx(want, abs=1e-5)
        for attention in (attn.float(), attn.long()):  # and so does a 0/1 attention mask
            assert sequence_logprob(model, tokens, attention, scored).item() == pytest.approx(want, abs=1e-5)


def test_sequence_logprob_rejects_misaligned_masks():
    model = _gpt()
    tokens, mask = collate(encode_pairs([("ab:", "ba"), ("abcd:", "x")]))
    attn = tokens != PAD_ID
    shifted = torch.zeros_like(mask)
    shifted[:, 0] = True
    with pytest.raises(ValueError, match="column 0"):
        sequence_logprob(model, tokens, attn, shifted)
    on_pad = mask.clone()
    on_pad[0, -1] = True  # row 0 (7 tokens) is padded at the end (row 1 has 8)
    with pytest.raises(ValueError, match="padding"):
        sequence_logprob(model, tokens, attn, on_pad)
    empty = mask.clone()
    empty[0] = False
    with pytest.raises(ValueError, match="row 0"):
        sequence_logprob(model, tokens, attn, empty)
    with pytest.raises(ValueError, match=r"^completion_mask shape \(2, 7\) != tokens shape \(2, 8\)$"):
        sequence_logprob(model, tokens, attn, mask[:, :-1])
    with pytest.raises(ValueError, match=r"^attention_mask shape \(2, 7\) != tokens shape \(2, 8\)$"):
        sequence_logprob(model, tokens, attn[:, :-1], mask)
    with pytest.raises(ValueError, match=r"^tokens must be \(batch, time\), got shape \(8,\)$"):
        sequence_logprob(model, tokens[0], None, mask[0])  # one row without its batch dimension


def test_pair_logprobs_scores_chosen_and_rejected_in_one_pass():
    model = _gpt()
    pairs = [PreferencePair("ab:", "ba", "bb"),
             PreferencePair("c:", "c", "cc!", strength="better", reward_chosen=1.0, reward_rejected=-1.0)]
    with torch.no_grad():
        chosen, rejected = pair_logprobs(model, pairs)
        for col, side in ((chosen, "chosen"), (rejected, "rejected")):
            tokens, mask = collate(encode_pairs([(p.prompt, getattr(p, side)) for p in pairs]))
            assert torch.allclose(col, sequence_logprob(model, tokens, tokens != PAD_ID, mask), atol=1e-5)
    with pytest.raises(ValueError, match="prompt"):
        pair_logprobs(model, [("ab:", "ba", "bb")])
    with pytest.raises(ValueError, match="^pair_logprobs needs at least one pair$"):
        pair_logprobs(model, [])


# --------------------------------------------------------------------------- DPO
def test_dpo_loss_by_hand():
    beta = 0.1
    pc = T([-3.0, -5.0], requires_grad=True)
    pr, rc, rr = T([-4.0, -4.0]), T([-3.5, -4.5]), T([-3.5, -4.0])
    # row 0: h = (-3 + 3.5) - (-4 + 3.5) = 1.0;   row 1: h = (-5 + 4.5) - (-4 + 4) = -0.5
    loss, chosen_r, rejected_r = dpo_loss(pc, pr, rc, rr, beta)
    assert loss.item() == pytest.approx((nlogsig(0.1) + nlogsig(-0.05)) / 2, rel=1e-6)
    assert torch.allclose(chosen_r, T([0.05, -0.05]))
    assert torch.allclose(rejected_r, T([-0.05, 0.0]))
    assert not chosen_r.requires_grad and not rejected_r.requires_grad
    # equal log-ratios: σ(0) = 1/2, loss log 2
    zero = torch.zeros(3)
    assert dpo_loss(zero, zero, zero, zero, 0.5)[0].item() == pytest.approx(math.log(2))


def test_dpo_loss_rejects_bad_input():
    x = torch.zeros(2)
    for beta in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="beta"):
            dpo_loss(x, x, x, x, beta)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(x, torch.zeros(3), x, x, 0.1)
    with pytest.raises(ValueError, match=r"^empty batch: the mean loss of zero pairs is undefined$"):
        dpo_loss(*(torch.zeros(0),) * 4, 0.1)


@settings(max_examples=60, deadline=None)
@given(h1=st.floats(-50, 50), dh=st.floats(0.01, 50), beta=st.floats(0.01, 2.0))
def test_dpo_loss_is_nonnegative_and_decreasing_in_the_gap(h1, dh, beta):
    zero = torch.zeros(1, dtype=torch.float64)
    loss = lambda h: dpo_loss(torch.tensor([h], dtype=torch.float64), zero, zero, zero, beta)[0].item()  # noqa: E731
    assert loss(h1) >= 0.0
    assert loss(h1 + dh) <= loss(h1)


def test_dpo_nll_adds_alpha_times_the_chosen_nll():
    beta, alpha = 0.1, 0.5
    lengths = T([3.0, 2.0])
    pr, rc, rr = T([-4.0, -4.0]), T([-3.5, -4.5]), T([-3.5, -4.0])

    pc_plain = T([-3.0, -6.0], requires_grad=True)
    dpo, _, _ = dpo_loss(pc_plain, pr, rc, rr, beta)
    dpo.backward()

    pc = T([-3.0, -6.0], requires_grad=True)
    chosen_nll = -pc / lengths  # length-normalized NLL: 3/3 = 1 and 6/2 = 3, mean 2
    loss, parts = dpo_nll_loss(pc, pr, rc, rr, beta, alpha, chosen_nll)
    assert parts["nll"].item() == pytest.approx(2.0)
    assert parts["dpo"].item() == pytest.approx(dpo.item())
    assert loss.item() == pytest.approx(dpo.item() + alpha * 2.0)
    loss.backward()
    # d(α · mean(−pc / len)) / d pc = α · (−1 / len) / B = 0.5 · [−1/3, −1/2] / 2
    assert torch.allclose(pc.grad - pc_plain.grad, T([-1 / 12, -1 / 8]))
    assert dpo_nll_loss(pc, pr, rc, rr, beta, 0.0, chosen_nll)[0].item() == pytest.approx(dpo.item())
    with pytest.raises(ValueError, match="alpha"):
        dpo_nll_loss(pc, pr, rc, rr, beta, -1.0, chosen_nll)
    with pytest.raises(ValueError, match="shape"):
        dpo_nll_loss(pc, pr, rc, rr, beta, alpha, chosen_nll[:1])


# --------------------------------------------------------------------------- margins (Llama 2)
def test_margin_zero_is_exactly_bradley_terry():
    r_c, r_r = T([1.0, 0.5, -1.0]), T([0.0, 1.0, -3.0])
    plain = bradley_terry_loss(r_c, r_r)
    assert torch.equal(bradley_terry_loss(r_c, r_r), plain)
    assert torch.equal(bradley_terry_loss(r_c, r_r, 0.0), plain)
    assert torch.equal(bradley_terry_loss(r_c, r_r, torch.zeros(3)), plain)


def test_margin_loss_by_hand():
    r_c, r_r = T([2.0, 2.0]), T([1.0, 1.0])
    # margins 3 ("significantly_better", large table) and 0: −log σ(1 − 3) and −log σ(1)
    m = margins_for(["significantly_better", "negligibly_better"], "large")
    assert bradley_terry_loss(r_c, r_r, m).item() == pytest.approx((nlogsig(-2.0) + nlogsig(1.0)) / 2, rel=1e-6)
    assert bradley_terry_loss(r_c, r_r, 1.0).item() == pytest.approx(math.log(2), rel=1e-6)  # the margin just met
    with pytest.raises(ValueError, match=">= 0"):
        bradley_terry_loss(r_c, r_r, -1.0)
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(r_c, r_r, torch.zeros(3))


@settings(max_examples=60, deadline=None)
@given(d=st.floats(-20, 20), m1=st.floats(0, 10), dm=st.floats(0, 10))
def test_margin_loss_is_monotone_in_the_margin(d, m1, dm):
    r_c, r_r = torch.tensor([d], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    assert bradley_terry_loss(r_c, r_r, m1 + dm).item() >= bradley_terry_loss(r_c, r_r, m1).item()


# --------------------------------------------------------------------------- RPO
@pytest.mark.parametrize("divergence", ["bce", "squared"])
def test_rpo_is_zero_when_the_implicit_gap_matches_the_target(divergence):
    # h = (-3 + 4) - (-4 + 4) = 1; β h = 0.5 = η Δr = 0.25 · (1 − (−1))
    pc, pr, rc, rr = T([-3.0]), T([-4.0]), T([-4.0]), T([-4.0])
    loss = rpo_loss(pc, pr, rc, rr, T([1.0]), T([-1.0]), beta=0.5, eta=0.25, divergence=divergence)
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_rpo_by_hand_and_its_gradient_points_to_the_target():
    pr, rc, rr, r_c, r_r = T([-4.0, -4.0]), T([-4.0, -4.0]), T([-4.0, -4.0]), T([1.0, 1.0]), T([-1.0, -1.0])
    pc = T([-3.0, -1.0], requires_grad=True)  # h = 1 and 3: g = 0.1 and 0.3 (β = 0.1); target t = 0.25 · 2 = 0.5
    g, t = [0.1, 0.3], 0.5
    squared = rpo_loss(pc, pr, rc, rr, r_c, r_r, beta=0.1, eta=0.25, divergence="squared")
    assert squared.item() == pytest.approx(((0.1 - 0.5) ** 2 + (0.3 - 0.5) ** 2) / 2, rel=1e-5)
    kl = lambda p, q: p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))  # noqa: E731
    bce = rpo_loss(pc, pr, rc, rr, r_c, r_r, beta=0.1, eta=0.25)
    assert bce.item() == pytest.approx((kl(sig(t), sig(g[0])) + kl(sig(t), sig(g[1]))) / 2, rel=1e-4)
    bce.backward()
    # dD/dg = σ(g) − σ(t), dg/dpc = β, and the mean divides by B = 2
    want = [0.1 * (sig(gi) - sig(t)) / 2 for gi in g]
    assert torch.allclose(pc.grad, T(want), atol=1e-7)
    assert (pc.grad < 0).all()  # g < t: descent raises log π(y_c), i.e. g, toward t
    pc_over = T([7.0], requires_grad=True)  # h = 11, g = 1.1 > t
    rpo_loss(pc_over, pr[:1], rc[:1], rr[:1], r_c[:1], r_r[:1], beta=0.1, eta=0.25).backward()
    assert pc_over.grad.item() > 0  # overshoot: pushed back down, which DPO would never do


def test_rpo_with_a_large_target_is_dpo():
    pc, pr, rc, rr = T([-3.0, -5.0]), T([-4.0, -4.0]), T([-3.5, -4.5]), T([-3.5, -4.0])
    dpo = dpo_loss(pc, pr, rc, rr, 0.1)[0]
    rpo = rpo_loss(pc, pr, rc, rr, T([40.0, 40.0]), T([0.0, 0.0]), beta=0.1, eta=1.0)
    assert rpo.item() == pytest.approx(dpo.item(), abs=1e-6)


def test_rpo_rejects_bad_input():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="divergence"):
        rpo_loss(x, x, x, x, x, x, beta=0.1, divergence="kl")
    with pytest.raises(ValueError, match="eta"):
        rpo_loss(x, x, x, x, x, x, beta=0.1, eta=0.0)
    with pytest.raises(ValueError, match="shape"):
        rpo_loss(x, x, x, x, torch.zeros(3), torch.zeros(3), beta=0.1)


@settings(max_examples=60, deadline=None)
@given(h=st.floats(-30, 30), dr=st.floats(-10, 10), beta=st.floats(0.01, 2.0), eta=st.floats(0.01, 2.0))
def test_rpo_bce_is_a_nonnegative_divergence(h, dr, beta, eta):
    zero = torch.zeros(1, dtype=torch.float64)
    hh, r = torch.tensor([h], dtype=torch.float64), torch.tensor([dr], dtype=torch.float64)
    assert rpo_loss(hh, zero, zero, zero, r, zero, beta=beta, eta=eta).item() >= -1e-12


# --------------------------------------------------------------------------- REBEL
def test_rebel_is_zero_at_its_target_and_by_hand_otherwise():
    pc, pr, rc, rr = T([-3.0]), T([-4.0]), T([-4.0]), T([-4.0])  # h = 1
    assert rebel_loss(pc, pr, rc, rr, T([1.0]), T([-1.0]), eta=0.5).item() == pytest.approx(0.0, abs=1e-12)
    # rows h = 1 and h = −1 (policy chosen −5), Δr = 3, η = 0.5: (2 − 3)² = 1 and (−2 − 3)² = 25, mean 13
    pc2 = T([-3.0, -5.0])
    loss = rebel_loss(pc2, T([-4.0, -4.0]), T([-4.0, -4.0]), T([-4.0, -4.0]), T([2.0, 2.0]), T([-1.0, -1.0]), 0.5)
    assert loss.item() == pytest.approx(13.0)
    with pytest.raises(ValueError, match="eta"):
        rebel_loss(pc, pr, rc, rr, T([1.0]), T([-1.0]), eta=-0.5)




def test_margin_loss_refuses_mismatched_shapes_and_names_the_margin_rule():
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="margins must be finite and >= 0"):
        bradley_terry_loss(torch.zeros(2), torch.zeros(2), -1.0)


def test_rpo_defaults_and_refusals():
    T = torch.tensor
    args = (T([-1.0, -2.0]), T([-3.0, -1.0]), T([-1.5, -1.5]), T([-2.0, -2.0]), T([5.0, -1.0]), T([-1.0, -3.0]))
    assert torch.equal(rpo_loss(*args, beta=0.1), rpo_loss(*args, beta=0.1, eta=1.0, divergence="bce"))  # defaults
    with pytest.raises(ValueError, match="beta"):
        rpo_loss(*args, beta=0.0)
    # the rewards must match the batch, each of them
    for k in (4, 5):
        bad = list(args)
        bad[k] = T([1.0, 2.0, 3.0])
        with pytest.raises(ValueError, match="shape"):
            rpo_loss(*bad, beta=0.1)


def test_rewards_given_as_numbers_are_used_at_the_log_probs_precision():
    """Rewards come as Python floats or float32 tensors; the losses compute in the log-probs' dtype (float64 here),
    so a reward of 0.1 is 0.1 to float64 precision, not float32's 0.100000001."""
    from toyenv.trainers.dpo import rebel_loss, rpo_loss

    lp = [torch.tensor([v], dtype=torch.float64) for v in (-1.0, -2.0, -1.5, -1.5)]  # h = 1
    # REBEL: (h/eta - (r_c - r_r))^2 = (1 - 0.3)^2 with eta 1: (0.7)^2, by hand in float64
    assert rebel_loss(*lp, [0.4], [0.1], eta=1.0).item() == pytest.approx(0.7 ** 2, rel=0, abs=1e-15)
    assert rebel_loss(*lp, [0.4], [0.1], eta=1.0).dtype == torch.float64
    # RPO "squared": (beta h - eta (r_c - r_r))^2 = (0.5 - 0.3)^2
    got = rpo_loss(*lp, [0.4], [0.1], beta=0.5, divergence="squared")
    assert got.dtype == torch.float64 and got.item() == pytest.approx(0.2 ** 2, rel=0, abs=1e-15)


def test_a_pair_with_one_reward_is_refused_and_a_tie_is_allowed():
    with pytest.raises(ValueError, match=r"^give both reward_chosen and reward_rejected, or neither$"):
        PreferencePair("p:", "a", "b", reward_chosen=1.0)
    assert PreferencePair("p:", "a", "b", reward_chosen=1.0, reward_rejected=1.0).gap == 0.0


def test_every_log_prob_argument_is_shape_checked_by_name():
    three, two = torch.zeros(3), torch.zeros(2)
    for name in ("policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps"):
        args = {"policy_chosen_logps": three, "policy_rejected_logps": three, "ref_chosen_logps": three,
                "ref_rejected_logps": three, name: two}
        with pytest.raises(ValueError, match=rf"^{name} has shape \(2,\) but policy_chosen_logps has \(3,\)$"):
            dpo_loss(**args, beta=0.1)


def test_sequence_logprob_masks_by_hand(tok):
    seed_everything(0)
    model = GPT(GPTConfig(block_size=16, n_layer=1, n_head=2, n_embd=16))
    tokens, completion = collate(encode_pairs([("ab:", "cd"), ("a:", "c")], tok))
    # without an attention mask, PAD tokens are the padding
    assert torch.equal(sequence_logprob(model, tokens, None, completion),
                       sequence_logprob(model, tokens, tokens != PAD_ID, completion))
    with pytest.raises(ValueError, match=r"^completion_mask shape \(2, 3\) != tokens shape \(2, 7\)$"):
        sequence_logprob(model, tokens, None, completion[:, :3])
    # average=True divides each row by its number of scored tokens ("cd" + EOS: 3, "c" + EOS: 2)
    pairs = [PreferencePair("ab:", "cd", "c"), PreferencePair("a:", "c", "cd")]
    (c_sum, r_sum), (c_avg, r_avg) = pair_logprobs(model, pairs, tok), pair_logprobs(model, pairs, tok, average=True)
    assert torch.allclose(c_avg, c_sum / torch.tensor([3.0, 2.0]))
    assert torch.allclose(r_avg, r_sum / torch.tensor([2.0, 3.0]))
