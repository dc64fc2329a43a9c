"""toyenv.overoptimization: the best-of-n KL, best-of-n selection and Gao et al.'s two fits, against hand
computations, a numerical integral and exact discrete best-of-n distributions written out here."""
import math
import warnings

import numpy as np
import pytest

from toyenv import overoptimization as O


# --- the analytic KL -------------------------------------------------------------------------------------------

def test_bon_kl_by_hand():
    assert O.bon_kl(1) == 0.0
    assert O.bon_kl(2) == pytest.approx(math.log(2) - 0.5, abs=1e-15)
    assert O.bon_kl(4) == pytest.approx(1.3862943611198906 - 0.75, abs=1e-15)
    assert O.bon_kl(np.int64(8)) == pytest.approx(2.0794415416798357 - 0.875, abs=1e-15)


def test_bon_kl_is_the_integral_for_a_continuous_score():
    """With a continuous score, u = F(y) of the best of n is Beta(n, 1), density n u^(n-1) against π_init's uniform
    u: KL = ∫ n u^(n-1) log(n u^(n-1)) du, integrated here by the midpoint rule."""
    u = (np.arange(200_000) + 0.5) / 200_000
    for n in (2, 3, 7, 16):
        density = n * u ** (n - 1)
        assert O.bon_kl(n) == pytest.approx(np.mean(density * np.log(density)), abs=1e-6)


def _discrete_bon_kl(m: int, n: int) -> float:
    """KL(best-of-n ‖ uniform over m items with distinct scores), exactly: the item of rank k (1 = worst) is the best
    of n uniform draws with probability (k/m)^n − ((k−1)/m)^n."""
    k = np.arange(1, m + 1)
    p = (k / m) ** n - ((k - 1) / m) ** n
    return float(np.sum(p * np.log(p * m)))


def test_bon_kl_is_an_upper_bound_tight_for_many_distinct_outcomes():
    for n in (2, 4, 16):
        assert _discrete_bon_kl(5, n) < O.bon_kl(n) - 0.01                  # few outcomes: below
        assert _discrete_bon_kl(20_000, n) == pytest.approx(O.bon_kl(n), abs=1e-5)
        assert _discrete_bon_kl(20_000, n) <= O.bon_kl(n)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4", None])
def test_bon_kl_refuses_what_is_not_a_count(bad):
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        O.bon_kl(bad)


# --- best-of-n selection -----------------------------------------------------------------------------------------

def test_best_of_n_by_hand():
    proxy = np.array([[1.0, 3.0, 2.0, 0.0], [0.0, -1.0, 5.0, 4.0]])
    gold = np.array([[10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0]])
    # n = 1: every sample
    assert O.best_of_n(proxy, gold, 1) == {"proxy": 14.0 / 8, "gold": 110.0 / 8, "groups": 8}
    # n = 2: groups (1, 3) (2, 0) | (0, -1) (5, 4): picks gold 20, 30, 1, 3; proxy 3, 2, 0, 5
    assert O.best_of_n(proxy, gold, 2) == {"proxy": 10.0 / 4, "gold": 54.0 / 4, "groups": 4}
    # n = 4: one group per row: proxy 3 and 5, gold 20 and 3
    assert O.best_of_n(proxy, gold, 4) == {"proxy": 4.0, "gold": 11.5, "groups": 2}


def test_best_of_n_leaves_the_remainder_out_and_keeps_the_first_of_a_tie():
    proxy = np.array([[2.0, 2.0, 1.0, 9.0, 9.0]])
    gold = np.array([[5.0, 7.0, 0.0, 1.0, 100.0]])
    assert O.best_of_n(proxy, gold, 2) == {"proxy": 5.5, "gold": 3.0, "groups": 2}   # (2, 2) keeps gold 5; (1, 9) gold 1
    assert O.best_of_n(proxy, gold, 3) == {"proxy": 2.0, "gold": 5.0, "groups": 1}


