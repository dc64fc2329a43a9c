"""toyenv.drift.weight_changes: L1, L2 and Fisher-weighted distance between two models' weights, by hand."""
import copy

import pytest
import torch

from toyenv.drift import weight_changes


def _pair():
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    return base, copy.deepcopy(base)


def test_weight_changes_by_hand():
    base, model = _pair()
    with torch.no_grad():
        model[0].weight[0, 1] += 3.0   # Δ = 3 on one weight
        model[1].bias[0] -= 4.0        # Δ = -4 on one bias
    fisher = [torch.zeros(2, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1)]
    fisher[0][0, 1], fisher[3][0] = 2.0, 0.5
    got = weight_changes(model, base, fisher)
    assert got["weight_l1"] == pytest.approx(7.0)
    assert got["weight_change"] == pytest.approx(5.0)
    assert got["weight_fisher"] == pytest.approx(2.0 * 9 + 0.5 * 16)
    # a weight with no Fisher information does not count in the Fisher distance
    fisher[3][0] = 0.0
    assert weight_changes(model, base, fisher)["weight_fisher"] == pytest.approx(18.0)
    # no change, no distance; the arguments' order does not matter for these symmetric distances
    assert weight_changes(base, base, fisher) == {"weight_l1": 0.0, "weight_change": 0.0, "weight_fisher": 0.0}
    assert weight_changes(base, model, fisher) == weight_changes(model, base, fisher)
    # without a Fisher, the two plain distances only
    assert weight_changes(model, base) == {"weight_l1": pytest.approx(7.0), "weight_change": pytest.approx(5.0)}


def test_weight_changes_refuses_mismatched_lists():
    base, model = _pair()
    with pytest.raises(ValueError, match="3 in fisher"):
        weight_changes(model, base, [torch.zeros(1)] * 3)
