"""toyenv.experiments.kl_frontier and kl_placements: the analysis functions against hand computations on small
made-up studies, and the shipped studies' settings and the claims notebooks 02 and 03 make about them."""
import statistics

import numpy as np
import pytest

from toyenv.experiments import kl_frontier as F
from toyenv.experiments import kl_placements as KP


def _run(beta, seed, kl, gold):
    return {"beta": beta, "seed": seed, "kl": kl, "gold": gold}


TOY = {"base": {"gold": 1.0}, "runs": [
    _run(0.0, 0, [0.0, 0.1, 0.5, 0.9], [1.0, 1.2, 0.8, 0.4]),
    _run(0.0, 1, [0.0, 0.3, 0.6], [1.0, 0.9, 0.7]),
    _run(1.0, 0, [0.0, 0.1, 0.15, 0.45], [1.0, 1.5, 1.1, 2.0]),
]}


def test_points_drop_step_0_and_measure_the_gain_from_the_base_model():
    kl, gain, seed = F.points(TOY, 0.0)
    np.testing.assert_allclose(kl, [0.1, 0.5, 0.9, 0.3, 0.6])
    np.testing.assert_allclose(gain, [0.2, -0.2, -0.6, -0.1, -0.3], atol=1e-12)
    assert seed.tolist() == [0, 0, 0, 1, 1]


def test_by_bin_averages_each_seed_first_then_over_seeds():
    rows = F.by_bin(TOY, bins=(0.0, 0.4, 1.0))
    assert [r["bin"] for r in rows] == [(0.0, 0.4), (0.4, 1.0)]
    low, high = rows
    # λ = 0, KL in [0, 0.4): seed 0 has 0.2, seed 1 has −0.1: mean 0.05, sample std of (0.2, −0.1)
    assert low[0.0]["mean"] == pytest.approx(0.05) and low[0.0]["seeds"] == 2 and low[0.0]["points"] == 2
    assert low[0.0]["spread"] == pytest.approx(statistics.stdev([0.2, -0.1]))
    # λ = 1: one seed with two points in the bin, 0.5 and 0.1: their mean, and no spread from one seed
    assert low[1.0]["mean"] == pytest.approx(0.3) and low[1.0]["seeds"] == 1 and low[1.0]["points"] == 2
    assert np.isnan(low[1.0]["spread"])
    # λ = 0, [0.4, 1.0): seed 0's mean of (−0.2, −0.6) = −0.4 and seed 1's −0.3
    assert high[0.0]["mean"] == pytest.approx(-0.35) and high[0.0]["points"] == 3
    assert high[0.0]["spread"] == pytest.approx(statistics.stdev([-0.4, -0.3]))
    assert high[1.0]["mean"] == pytest.approx(1.0)
    empty = F.by_bin(TOY, bins=(2.0, 3.0))[0][1.0]
    assert empty["seeds"] == 0 and np.isnan(empty["mean"])


def test_the_shipped_frontier_study():
    study = F.load()
    assert [(r["beta"], r["seed"]) for r in study["runs"]] == [(b, s) for b in F.BETAS for s in F.SEEDS]
    assert study["config"]["eval_every"] == 10 and study["config"]["max_steps"] == 80
    for r in study["runs"]:
        assert r["steps"] == list(range(0, 81, 10)) and len(r["kl"]) == len(r["gold"]) == 9
        assert r["kl"][0] == 0.0 and r["gold"][0] == study["base"]["gold"]
    # notebook 03's "β = 0" cell: every λ = 0 seed ends below the base model's gold, every λ = 1 seed above it
    base = study["base"]["gold"]
    assert all(r["gold"][-1] < base for r in study["runs"] if r["beta"] == 0.0)
    assert all(r["gold"][-1] > base for r in study["runs"] if r["beta"] == 1.0)


def test_summary_by_hand():
    runs = [{"name": "a", "expected_gradient": "x", "kl": [9.0, 1.0, 2.0], "final": {"gold": 1.0, "proxy": 2.0},
             "grad_norm": [0.5, 3.0]},
            {"name": "a", "expected_gradient": "x", "kl": [0.0, 3.0, 4.0], "final": {"gold": 2.0, "proxy": 0.0},
             "grad_norm": [0.2, 0.1]},
            {"name": "b", "expected_gradient": "y", "kl": [1.0, 1.0, 1.0], "final": {"gold": 0.0, "proxy": 1.0},
             "grad_norm": [7.0]}]
    a, b = KP.summary({"runs": runs}, last=2)
    assert a == {"name": "a", "expected_gradient": "x", "kl": 2.5, "kl_min": 1.5, "kl_max": 3.5, "gold": 1.5,
                 "proxy": 1.0, "max_grad_norm": 3.0, "seeds": 2}
    assert b["name"] == "b" and b["kl"] == 1.0 and b["max_grad_norm"] == 7.0 and b["seeds"] == 1
    assert [row["name"] for row in KP.summary({"runs": runs}, names=["b"])] == ["b"]


def test_flipped_k3_swaps_the_ratio_for_the_block_only():
    import torch
    from toyenv import kl

    logp, logq = torch.tensor([-2.0]), torch.tensor([-0.5])  # r = π_ref/π = e^1.5; flipped r = e^-1.5
    right = float(np.exp(1.5) - 1 - 1.5)
    flipped = float(np.exp(-1.5) - 1 + 1.5)
    assert kl.estimator("k3")(logp, logq).item() == pytest.approx(right, rel=1e-6)
    with KP.flipped_k3():
        assert kl.estimator("k3")(logp, logq).item() == pytest.approx(flipped, rel=1e-6)
    assert kl.estimator("k3")(logp, logq).item() == pytest.approx(right, rel=1e-6)
    with pytest.raises(RuntimeError), KP.flipped_k3():
        raise RuntimeError("a run that fails inside the block")
    assert kl.ESTIMATORS["k3"] is kl.k3  # restored even then


def test_placements_configure_the_trainer_as_named():
    by_name = {p.name: p.config(seed=3) for p in KP.PLACEMENTS}
    assert len(by_name) == 7
    for name, cfg in by_name.items():
        assert cfg.beta == KP.BETA and cfg.seed == 3 and cfg.kl_estimator == name[:2]
        assert cfg.kl_in == ("reward" if "reward" in name else "loss")
        assert cfg.use_bias_correction_kl == ("π/π_old" in name)


def test_the_shipped_placements_study():
    study = KP.load()
    assert [(r["name"], r["seed"]) for r in study["runs"]] == \
        [(p.name, s) for p in KP.PLACEMENTS + KP.BUGS for s in KP.SEEDS]
    assert [r["flipped_ratio"] for r in study["runs"]] == [p in KP.BUGS for p in KP.PLACEMENTS + KP.BUGS
                                                            for _ in KP.SEEDS]
    for r in study["runs"]:
        assert len(r["kl"]) == len(r["reward"]) == len(r["grad_norm"]) == 80
