"""toyenv.kl_gradients: each placement's exact expected gradient against closed forms checked by finite differences,
and against a Monte-Carlo average of per-sample gradients."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toyenv.kl import ESTIMATORS
from toyenv.kl_gradients import (PLACEMENTS, Placement, all_sequences, atlas, closed_form, cosine, expected_gradient,
                                 forward_kl_gradient, half_chi2_gradient, num_prefixes, OFF_POLICY, off_policy_atlas,
                                 off_policy_gradient, reverse_kl_gradient, sequence_kl_gradients, tabular_logprobs)


def _pq(theta, phi):
    return torch.softmax(theta, -1), torch.softmax(phi, -1)


# The divergences written out in the test (no toyenv code), differentiated numerically.
def reverse_kl(theta, phi):
    p, q = _pq(theta, phi)
    return float((p * (p / q).log()).sum())


def forward_kl(theta, phi):
    p, q = _pq(theta, phi)
    return float((q * (q / p).log()).sum())


def half_chi2(theta, phi):
    p, q = _pq(theta, phi)
    return 0.5 * float(((p - q) ** 2 / q).sum())


def numeric_gradient(f, theta, phi, h=1e-6):
    g = torch.zeros_like(theta)
    for j in range(len(theta)):
        e = torch.zeros_like(theta)
        e[j] = h
        g[j] = (f(theta + e, phi) - f(theta - e, phi)) / (2 * h)
    return g


def example(seed, k=6, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(k, generator=gen, dtype=torch.float64),
            scale * torch.randn(k, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(4))
def test_closed_forms_are_the_gradients_of_the_divergences(seed):
    theta, phi = example(seed)
    for f, closed in ((reverse_kl, reverse_kl_gradient), (forward_kl, forward_kl_gradient),
                      (half_chi2, half_chi2_gradient)):
        assert torch.allclose(closed(theta, phi), numeric_gradient(f, theta, phi), atol=1e-8), f.__name__


logits = st.lists(st.floats(-4, 4), min_size=2, max_size=7)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_every_exact_placement_equals_its_closed_form_to_1e_10(data):
    theta = torch.tensor(data.draw(logits), dtype=torch.float64)
    phi = torch.tensor(data.draw(st.lists(st.floats(-4, 4), min_size=len(theta), max_size=len(theta))),
                       dtype=torch.float64)
    for p in PLACEMENTS:
        if p.equals is not None:
            err = (expected_gradient(p, theta, phi) - closed_form(p.equals, theta, phi)).abs().max()
            assert err < 1e-10, (p.name, float(err))


def test_the_table_on_one_example():
    """Which divergence each placement descends, read off the cosines on a policy far from its reference."""
    theta, phi = example(0)
    rows = {r["placement"]: r for r in atlas(theta, phi)}
    by_hand = {  # the closed form each should (or should not) follow
        "k1 in the reward": "reverse", "k2 as a loss": "reverse", "k3 × π/π_old as a loss": "reverse",
        "k3 as a loss": "forward", "k1 in the reward, sign flipped": "minus_reverse",
    }
    for name, what in by_hand.items():
        r = rows[name]
        if what == "reverse":
            assert r["cos_reverse"] == pytest.approx(1.0, abs=1e-12), name
        elif what == "forward":
            assert r["cos_forward"] == pytest.approx(1.0, abs=1e-12) and r["cos_reverse"] < 0.999, name
        else:
            assert r["cos_reverse"] == pytest.approx(-1.0, abs=1e-12), name
    assert math.isnan(rows["k1 as a loss"]["cos_reverse"])  # a zero gradient has no direction
    assert rows["k3, ratio flipped, as a loss"]["cos_reverse"] < 0.999
    for name in ("k2 in the reward", "k3 in the reward"):  # biased: neither KL's gradient
        assert rows[name]["error"] is None
        assert rows[name]["cos_reverse"] < 0.99 and rows[name]["cos_forward"] < 0.99, name


def test_expected_gradient_is_the_average_of_per_sample_gradients():
    """The expectation as a Monte-Carlo average over 20,000 samples of the per-sample gradients, each taken with
    autograd as a trainer would (the sample fixed), within 5 standard errors of the exact sum."""
    theta, phi = example(1, k=4)
    gen = torch.Generator().manual_seed(0)
    ys = torch.multinomial(torch.softmax(theta, -1), 20_000, replacement=True, generator=gen)
    logq = torch.log_softmax(phi, -1)
    for placement in PLACEMENTS:
        t = theta.clone().requires_grad_(True)
        logp = torch.log_softmax(t, -1)
        a, b = (logq, logp) if placement.flipped_ratio else (logp, logq)
        k = ESTIMATORS[placement.kl_estimator](a[ys], b[ys])
        per = k.detach() * logp[ys] if placement.where == "reward" else k
        if placement.importance_weight:
            per = per * torch.exp(logp[ys] - logp[ys].detach())
        grads = torch.stack([torch.autograd.grad(placement.sign * per[i], t, retain_graph=True)[0]
                             for i in range(0, 20_000, 10)])  # every 10th sample: 2,000 gradients
        mean, se = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
        exact = expected_gradient(placement, theta, phi)
        assert ((mean - exact).abs() <= 5 * se + 1e-12).all(), placement.name


def test_cosine_and_bad_input():
    assert cosine(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])) == 1.0
    assert math.isnan(cosine(torch.zeros(2), torch.tensor([1.0, 0.0])))
    with pytest.raises(ValueError, match="where"):
        Placement("x", "k1", "advantage", None)
    with pytest.raises(ValueError, match="kl_estimator"):
        Placement("x", "k4", "loss", None)
    with pytest.raises(ValueError, match="differ in shape"):
        expected_gradient(PLACEMENTS[0], torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        expected_gradient(PLACEMENTS[0], torch.tensor([0.0, float("nan")]), torch.zeros(2))
    with pytest.raises(ValueError, match="closed form"):
        closed_form("reverse", torch.zeros(2), torch.zeros(2))


# --------------------------------------------------------------------------- sequences (Tang & Munos)
def test_all_sequences_and_prefix_rows_by_hand():
    assert all_sequences(2, 2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert num_prefixes(3, 3) == 1 + 3 + 9
    # a table whose row r puts all its mass (nearly) on token r % 2: row 0 is the empty prefix, rows 1-2 the
    # prefixes (0,) and (1,)
    table = torch.tensor([[50.0, 0.0], [0.0, 50.0], [50.0, 0.0]], dtype=torch.float64)
    lp = tabular_logprobs(table, torch.tensor([[0, 1], [1, 0], [0, 0]]))
    assert lp[0].tolist() == pytest.approx([0, 0], abs=1e-12)         # 0 after (), then 1 after (0,)
    assert lp[1, 0] == pytest.approx(-50, abs=1e-9) and lp[1, 1] == pytest.approx(0, abs=1e-12)  # 0 after (1,)
    assert lp[2, 1] == pytest.approx(-50, abs=1e-9)
    with pytest.raises(ValueError, match="num_prefixes"):
        tabular_logprobs(table[:2], torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="too many"):
        all_sequences(10, 6)


def _sequence_kl_by_loops(table, ref, vocab, length):
    """KL(π ‖ π_ref) over sequences, written as the product rule over tokens (no toyenv code)."""
    total = 0.0
    for code in range(vocab ** length):
        y = [(code // vocab ** (length - 1 - t)) % vocab for t in range(length)]
        logp = logq = 0.0
        for t in range(length):
            row = sum(vocab ** s for s in range(t)) + sum(y[s] * vocab ** (t - 1 - s) for s in range(t))
            logp += float(torch.log_softmax(table[row], -1)[y[t]])
            logq += float(torch.log_softmax(ref[row], -1)[y[t]])
        total += math.exp(logp) * (logp - logq)
    return total


def test_the_returns_give_the_sequence_kl_gradient_and_per_token_only_part_of_it():
    vocab, length = 2, 3
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(num_prefixes(vocab, length), vocab, generator=gen, dtype=torch.float64)
    ref = torch.randn(num_prefixes(vocab, length), vocab, generator=gen, dtype=torch.float64)
    numeric = torch.zeros_like(table)
    for i in range(table.shape[0]):
        for j in range(vocab):
            e = torch.zeros_like(table)
            e[i, j] = 1e-6
            numeric[i, j] = (_sequence_kl_by_loops(table + e, ref, vocab, length)
                             - _sequence_kl_by_loops(table - e, ref, vocab, length)) / 2e-6
    g = sequence_kl_gradients(table, ref, length)
    assert torch.allclose(g["exact"], numeric, atol=1e-8)
    for name in ("returns", "sequence reward"):
        assert (g[name] - g["exact"]).abs().max() < 1e-10, name
    partial = g["per token"]
    assert (partial - g["exact"]).norm() > 0.02 * g["exact"].norm()  # 3.4% here
    # the last token's rows have no future: there the per-token gradient is already the whole one
    last = slice(num_prefixes(vocab, length - 1), None)
    assert torch.allclose(partial[last], g["exact"][last], atol=1e-12)


def test_settings_are_refused_with_the_field_and_accepted_at_their_edges():
    # all_sequences: vocab >= 2 and length >= 1, both ints, each checked on its own
    for vocab, length in [(1, 1), (2, 0), (1, 0), (2.0, 1), (2, 1.0)]:
        with pytest.raises(ValueError, match="vocab must be an int >= 2 and length an int >= 1"):
            all_sequences(vocab, length)
    assert all_sequences(2, 1).tolist() == [[0], [1]]
    # at most 100,000 sequences: exactly 10**5 is enumerated, 100,001 (one token of a 100,001 vocabulary) is not
    assert all_sequences(10, 5).shape == (100_000, 5)
    with pytest.raises(ValueError, match="too many"):
        all_sequences(100_001, 1)
    # Placement: equals is None or a closed form; sign is +1 or -1
    for equals in (None, "zero", "half_chi2"):
        assert Placement("x", "k1", "loss", equals).equals == equals
    with pytest.raises(ValueError, match="Placement.equals must be None or one of"):
        Placement("x", "k1", "loss", "reverse")
    assert Placement("x", "k1", "loss", None, sign=-1.0).sign == -1.0
    assert Placement("x", "k1", "loss", None, sign=1.0).sign == 1.0
    for sign in (2.0, -2.0, 0.5, 0.0):
        with pytest.raises(ValueError, match="Placement.sign must be 1 or -1"):
            Placement("x", "k1", "loss", None, sign=sign)
    # sequence_kl_gradients: two tables of one 2-D shape
    with pytest.raises(ValueError, match="must be the same 2-D shape"):
        sequence_kl_gradients(torch.zeros(3, 2), torch.zeros(3, 3), 2)
    with pytest.raises(ValueError, match="must be the same 2-D shape"):
        sequence_kl_gradients(torch.zeros(1, 3, 2), torch.zeros(1, 3, 2), 2)


def test_cosine_nan_only_below_eps():
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])  # norms 5 and 5, cosine 24/25
    assert cosine(a, b, eps=4.9) == pytest.approx(0.96)
    assert math.isnan(cosine(a, b, eps=5.0))           # a norm equal to eps is "below": no direction
    assert math.isnan(cosine(a, 2 * b, eps=5.0))       # a's norm is 5
    assert math.isnan(cosine(2 * a, b, eps=5.0))       # b's norm is 5


def test_atlas_errors_measure_the_distance_to_the_named_closed_form():
    logits, ref = torch.tensor([0.3, -1.0, 0.8]), torch.tensor([0.0, 0.5, -0.4])
    rows = atlas(logits, ref)
    for row in rows:
        if row["equals"] is None:
            assert row["error"] is None
        else:
            assert row["error"] < 1e-10, row["placement"]
    # a placement labelled with the wrong closed form has a large error: k3 as a loss is the forward KL's gradient
    wrong = Placement("k3 as a loss, mislabelled", "k3", "loss", "reverse_kl")
    (row,) = atlas(logits, ref, [wrong])
    fwd = torch.softmax(logits.double(), -1) - torch.softmax(ref.double(), -1)   # π − π_ref, written out here
    p, q = torch.softmax(logits.double(), -1), torch.softmax(ref.double(), -1)
    rev = p * (p.log() - q.log() - (p * (p.log() - q.log())).sum())
    assert row["error"] == pytest.approx(float((fwd - rev).abs().max()), rel=1e-9)


def test_sequence_gradients_are_float64_whatever_the_input():
    table = torch.randn(num_prefixes(2, 2), 2, generator=torch.Generator().manual_seed(0))
    ref = torch.randn(num_prefixes(2, 2), 2, generator=torch.Generator().manual_seed(1))
    out = sequence_kl_gradients(table.float(), ref.float(), 2)
    assert all(g.dtype == torch.float64 for g in out.values())
    # the float32 values, converted first and computed in float64: the same to float64 rounding
    again = sequence_kl_gradients(table.float().double(), ref.float().double(), 2)
    for name in out:
        assert torch.allclose(out[name], again[name], rtol=0, atol=1e-13), name


@pytest.mark.parametrize("name", ["reverse_kl", "forward_kl", "half_chi2", "zero", "minus_reverse_kl"])
def test_every_closed_form_names_the_bad_argument(name):
    good, nan = torch.zeros(3), torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match=r"^logits must be finite"):
        closed_form(name, nan, good)
    if name != "zero":  # the zero gradient does not read the reference
        with pytest.raises(ValueError, match=r"^ref_logits must be finite"):
            closed_form(name, good, nan)
    with pytest.raises(ValueError, match=r"^logits must be one vector of at least 2 logits"):
        closed_form(name, torch.zeros(1), good)


def test_atlas_rows_and_messages_name_what_they_hold():
    (row,) = atlas(torch.tensor([0.1, 0.2]), torch.zeros(2), PLACEMENTS[:1])
    assert set(row) == {"placement", "where", "equals", "note", "gradient", "cos_reverse", "cos_forward", "error"}
    assert (row["placement"], row["where"], row["equals"], row["note"]) == (
        PLACEMENTS[0].name, "reward", "reverse_kl", PLACEMENTS[0].note)
    with pytest.raises(ValueError, match=r"^vocab\*\*length = 131072 sequences is too many"):
        all_sequences(2, 17)
    with pytest.raises(ValueError, match=r"^table has 4 rows; a policy over 2-token sequences of 2 tokens needs "
                                         r"num_prefixes = 3"):
        tabular_logprobs(torch.zeros(4, 2), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"^table \(3, 2\) and ref_table \(3, 3\) must be the same 2-D shape"):
        sequence_kl_gradients(torch.zeros(3, 2), torch.zeros(3, 3), 2)


def test_surrogate_gradient_edge_cases_and_messages():
    from toyenv.kl_gradients import surrogate_gradient

    logits, ref = torch.tensor([0.2, -0.1, 0.4]), torch.zeros(3)
    # nothing that depends on the policy: a zero gradient, whether or not the value asks for gradients
    assert torch.equal(surrogate_gradient(lambda lp, lq: lq, logits, ref), torch.zeros(3, dtype=torch.float64))
    leaf = torch.ones(3, dtype=torch.float64, requires_grad=True)
    assert torch.equal(surrogate_gradient(lambda lp, lq: leaf, logits, ref), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^the surrogate must return one value per action, a tensor of shape "
                                         r"\(3,\), got torch.Size\(\[\]\)$"):
        surrogate_gradient(lambda lp, lq: lp.sum(), logits, ref)
    with pytest.raises(ValueError, match=r"^the surrogate must return one value per action, a tensor of shape "
                                         r"\(3,\), got list$"):
        surrogate_gradient(lambda lp, lq: [0.0, 0.0, 0.0], logits, ref)
    with pytest.raises(ValueError, match=r"^logits must be finite$"):
        surrogate_gradient(lambda lp, lq: lp, torch.tensor([0.0, float("inf"), 1.0]), ref)
    with pytest.raises(ValueError, match=r"^ref_logits must be finite$"):
        surrogate_gradient(lambda lp, lq: lp, logits, torch.tensor([0.0, float("nan"), 1.0]))


# --------------------------------------------------------------------------- off-policy: PPO's later epochs
def _off_policy_by_hand(theta, phi, old, weight, estimator):
    """Σ_y π_old(y) w(y) ∇k(y) + Σ_y π_old(y) k(y) ∇w(y), written out: ∇ log π(y) = e_y − π, ∇k1 = ∇ log π,
    ∇k2 = (log π − log q) ∇ log π, ∇k3 = (1 − q/π) ∇ log π, and w = π/π_old (∇w = w ∇ log π) or 1."""
    p, q, o = torch.softmax(theta, -1), torch.softmax(phi, -1), torch.softmax(old, -1)
    k = {"k2": 0.5 * (q / p).log() ** 2, "k3": q / p - 1 - (q / p).log()}[estimator]
    dk = {"k2": (p / q).log(), "k3": 1 - q / p}[estimator]  # dk / d log π
    w = p / o if weight != "none" else torch.ones_like(p)
    coef = o * w * dk + (o * k * w if weight == "differentiable" else 0.0)  # per y, times ∇ log π(y)
    eye = torch.eye(len(p), dtype=p.dtype)
    return sum(coef[y] * (eye[y] - p) for y in range(len(p)))


@pytest.mark.parametrize("seed", range(3))
def test_off_policy_rows_by_hand_and_their_closed_forms(seed):
    theta, phi = example(seed)
    old = theta + 0.7 * torch.randn(6, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
    rows = {r["placement"]: r for r in off_policy_atlas(theta, phi, old)}
    by_hand = {"k2 as a loss, no weight": ("none", "k2"), "k2 × sg(π/π_old) as a loss": ("detached", "k2"),
               "k3 as a loss, no weight": ("none", "k3"), "k3 × sg(π/π_old) as a loss": ("detached", "k3"),
               "k3 × π/π_old as a loss": ("differentiable", "k3")}
    for name, (weight, est) in by_hand.items():
        torch.testing.assert_close(rows[name]["gradient"], _off_policy_by_hand(theta, phi, old, weight, est),
                                   rtol=0, atol=1e-12)
    # the k1-in-the-reward row: Σ π ∇log π · (log π_old − log q)
    p, q, o = torch.softmax(theta, -1), torch.softmax(phi, -1), torch.softmax(old, -1)
    eye = torch.eye(6, dtype=torch.float64)
    want = sum(p[y] * (o[y] / q[y]).log() * (eye[y] - p) for y in range(6))
    torch.testing.assert_close(rows["k1 in the reward, from π_old"]["gradient"], want, rtol=0, atol=1e-12)
    reverse, forward = numeric_gradient(reverse_kl, theta, phi), numeric_gradient(forward_kl, theta, phi)
    for name, target in (("k2 × sg(π/π_old) as a loss", reverse), ("k3 × π/π_old as a loss", reverse),
                         ("k3 × sg(π/π_old) as a loss", forward)):
        assert torch.allclose(rows[name]["gradient"], target, atol=1e-8), name
        assert rows[name]["error"] < 1e-10
    for name in ("k2 as a loss, no weight", "k3 as a loss, no weight", "k1 in the reward, from π_old"):
        assert rows[name]["error"] is None
        assert (rows[name]["gradient"] - reverse).norm() > 0.02 * reverse.norm(), name


def test_off_policy_rows_reduce_to_the_on_policy_atlas_when_old_is_the_policy():
    theta, phi = example(7)
    on = {r["placement"]: r["gradient"] for r in atlas(theta, phi)}
    off = {r["placement"]: r["gradient"] for r in off_policy_atlas(theta, phi, theta)}
    for off_name, on_name in (("k1 in the reward, from π_old", "k1 in the reward"),
                              ("k2 as a loss, no weight", "k2 as a loss"), ("k3 as a loss, no weight", "k3 as a loss"),
                              ("k3 × π/π_old as a loss", "k3 × π/π_old as a loss")):
        torch.testing.assert_close(off[off_name], on[on_name], rtol=0, atol=1e-12)


def test_off_policy_gradient_refuses_mismatched_shapes():
    theta, phi = example(0)
    nan = torch.full((6,), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="must have one shape"):
        off_policy_atlas(theta, phi, theta[:5])
    with pytest.raises(ValueError, match="^old_logits must be finite"):
        off_policy_atlas(theta, phi, nan)
    with pytest.raises(ValueError, match="^logits must be finite"):
        off_policy_gradient(OFF_POLICY[0], nan, phi, theta)
    with pytest.raises(ValueError, match="^ref_logits must be finite"):
        off_policy_gradient(OFF_POLICY[0], theta, nan, theta)


def test_off_policy_atlas_rows_carry_their_names_closed_forms_and_cosines():
    theta, phi = example(2)
    old = theta - 0.5
    old[0] += 1.0  # a different policy (a constant shift alone would be the same softmax)
    rows = off_policy_atlas(theta, phi, old)
    assert [r["placement"] for r in rows] == [o.name for o in OFF_POLICY]
    assert [r["equals"] for r in rows] == [o.equals for o in OFF_POLICY]
    assert all(r["note"] == o.note and o.note for r, o in zip(rows, OFF_POLICY))
    for r in rows:
        if r["equals"] == "reverse_kl":
            assert r["cos_reverse"] == pytest.approx(1.0, abs=1e-12) and r["cos_forward"] < 0.999
        if r["equals"] == "forward_kl":
            assert r["cos_forward"] == pytest.approx(1.0, abs=1e-12) and r["cos_reverse"] < 0.999
