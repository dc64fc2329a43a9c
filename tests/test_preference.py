"""toyenv.preference: the losses against hand computations, sequence log-probs, graded GeneralPoints pairs."""
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toyenv import GPT, GPTConfig, Tokenizer, seed_everything
from toyenv.envs import general_points as gp
from toyenv.preference import (
    LLAMA2_MARGINS, STRENGTHS, GradedPair, dpo_loss, dpo_nll_loss, general_points_pairs, margin_bt_loss,
    margins_for, pair_logprobs, rebel_loss, rebel_target, rpo_loss, sequence_logprob, strength_counts,
    strength_for_gap,
)
from toyenv.reward_model import PreferencePair, bradley_terry_loss
from toyenv.tokenizer import PAD_ID
from toyenv.train import collate, encode_pairs

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
    with pytest.raises(ValueError, match="shape"):
        sequence_logprob(model, tokens, attn, mask[:, :-1])


def test_pair_logprobs_scores_chosen_and_rejected_in_one_pass():
    model = _gpt()
    pairs = [PreferencePair("ab:", "ba", "bb"), GradedPair("c:", "c", "cc!", "better", 1.0, -1.0)]
    with torch.no_grad():
        chosen, rejected = pair_logprobs(model, pairs)
        for col, side in ((chosen, "chosen"), (rejected, "rejected")):
            tokens, mask = collate(encode_pairs([(p.prompt, getattr(p, side)) for p in pairs]))
            assert torch.allclose(col, sequence_logprob(model, tokens, tokens != PAD_ID, mask), atol=1e-5)
    with pytest.raises(ValueError, match="prompt"):
        pair_logprobs(model, [("ab:", "ba", "bb")])


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
    with pytest.raises(ValueError, match="empty"):
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
    assert torch.equal(margin_bt_loss(r_c, r_r), plain)
    assert torch.equal(margin_bt_loss(r_c, r_r, 0.0), plain)
    assert torch.equal(margin_bt_loss(r_c, r_r, torch.zeros(3)), plain)


def test_margin_loss_by_hand():
    r_c, r_r = T([2.0, 2.0]), T([1.0, 1.0])
    # margins 3 ("significantly_better", large table) and 0: −log σ(1 − 3) and −log σ(1)
    m = margins_for(["significantly_better", "negligibly_better"], "large")
    assert margin_bt_loss(r_c, r_r, m).item() == pytest.approx((nlogsig(-2.0) + nlogsig(1.0)) / 2, rel=1e-6)
    assert margin_bt_loss(r_c, r_r, 1.0).item() == pytest.approx(math.log(2), rel=1e-6)  # the margin just met
    with pytest.raises(ValueError, match=">= 0"):
        margin_bt_loss(r_c, r_r, -1.0)
    with pytest.raises(ValueError, match="shape"):
        margin_bt_loss(r_c, r_r, torch.zeros(3))


@settings(max_examples=60, deadline=None)
@given(d=st.floats(-20, 20), m1=st.floats(0, 10), dm=st.floats(0, 10))
def test_margin_loss_is_monotone_in_the_margin(d, m1, dm):
    r_c, r_r = torch.tensor([d], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    assert margin_bt_loss(r_c, r_r, m1 + dm).item() >= margin_bt_loss(r_c, r_r, m1).item()


def test_margins_for_both_llama2_tables():
    assert STRENGTHS == ("significantly_better", "better", "slightly_better", "negligibly_better")
    assert torch.allclose(margins_for(STRENGTHS), T([1.0, 2 / 3, 1 / 3, 0.0]))
    assert torch.equal(margins_for(STRENGTHS, "large"), T([3.0, 2.0, 1.0, 0.0]))
    assert set(LLAMA2_MARGINS) == {"small", "large"}
    assert margins_for(["better", "better"]).dtype == torch.float32
    with pytest.raises(ValueError, match="strengths\\[1\\]"):
        margins_for(["better", "much better"])
    with pytest.raises(ValueError, match="table"):
        margins_for(["better"], "medium")
    with pytest.raises(ValueError, match="single string"):
        margins_for("better")


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
    assert rebel_target(T([1.0]), T([-1.0]), eta=0.5).item() == pytest.approx(1.0)  # 0.5 · 2
    assert rebel_loss(pc, pr, rc, rr, T([1.0]), T([-1.0]), eta=0.5).item() == pytest.approx(0.0, abs=1e-12)
    # rows h = 1 and h = −1 (policy chosen −5), Δr = 3, η = 0.5: (2 − 3)² = 1 and (−2 − 3)² = 25, mean 13
    pc2 = T([-3.0, -5.0])
    loss = rebel_loss(pc2, T([-4.0, -4.0]), T([-4.0, -4.0]), T([-4.0, -4.0]), T([2.0, 2.0]), T([-1.0, -1.0]), 0.5)
    assert loss.item() == pytest.approx(13.0)
    with pytest.raises(ValueError, match="eta"):
        rebel_loss(pc, pr, rc, rr, T([1.0]), T([-1.0]), eta=-0.5)


# --------------------------------------------------------------------------- strengths and graded pairs
def test_strength_buckets():
    want = {8.0: "significantly_better", 4.0: "significantly_better", 3.9: "better", 2.0: "better",
            1.0: "slightly_better", 0.5: "negligibly_better", 0.0: "negligibly_better"}
    assert {g: strength_for_gap(g) for g in want} == want
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="gap"):
            strength_for_gap(bad)


