"""toyenv.experiments.twins: the live-vs-shipped comparison, and the machine a study records."""
import math

import pytest

from toyenv.experiments import cpu, machine, same_machine
from toyenv.experiments.twins import compare


def test_identical_records_say_identical_and_count_every_number():
    rec = {"kl": [0.0, 0.25, 1.5], "eval": [[0, {"gold": 0.5}], [20, {"gold": 0.75}]], "name": "λ = 0", "n": 3}
    c = compare(rec, {**rec}, name="run")
    assert c.identical and c.ok and c.verdict == "identical" and c.digits is None
    assert c.numbers == 8  # 3 kl + 2 steps + 2 golds + n
    assert str(c) == "run: identical (8 numbers, every one equal as recorded)"


def test_digits_come_from_the_largest_relative_difference():
    # |1.6838 − 1.68| / 1.6838 = 0.002257: agreement to floor(−log10 0.002257) = 2 significant digits
    c = compare({"kl": [0.1, 1.68]}, {"kl": [0.1, 1.6838]}, rtol=0.01)
    assert c.ok and not c.identical
    assert c.max_abs == pytest.approx(0.0038) and c.max_rel == pytest.approx(0.0038 / 1.6838)
    assert c.digits == 2 and c.verdict == "the same to 2 significant digits"
    assert c.worst == "['kl'][1]"
    # 2.0000 vs 2.0001: relative 5e-5, 4 digits
    assert compare([2.0], [2.0001], rtol=1e-3).digits == 4


def test_tolerance_is_atol_plus_rtol_times_the_shipped_value():
    # shipped 100, rtol 0.01, atol 0: 101 is on the boundary (inside), 101.01 outside
    assert compare(101.0, 100.0, rtol=0.01, atol=0.0).ok
    assert not compare(101.01, 100.0, rtol=0.01, atol=0.0).ok
    # the tolerance scales with the *shipped* value: live 100 vs shipped 101 allows 1.01
    assert compare(100.0, 101.0, rtol=0.01, atol=0.0).ok
    # atol covers numbers near zero, where a relative tolerance means nothing
    assert compare(1e-5, 0.0, rtol=0.0, atol=1e-4).ok and not compare(2e-4, 0.0, rtol=0.0, atol=1e-4).ok


def test_outside_the_tolerance_is_different_and_named():
    c = compare({"a": [1.0, 2.5]}, {"a": [1.0, 2.0]}, name="x", rtol=0.1)
    assert not c.ok and c.verdict == "different" and c.outside == ["['a'][1]"]
    assert "differs at: ['a'][1]" in str(c)
    assert c.check_line() == "x: live run matches its shipped twin within rtol 0.1: NO"


def test_structure_and_text_must_match_exactly():
    c = compare({"a": 1, "s": "x", "l": [1, 2]}, {"a": 1, "s": "y", "b": 2, "l": [1, 2, 3]})
    assert not c.ok
    assert "['b'] (only shipped)" in c.mismatched and "['s'] ('x' vs 'y')" in c.mismatched
    assert "['l'] (length 2 vs 3)" in c.mismatched
    assert not compare({"a": None}, {"a": 0.0}).ok  # None is not a number


def test_tuples_equal_lists_nan_equals_nan_and_wall_times_are_ignored():
    assert compare({"e": (0, {"x": 1.0})}, {"e": [0, {"x": 1.0}]}).identical
    assert compare([math.nan], [math.nan]).ok
    assert not compare([math.nan], [1.0]).ok
    # equal infinities are equal (the oracle's infinite KL); opposite ones, or one against a number, are not
    assert compare([math.inf, -math.inf], [math.inf, -math.inf], rtol=0, atol=0).identical
    assert not compare([math.inf], [-math.inf]).ok and not compare([math.inf], [1e300]).ok
    assert compare({"x": 1.0, "seconds": 12.0}, {"x": 1.0, "seconds": 30.5}).identical
    assert compare(True, True).identical and not compare("1", 1).ok


def test_check_line_never_shows_digits():
    near = compare([1.0001], [1.0], name="twin", rtol=1e-3)
    exact = compare([1.0], [1.0], name="twin", rtol=1e-3)
    assert near.check_line() == exact.check_line() == "twin: live run matches its shipped twin within rtol 0.001: yes"


def test_bad_tolerances_are_refused():
    with pytest.raises(ValueError, match="rtol and atol must be >= 0"):
        compare(1.0, 1.0, rtol=-1.0)


def test_the_machine_string_names_the_cpu_and_a_study_from_elsewhere_is_not_the_same_machine():
    import torch
    assert cpu() in machine() and torch.backends.cpu.get_cpu_capability() in cpu()
    assert f"{torch.get_num_threads()} threads" in machine() and torch.__version__ in machine()
    assert same_machine({"machine": machine()})
    # the format every study shipped before the CPU model was recorded: never bit-exact
    assert not same_machine({"machine": "x86_64, 2 threads, torch 2.13.0+cpu"})
    assert not same_machine({})
