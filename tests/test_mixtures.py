"""toyenv.mixtures: densities, quadrature KL, the one-Gaussian fits and the retaining experiment (notebook 07)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toyenv.mixtures import (
    METHODS, Mixture, RetainConfig, at_gain, bimodal, coverage, divergence, fit_gaussian, forward_kl_estimate,
    gained, gaussian, gaussian_kl, grid, kl, reinforce_loss, retained, sft_loss, train_retaining,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead


mixtures = st.integers(1, 3).flatmap(lambda k: st.tuples(
    st.lists(st.floats(0.05, 1.0), min_size=k, max_size=k),
    st.lists(st.floats(-6.0, 6.0), min_size=k, max_size=k),
    st.lists(st.floats(0.2, 3.0), min_size=k, max_size=k),
)).map(lambda t: Mixture([w / sum(t[0]) for w in t[0]], t[1], t[2]))


# ------------------------------------------------------------------------------------------- the mixture
@pytest.mark.parametrize("args, match", [
    (([0.5, 0.5], [0.0, 1.0], [1.0, -1.0]), "sigma must be > 0"),
    (([0.5, 0.5], [0.0, 1.0], [1.0, 0.0]), "sigma must be > 0"),
    (([0.6, 0.6], [0.0, 1.0], [1.0, 1.0]), "sum to 1"),
    (([1.2, -0.2], [0.0, 1.0], [1.0, 1.0]), ">= 0"),
    (([0.5, 0.5], [0.0], [1.0, 1.0]), "same"),
    (([1.0], [float("nan")], [1.0]), "finite"),
])
def test_mixture_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        Mixture(*args)


def test_other_bad_input():
    with pytest.raises(ValueError, match="weight must be in"):
        bimodal(4.0, weight=1.5)
    with pytest.raises(ValueError, match="direction"):
        fit_gaussian(bimodal(4.0), "sideways")
    with pytest.raises(ValueError, match="method"):
        train_retaining(RetainConfig(steps=2), "dpo")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        RetainConfig(sigma=0.0)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        RetainConfig(target_old_weight=1.0)
    with pytest.raises(ValueError, match="optimizer"):
        RetainConfig(optimizer="lbfgs")


@settings(max_examples=30, deadline=None)
@given(mixtures)
def test_density_integrates_to_one(p):
    x = grid(p)
    assert torch.trapezoid(p.prob(x), x).item() == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(mixtures, mixtures)
def test_kl_nonnegative_and_zero_on_itself(p, q):
    assert kl(p, q).item() >= -1e-12
    assert abs(kl(p, p).item()) < 1e-12


@settings(max_examples=30, deadline=None)
@given(st.floats(-5, 5), st.floats(0.2, 4), st.floats(-5, 5), st.floats(0.2, 4))
def test_quadrature_matches_gaussian_closed_form(m1, s1, m2, s2):
    assert kl(gaussian(m1, s1), gaussian(m2, s2)).item() == pytest.approx(gaussian_kl(m1, s1, m2, s2), rel=1e-9, abs=1e-10)


def test_divergence_directions():
    t, m = bimodal(6.0), gaussian(1.0, 2.0)
    assert divergence("forward", t, m).item() == kl(t, m).item()
    assert divergence("reverse", t, m).item() == kl(m, t).item()
    with pytest.raises(ValueError, match="direction"):
        divergence("both", t, m)


def test_sampling_matches_moments_and_is_seeded():
    p = Mixture([0.2, 0.8], [-3.0, 2.0], [0.5, 1.5])
    x = p.sample(200_000, torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(p.mean(), abs=0.02)
    assert x.std().item() == pytest.approx(p.std(), abs=0.02)
    assert torch.equal(x, p.sample(200_000, torch.Generator().manual_seed(0)))
    assert p.mean() == pytest.approx(0.2 * -3 + 0.8 * 2)


def test_from_params_is_differentiable_and_shares_sigma():
    logits = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    means = torch.tensor([-1.0, 1.0], dtype=torch.float64, requires_grad=True)
    log_sigma = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    p = Mixture.from_params(logits, means, log_sigma)
    assert p.sigmas.tolist() == [1.0, 1.0]
    p.log_prob(torch.tensor([0.3, 2.0])).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (means, log_sigma))


# ---------------------------------------------------------------------------------- one Gaussian, two directions
def test_forward_fit_is_moment_matching():
    """Modes at ±4 with σ = 1: the forward optimum is μ = 0, σ = √17, and every start reaches it."""
    optima = fit_gaussian(bimodal(8.0), "forward")
    assert len(optima) == 1 and len(optima[0].starts) == 5
    o = optima[0]
    assert abs(o.mu) < 0.02 * math.sqrt(17)
    assert o.sigma == pytest.approx(math.sqrt(17), rel=0.02)


def test_forward_fit_matches_moments_of_unequal_modes():
    target = bimodal(6.0, weight=0.7, center=1.0)
    (o,) = fit_gaussian(target, "forward")
    assert o.mu == pytest.approx(target.mean(), abs=0.02)
    assert o.sigma == pytest.approx(target.std(), rel=0.02)


def test_reverse_fit_locks_onto_one_mode():
    optima = fit_gaussian(bimodal(8.0), "reverse")
    best = optima[0]
    assert abs(abs(best.mu) - 4.0) < 0.02 * 4 and best.sigma == pytest.approx(1.0, rel=0.02)
    # Both modes are found (from starts on each side), with KL ≈ log 2: q is one mode, p is half q.
    on_modes = sorted(o.mu for o in optima if abs(abs(o.mu) - 4) < 0.1)
    assert on_modes == pytest.approx([-4.0, 4.0], abs=0.01)
    assert all(o.kl == pytest.approx(math.log(2), abs=1e-3) for o in optima if abs(abs(o.mu) - 4) < 0.1)
    # Anything else gradient descent stopped at is worse than the modes.
    assert all(o.kl > best.kl + 0.5 for o in optima if abs(abs(o.mu) - 4) >= 0.1)


def test_reverse_fit_does_not_split_when_modes_are_close():
    (o,) = fit_gaussian(bimodal(3.0), "reverse")
    assert abs(o.mu) < 0.01 and 1.0 < o.sigma < bimodal(3.0).std()


# ------------------------------------------------------------------------------------- the retaining experiment
def test_coverage_is_bounded_and_one_for_the_target():
    cfg = RetainConfig()
    target = cfg.target()
    assert retained(target, cfg) == pytest.approx(1.0, abs=1e-6)
    assert gained(target, cfg) == pytest.approx(1.0, abs=1e-6)
    assert coverage(gaussian(10.0, 1.0), 0.5, -4.0, 1.0) < 1e-6
    for p in (gaussian(0.0, 3.0), bimodal(8.0, 0.9), gaussian(-4.0, 2.0)):
        assert 0.0 <= retained(p, cfg) <= 1.0 and 0.0 <= gained(p, cfg) <= 1.0
    # A wider old mode covers less of it: forgetting by blurring counts.
    assert retained(Mixture([0.5, 0.5], [-4.0, 4.0], [2.0, 1.0]), cfg) < 0.8


def test_sample_gradients_are_unbiased():
    """SFT's loss and REINFORCE's surrogate, on many samples, give the exact gradients of the two KLs."""
    target = bimodal(6.0, weight=0.4)

    def params():
        return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in ([0.3, -0.3], [-2.0, 1.0], [0.2, -0.1])]

    def grad(loss_fn):
        ps = params()
        loss_fn(Mixture.from_params(*ps)).backward()
        return torch.cat([p.grad for p in ps])

    g = torch.Generator().manual_seed(0)
    x_target = target.sample(200_000, g)
    exact_fwd = grad(lambda pol: kl(target, pol))
    torch.testing.assert_close(grad(lambda pol: forward_kl_estimate(target, pol, x_target)), exact_fwd, atol=0.02, rtol=0.05)
    torch.testing.assert_close(grad(lambda pol: sft_loss(pol, x_target)), exact_fwd, atol=0.02, rtol=0.05)
    exact_rev = grad(lambda pol: kl(pol, target))
    torch.testing.assert_close(grad(lambda pol: reinforce_loss(target, pol, pol.sample(200_000, g))), exact_rev,
                               atol=0.02, rtol=0.05)


def test_at_gain_interpolates():
    h = {"step": [0, 10, 20], "retained": [1.0, 0.8, 0.4], "gained": [0.1, 0.5, 1.0]}
    hit = at_gain(h, 0.9)
    assert hit["step"] == pytest.approx(18.0) and hit["retained"] == pytest.approx(0.48)
    assert at_gain(h, 0.05)["step"] == 0.0
    assert at_gain({"step": [0], "retained": [1.0], "gained": [0.2]}, 0.9) is None


@pytest.fixture(scope="module")
def runs():
    cfg = RetainConfig(stop_at_gain=0.9, eval_every=1, seed=0)
    return {m: train_retaining(cfg, m) for m in METHODS}


def test_history_layout(runs):
    h = runs["rl"]
    n = len(h["step"])
    assert all(len(h[k]) == n for k in ("retained", "gained", "forward_kl", "reverse_kl", "weights", "means", "sigmas"))
    assert h["step"][0] == 0 and h["retained"][0] == pytest.approx(1.0, abs=1e-6) and h["gained"][0] < 0.2
    assert h["gained"][-1] >= 0.9 and h["config"]["seed"] == 0


def test_the_flip(runs):
    """At equal gain (0.9), SFT on new-task data only (forward KL to a target without the old mode) loses far more of
    the old mode than RL (reverse KL to π*)."""
    hits = {m: at_gain(h, 0.9) for m, h in runs.items()}
    assert all(hits.values())
    drop = {m: 1 - hit["retained"] for m, hit in hits.items()}
    assert drop["sft"] > 0.8 and drop["rl"] < 0.05
    assert drop["sft"] > drop["rl"] + 0.75
    # SFT + replay aims at the same target as RL (forward vs reverse KL to π*): it blurs the old mode on the way
    # (mid-training) and has it back by gain 0.9, level with RL: the like-for-like flip is only transient.
    assert at_gain(runs["sft_replay"], 0.5)["retained"] < at_gain(runs["rl"], 0.5)["retained"] - 0.15
    assert hits["sft_replay"]["retained"] > 0.85 and abs(hits["sft_replay"]["retained"] - hits["rl"]["retained"]) < 0.1


def test_sft_old_weight_collapses_rl_keeps_it():
    cfg = RetainConfig(steps=400, eval_every=50, seed=1)
    sft, rl = train_retaining(cfg, "sft"), train_retaining(cfg, "rl")
    assert sft["weights"][-1][0] < 0.1  # mass forgetting: the old component's weight goes to 0
    assert rl["weights"][-1][0] == pytest.approx(0.5, abs=0.05)
    assert rl["means"][-1] == pytest.approx([-4.0, 4.0], abs=0.1) and rl["reverse_kl"][-1] < 0.01