def test_graded_pair_checks_and_converts():
    p = GradedPair("q", "a", "b", "better", 1.0, -1.0)
    assert p.gap == 2.0
    pp = p.as_preference_pair("large")
    assert isinstance(pp, PreferencePair) and pp.margin == 2.0 and (pp.chosen, pp.rejected) == ("a", "b")
    with pytest.raises(ValueError, match="strength"):
        GradedPair("q", "a", "b", "much_better", 1.0, -1.0)
    with pytest.raises(ValueError, match="reward_chosen"):
        GradedPair("q", "a", "b", "better", -1.0, 1.0)
    assert strength_counts([p, p]) == {"significantly_better": 0, "better": 2, "slightly_better": 0,
                                       "negligibly_better": 0}


@pytest.fixture(scope="module")
def pairs200():
    return general_points_pairs(200, seed=0)


def test_general_points_pairs_are_graded_by_the_verifier(pairs200):
    assert len(pairs200) == 200
    for p in pairs200:
        assert p.reward_chosen > p.reward_rejected
        cards, rule = p.info["cards"], p.info["face_card_rule"]
        assert p.prompt == gp.make_prompt(cards, rule)
        assert gp.verify(cards, p.chosen, rule).reward == p.reward_chosen
        assert gp.verify(cards, p.rejected, rule).reward == p.reward_rejected
        assert p.strength == ("negligibly_better" if p.info["unsure"] else strength_for_gap(p.gap))
    counts = strength_counts(pairs200)
    assert all(counts[s] > 0 for s in STRENGTHS), counts
    assert sum(counts.values()) == 200


def test_general_points_pairs_are_deterministic(pairs200):
    assert general_points_pairs(200, seed=0) == pairs200
    assert general_points_pairs(20, seed=1) != pairs200[:20]
    quiet = general_points_pairs(50, seed=0, unsure_rate=0.0, face_card_rule="ranked")
    assert strength_counts(quiet)["negligibly_better"] == 0  # verifier rewards are never < 1 apart


def test_general_points_pairs_reject_bad_arguments():
    for kwargs in (dict(n=0), dict(n=5, unsure_rate=1.5), dict(n=5, face_card_rule="queens"),
                   dict(n=5, model=_gpt(), num_samples=1)):
        with pytest.raises(ValueError):
            general_points_pairs(**kwargs)


class GarbageSampler:
    """Mimics GPT.generate with num_return_sequences: completions drawn (with `generator`) from a list of strings."""

    ANSWERS = ["", "((((", "1/0", "K*J", "\n\n", "9999999", "1+2", "24", "8/(3-8/3)=24", "3*8", "~?", "10+10+4"]

    def __init__(self):
        self.tok = Tokenizer()
        self.training = True

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self

    def generate(self, prompts, max_new_tokens, temperature=1.0, eos_id=2, pad_id=0, generator=None,
                 num_return_sequences=1):
        rows, starts = [], []
        for p in prompts:
            for _ in range(num_return_sequences):
                pick = int(torch.randint(len(self.ANSWERS), (1,), generator=generator))
                rows.append(list(p) + self.tok.encode(self.ANSWERS[pick], eos=True))
                starts.append(len(p))
        tokens, real = self.tok.pad_batch(rows, side="right")
        gen_mask = real.clone()
        for b, start in enumerate(starts):
            gen_mask[b, :start] = False  # only the sampled tokens (and EOS) count as generated
        return tokens, gen_mask


