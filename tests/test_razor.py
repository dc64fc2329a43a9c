"""toyenv.experiments.razor: notebook 09's measurements."""
import pytest
import torch

from toyenv.experiments import razor as R


def test_r_squared_matches_a_hand_computation():
    x, y = [0.0, 1.0, 2.0], [0.0, 1.0, 4.0]  # best line y = 2x - 1/3; residuals 1/3, -2/3, 1/3; SS_tot = 26/3
    assert R.r_squared(x, y) == pytest.approx(1 - (6 / 9) / (26 / 3))
    assert R.r_squared([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


def test_weight_change_is_zero_for_a_copy_and_the_norm_of_a_shift(base):
    import copy

    model, _ = base
    other = copy.deepcopy(model)
    assert R.weight_change(other, model) == 0.0
    with torch.no_grad():
        first = next(other.parameters())
        first.add_(0.5)
    assert R.weight_change(other, model) == pytest.approx(0.5 * first.numel() ** 0.5, rel=1e-4)


def test_measure_records_forgetting_kl_and_weight_change(base):
    model, tok = base
    run = R.RazorRun("SFT, 5 steps", "sft", 1e-3, 5)
    tuned = R.train_run(run, model, tok, progress=False)
    base_old = R.old_skill(model, tok)
    m = R.measure(run, tuned, model, tok, base_old)
    assert m["forgetting"] == pytest.approx(base_old - m["old_skill"])
    assert m["kl"] > 0 and m["weight_change"] > 0 and 0 <= m["new_task"] <= 1
    assert R.weight_change(model, model) == 0.0
    with pytest.raises(ValueError, match="rl_policy"):
        R.train_run(R.RazorRun("x", "sft", 1e-4, 1, data="rl_samples"), model, tok, progress=False)