def test_best_of_n_refuses_bad_input():
    good = np.zeros((2, 4))
    with pytest.raises(ValueError, match="at most the pool size 4"):
        O.best_of_n(good, good, 5)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        O.best_of_n(good, good, 0)
    with pytest.raises(ValueError, match="one shape"):
        O.best_of_n(good, np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="one shape"):
        O.best_of_n(np.zeros(4), np.zeros(4), 1)
    with pytest.raises(ValueError, match="finite"):
        O.best_of_n(np.array([[0.0, np.nan]]), np.zeros((1, 2)), 1)
    with pytest.raises(ValueError, match="finite"):
        O.best_of_n(np.zeros((1, 2)), np.array([[np.inf, 0.0]]), 1)
    # garbage that is not a number becomes NaN and is refused with the same sentence, not a TypeError from numpy
    with pytest.raises(ValueError, match="proxy and gold scores must be finite"):
        O.best_of_n([[None, 1.0]], [[0.0, 1.0]], 1)
    with pytest.raises(ValueError, match="proxy and gold scores must be finite"):
        O.best_of_n([[0.0, 1.0]], [[1.0, None]], 1)


# --- the fits ------------------------------------------------------------------------------------------------------

D = np.array([0.0, 0.2, 0.5, 0.8, 1.1, 1.5, 2.0])


def test_fits_recover_the_coefficients_that_made_the_data():
    bon = D * (2.0 - 0.7 * D)
    rl = np.array([0.0] + [d * (1.5 - 0.4 * math.log(d)) for d in D[1:]])
    f = O.fit_bon(D, bon)
    assert (f.form, f.points) == ("bon", 7)
    assert f.alpha == pytest.approx(2.0, abs=1e-10) and f.beta == pytest.approx(0.7, abs=1e-10)
    assert f.rmse < 1e-10
    g = O.fit_rl(D, rl)
    assert g.alpha == pytest.approx(1.5, abs=1e-10) and g.beta == pytest.approx(0.4, abs=1e-10)
    assert g.rmse < 1e-10
    # each form fitted to the other's data leaves a residual
    assert O.fit_bon(D, rl).rmse > 1e-3 and O.fit_rl(D, bon).rmse > 1e-3


def test_a_fit_evaluates_its_form():
    f = O.Fit("bon", alpha=2.0, beta=0.5, rmse=0.0, points=3)
    np.testing.assert_allclose(f([0.0, 1.0, 2.0]), [0.0, 1.5, 2.0], atol=1e-15)
    g = O.Fit("rl", alpha=1.0, beta=2.0, rmse=0.0, points=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # d log d at d = 0 is its limit 0, without numpy's log(0) warning
        np.testing.assert_allclose(g([0.0, 1.0, math.e]), [0.0, 1.0, math.e * (1.0 - 2.0)], atol=1e-12)
    assert "α = 2.000, β = 0.500" in str(f) and "d (α − β d)" in str(f)
    assert "d (α − β log d)" in str(g)


def test_least_squares_matches_the_normal_equations_on_noisy_data():
    rng = np.random.default_rng(0)
    d = rng.uniform(0.1, 2.0, 40)
    r = d * (1.0 - 0.3 * d) + rng.normal(0, 0.05, 40)
    X = np.stack([d, -d * d], 1)
    alpha, beta = np.linalg.solve(X.T @ X, X.T @ r)
    f = O.fit_bon(d, r)
    assert (f.alpha, f.beta) == pytest.approx((alpha, beta), abs=1e-10)
    assert f.rmse == pytest.approx(np.sqrt(np.mean((alpha * d - beta * d * d - r) ** 2)), abs=1e-12)


def test_fit_refuses_bad_input():
    with pytest.raises(ValueError, match="form must be one of"):
        O.fit("linear", D, D)
    with pytest.raises(ValueError, match="same length"):
        O.fit_bon(D, D[:-1])
    with pytest.raises(ValueError, match=r"d must be finite and >= 0 \(it is sqrt\(KL\)\)"):
        O.fit_rl([-0.1, 1.0, 2.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        O.fit_rl([0.5, 1.0], [np.nan, 1.0])
    with pytest.raises(ValueError, match="finite"):
        O.fit_bon([None, 1.0, 2.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        O.fit_bon([0.5, 1.0, 2.0], [0.0, None, 2.0])
    with pytest.raises(ValueError, match="two distinct d > 0"):
        O.fit_bon([0.0, 1.0, 1.0], [0.0, 1.0, 1.0])