def test_sampled_pairs_never_raise_on_garbage():
    model = GarbageSampler()
    pairs = general_points_pairs(30, seed=3, model=model, num_samples=4, batch_size=8)
    assert len(pairs) == 30 and model.training  # train mode restored
    for p in pairs:
        assert p.reward_chosen > p.reward_rejected and p.chosen in GarbageSampler.ANSWERS
        assert gp.verify(p.info["cards"], p.rejected).reward == p.reward_rejected
    assert general_points_pairs(30, seed=3, model=GarbageSampler(), num_samples=4, batch_size=8) == pairs


def test_sampled_pairs_from_a_real_gpt_run_and_are_deterministic():
    # A random GPT writes gibberish (illegal, −3) almost always, so few hands give a pair: fewer pairs, a warning.
    seed_everything(0)
    model = GPT(GPTConfig(block_size=80, n_layer=1, n_head=2, n_embd=16)).eval()
    kwargs = dict(n=4, seed=0, model=model, num_samples=3, max_new_tokens=4, batch_size=4, max_rounds=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = general_points_pairs(**kwargs), general_points_pairs(**kwargs)
    assert first == second and len(first) <= 4
    assert all(p.reward_chosen > p.reward_rejected for p in first)


class _SameAnswerModel(torch.nn.Module):
    """Stands in for a policy: records each generate call and answers nothing (every sample graded "illegal")."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def generate(self, ids, max_new_tokens, **kw):
        self.calls.append((ids, kw))
        rows = len(ids) * kw["num_return_sequences"]
        return torch.full((rows, 1 + max_new_tokens), PAD_ID), torch.zeros(rows, 1 + max_new_tokens, dtype=torch.bool)


def test_sampled_pairs_deal_at_most_max_rounds_times_n_hands_and_sample_as_asked():
    """n = 1, max_rounds = 3, batch_size = 2: hands come in batches of 2 then 1 (3 in all), each prompt starts with
    BOS, and the sampler passes the temperature, EOS, PAD and the number of samples per hand through. Every sample
    gets the same reward, so no pair can be made: an empty list and a warning that counts the 3 hands."""
    from toyenv.tokenizer import BOS_ID, EOS_ID

    model = _SameAnswerModel()
    with pytest.warns(UserWarning, match="only 0 of the 1 requested pairs from 3 hands"):
        pairs = general_points_pairs(1, seed=0, model=model, num_samples=2, temperature=0.7, max_new_tokens=5,
                                     batch_size=2, max_rounds=3)
    assert pairs == []
    assert [len(ids) for ids, _ in model.calls] == [2, 1]
    assert all(row[0] == BOS_ID for ids, _ in model.calls for row in ids)
    for _, kw in model.calls:
        assert kw["temperature"] == 0.7 and kw["eos_id"] == EOS_ID and kw["pad_id"] == PAD_ID
        assert kw["num_return_sequences"] == 2


def test_margin_loss_refuses_mismatched_shapes_and_names_the_margin_rule():
    with pytest.raises(ValueError, match="shape"):
        margin_bt_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        margin_bt_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="margins must be finite and >= 0"):
        margin_bt_loss(torch.zeros(2), torch.zeros(2), -1.0)


def test_a_graded_pair_keeps_prompt_texts_and_info_as_a_preference_pair():
    g = GradedPair("c:", "good", "bad", "better", -1.0, -3.0, info={"kind": "x"})
    p = g.as_preference_pair()  # Llama 2's small table by default: "better" is 2/3 (stored as float32)
    assert (p.prompt, p.chosen, p.rejected, p.info) == ("c:", "good", "bad", {"kind": "x"})
    assert p.margin == pytest.approx(2 / 3)
    assert g.as_preference_pair("large").margin == 2.0


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


def test_strength_counts_names_the_bad_pair():
    good = GradedPair("c:", "a", "b", "better", -1.0, -3.0)
    with pytest.raises(ValueError, match=r"pairs\[1\]\.strength must be one of"):
        strength_counts([good, GradedPair.__new__(GradedPair)])


def _corruptions(expert: str) -> dict[str, set[str]]:
    """Every corruption of an expert answer "expr=claim" that the docstrings promise, written out independently:
    wrong_value: one operator swapped for another, or all numbers joined by + or by *; wrong_numbers: one number
    off by exactly one (and still >= 1); illegal: cut right after an operator, an operator doubled, a unary minus
    in front, or nothing."""
    import re

    expr, claim = expert.split("=")
    ops = [i for i, ch in enumerate(expr) if ch in "+-*/"]
    value = {expr[:i] + op + expr[i + 1:] for i in ops for op in "+-*/" if op != expr[i]}
    numbers = re.findall(r"\d+", expr)
    value |= {"+".join(numbers), "*".join(numbers)}
    off_by_one = {expr[:m.start()] + str(int(m.group()) + d) + expr[m.end():]
                  for m in re.finditer(r"\d+", expr) for d in (1, -1) if int(m.group()) + d >= 1}
    illegal = {expr[:i + 1] for i in ops} | {expr[:i] + expr[i] * 2 + expr[i + 1:] for i in ops} | {"-" + expr, ""}
    return {"correct": {expert}, "wrong_value": {v + "=" + claim for v in value},
            "wrong_numbers": {v + "=" + claim for v in off_by_one}, "illegal": illegal}


def test_pool_pairs_are_graded_as_documented():
    """300 pool pairs: each answer is the expert's or one of its documented corruptions, the info records each
    side's verdict and the noiseless strength, and the label is that strength unless the annotator was unsure."""
    pairs = general_points_pairs(300, seed=3, unsure_rate=0.3)
    kinds, signs = set(), set()
    for p in pairs:
        cards = p.info["cards"]
        forms = _corruptions(gp.expert_answer(cards, "ten", 24))
        for side, text in (("chosen", p.chosen), ("rejected", p.rejected)):
            kind = gp.verify(cards, text, "ten", 24).kind
            assert p.info["kind_" + side] == kind, (p, side)
            assert text in forms[kind], (text, kind, gp.expert_answer(cards, "ten", 24))
            kinds.add(kind)
        assert p.info["gap_strength"] == strength_for_gap(p.reward_chosen - p.reward_rejected)
        assert p.strength == ("negligibly_better" if p.info["unsure"] else p.info["gap_strength"])
        if p.info["kind_rejected"] == "wrong_numbers":
            import re
            a = [int(x) for x in re.findall(r"\d+", gp.expert_answer(cards, "ten", 24).split("=")[0])]
            b = [int(x) for x in re.findall(r"\d+", p.rejected.split("=")[0])]
            signs |= {y - x for x, y in zip(a, b) if x != y}
    assert kinds == {"correct", "wrong_value", "wrong_numbers", "illegal"}
    assert signs == {1, -1}  # cards are moved both up and down
    assert 0 < sum(p.info["unsure"] for p in pairs) < 300


def test_general_points_pairs_settings_at_their_boundaries():
    for bad, match in ((dict(n=0), "n must be an int >= 1"), (dict(n=True), "n must be an int >= 1"),
                       (dict(unsure_rate=1.01), r"unsure_rate must be a probability in \[0, 1\]"),
                       (dict(face_card_rule="aces"), "face_card_rule must be one of"),
                       (dict(model=_SameAnswerModel(), num_samples=1), "num_samples must be >= 2"),
                       (dict(model=_SameAnswerModel(), batch_size=0), "batch_size and max_rounds must be >= 1"),
                       (dict(model=_SameAnswerModel(), max_rounds=0), "batch_size and max_rounds must be >= 1")):
        with pytest.raises(ValueError, match=match):
            general_points_pairs(**{"n": 1, **bad})
    # the smallest allowed values work
    assert [p.strength for p in general_points_pairs(3, unsure_rate=1.0)] == ["negligibly_better"] * 3
    with pytest.warns(UserWarning):
        assert general_points_pairs(1, model=_SameAnswerModel(), num_samples=2, batch_size=1, max_rounds=1) == []
    # another target reaches the task: the pool's answers are graded against 10, not 24
    for p in general_points_pairs(20, seed=1, target=10):
        assert p.info["target"] == 10
        assert gp.verify(p.info["cards"], p.chosen, "ten", 10).kind == p.info["kind_chosen"]
