"""toyenv.stats: R² of a straight line, ranks, Spearman's ρ and the predictor table, against hand computations and
an independent formula."""
import warnings

import numpy as np
import pytest

from toyenv import stats as S


def test_r_squared_matches_a_hand_computation():
    x, y = [0.0, 1.0, 2.0], [0.0, 1.0, 4.0]  # best line y = 2x - 1/3; residuals 1/3, -2/3, 1/3; SS_tot = 26/3
    assert S.r_squared(x, y) == pytest.approx(1 - (6 / 9) / (26 / 3))
    assert S.r_squared([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert S.r_squared([1, 2, 3], [6, 4, 2]) == pytest.approx(1.0)  # a falling line fits as well as a rising one
    assert np.isnan(S.r_squared([1, 2, 3], [5, 5, 5]))


def test_ranks_average_ties():
    assert S.ranks([10.0, 20.0, 20.0, 5.0]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert S.ranks([3.0, 3.0, 3.0]).tolist() == [2.0, 2.0, 2.0]
    assert S.ranks([1.0, 3.0, 3.0, 3.0, 0.0]).tolist() == [2.0, 4.0, 4.0, 4.0, 1.0]


def test_spearman_matches_hand_computations():
    # no ties: ranks of y are (1, 3, 2, 4), d = (0, -1, 1, 0), rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert S.spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    # a tie in x: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4); centred (-1.5, 0, 0, 1.5) and (-1.5, -.5, .5, 1.5):
    # rho = 4.5 / sqrt(4.5 * 5) = sqrt(0.9)
    assert S.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9 ** 0.5)
    # any monotone function: +1 increasing, -1 decreasing, whatever the curvature
    x = np.linspace(0.1, 5, 9)
    assert S.spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert S.spearman(x, -np.log(x)) == pytest.approx(-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant variable has no ranking: nan, said quietly (not 0/0's warning)
        assert np.isnan(S.spearman([1, 2, 3], [5, 5, 5]))


def test_spearman_agrees_with_the_rank_difference_formula():
    """Without ties rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)), d the rank differences: an independent formula."""
    rng = np.random.default_rng(0)
    for n in (5, 12, 40):
        x, y = rng.normal(size=n), rng.normal(size=n)
        rx, ry = np.argsort(np.argsort(x)) + 1, np.argsort(np.argsort(y)) + 1
        assert S.spearman(x, y) == pytest.approx(1 - 6 * ((rx - ry) ** 2).sum() / (n * (n * n - 1)))


def test_predictor_table_by_hand():
    rows = [{"f": 0.0, "a": 0.0, "b": 4.0, "keep": True}, {"f": 1.0, "a": 1.0, "b": 3.0, "keep": True},
            {"f": 4.0, "a": 2.0, "b": 1.0, "keep": True}, {"f": 9.0, "a": 3.0, "b": 2.0, "keep": False}]
    table = S.predictor_table(rows, "f", ["a", "b"], {"all": lambda r: True, "kept": lambda r: r["keep"]})
    assert [(t["subset"], t["predictor"], t["n"]) for t in table] == [
        ("all", "a", 4), ("all", "b", 4), ("kept", "a", 3), ("kept", "b", 3)]
    cell = {(t["subset"], t["predictor"]): t for t in table}
    # f = a² on a = 0..3: the line f = 3a - 1 leaves residuals 1, -1, -1, 1; SS_tot = 49 (mean 3.5)
    assert cell["all", "a"]["r2"] == pytest.approx(1 - 4 / 49)
    assert cell["all", "a"]["spearman"] == pytest.approx(1.0)
    # b's ranks (4, 3, 1, 2) against f's (1, 2, 3, 4): d = (3, 1, -2, -2), rho = 1 - 6 * 18 / 60 = -0.8
    assert cell["all", "b"]["spearman"] == pytest.approx(-0.8)
    # the first three rows only: f = (0, 1, 4) on a = (0, 1, 2), the hand computation above
    assert cell["kept", "a"]["r2"] == pytest.approx(1 - (6 / 9) / (26 / 3))
    assert cell["kept", "b"]["spearman"] == pytest.approx(-1.0)
    # default: one subset, all rows; fewer than 3 rows give nan, not an error
    assert [t["subset"] for t in S.predictor_table(rows, "f", ["a"])] == ["all"]
    few = S.predictor_table(rows[:2], "f", ["a"])[0]
    assert few["n"] == 2 and np.isnan(few["r2"]) and np.isnan(few["spearman"])


def test_subsample_r2_draws_subsets_without_replacement():
    x = np.arange(10.0)
    y = x ** 2
    r2s = S.subsample_r2(x, y, size=10, draws=5, seed=0)   # every "subset" is the whole set
    assert np.allclose(r2s, S.r_squared(x, y))
    line = S.subsample_r2(x, 3 * x + 1, size=3, draws=50)  # points on a line fit it perfectly, whichever 3
    assert np.allclose(line, 1.0) and len(line) == 50
    assert np.array_equal(S.subsample_r2(x, y, 4, draws=20, seed=1), S.subsample_r2(x, y, 4, draws=20, seed=1))
    assert not np.array_equal(S.subsample_r2(x, y, 4, draws=20, seed=1), S.subsample_r2(x, y, 4, draws=20, seed=2))
    with pytest.raises(ValueError, match="size must be an integer in \\[3, 10\\]"):
        S.subsample_r2(x, y, size=11)


def test_small_spreads_are_not_mistaken_for_constants():
    """The 'constant' guards are exact zeros, not thresholds: y spread over 0.2 still has an R², two points a ρ."""
    # y = (0, 0.1, 0.2) lies on a line: SS_tot = 0.02, well under 1
    assert S.r_squared([0.0, 1.0, 2.0], [0.0, 0.1, 0.2]) == pytest.approx(1.0)
    # two points: centred ranks (-0.5, 0.5), so the denominator is sqrt(0.5 * 0.5) = 0.5
    assert S.spearman([1.0, 2.0], [3.0, 4.0]) == pytest.approx(1.0)
    assert S.spearman([1.0, 2.0], [4.0, 3.0]) == pytest.approx(-1.0)


def test_subsample_r2_defaults_are_2000_draws_from_seed_0():
    x = np.arange(8.0)
    y = np.sin(x)
    default = S.subsample_r2(x, y, size=4)
    assert default.shape == (2000,)
    assert np.array_equal(default, S.subsample_r2(x, y, size=4, draws=2000, seed=0))
