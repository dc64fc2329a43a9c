"""toyenv.experiments.razor: notebook 09's measurements, the other annotator's data, the fixed-seed SFT-vs-RL
comparison and the shipped study. (The KL measurement against `exact_categorical` is in test_kl.py.)"""
import json

import pytest
import torch

from toyenv.envs import general_points as gp
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
    base_old = R.old_skills(model, tok)
    assert base_old["ranked"] == R.old_skill(model, tok)
    m = R.measure(run, tuned, model, tok, base_old)
    assert m["forgetting"] == pytest.approx(base_old["ranked"] - m["old_skill"])
    assert m["forgetting_navigation"] == pytest.approx(base_old["navigation"] - m["old_navigation"])
    assert m["kl"] > 0 and m["weight_change"] > 0 and 0 <= m["new_task"] <= 1
    assert R.weight_change(model, model) == 0.0
    with pytest.raises(ValueError, match="rl_policy"):
        R.train_run(R.RazorRun("x", "sft", 1e-4, 1, data="rl_samples"), model, tok, progress=False)
    with pytest.raises(ValueError, match="unknown data"):
        R.train_run(R.RazorRun("x", "sft", 1e-4, 1, data="nope"), model, tok, progress=False)


def test_the_other_annotator_answers_the_same_deals_correctly_in_another_style():
    theirs, expert = R.other_annotator_dataset(200), R.expert_dataset(200)
    assert [p for p, _ in theirs] == [p for p, _ in expert]
    for cards, (prompt, answer) in zip(R.sft_hands(200), theirs):
        assert gp.verify(cards, answer, R.NEW_RULE).correct, (prompt, answer)
    same_length = sum(len(a) == len(b) for (_, a), (_, b) in zip(theirs, expert))
    different = sum(a != b for (_, a), (_, b) in zip(theirs, expert))
    assert same_length == 200  # as short as the expert's (fewest parentheses) ...
    assert different >= 190  # ... but another solution on almost every deal


def test_sft_on_another_annotator_moves_further_in_kl_than_rl_at_a_comparable_new_task_score(base):
    """Seed 0, the shipped settings (about 80 s): both runs reach about the same new-task score, and SFT's
    KL(π0 ‖ π) on the new task is many times RL's. It also forgets more of the ranked rule."""
    model, tok = base
    runs = {r.name: r for r in R.RUNS}
    out = {}
    for name in ("RL lr 1e-4, KL beta 0.1", "SFT other annotator lr 3e-4, 2x"):
        tuned = R.train_run(runs[name], model, tok, progress=False)
        out[name] = (R.new_task_score(tuned, tok), R.new_task_kl(model, tuned, tok), R.old_skill(tuned, tok))
    (rl_new, rl_kl, rl_old), (sft_new, sft_kl, sft_old) = out.values()
    base_new = R.new_task_score(model, tok)
    assert rl_new > base_new + 0.05 and sft_new > base_new + 0.05  # both learned the new task ...
    assert abs(sft_new - rl_new) <= 0.05  # ... to a comparable score
    assert sft_kl > 5 * rl_kl
    assert sft_old < rl_old - 0.1


def test_the_shipped_study_backs_the_notebook():
    study = json.loads(R.RESULTS_PATH.read_text())
    rows = {r["name"]: r for r in study["runs"]}
    assert [r.name for r in R.RUNS] == list(rows)  # rebuilt with the current RUNS
    assert len(rows) >= 8
    for skill, forgot in (("ranked", "forgetting"), ("navigation", "forgetting_navigation")):
        y = [r[forgot] for r in rows.values()]
        for key in ("kl", "weight_change"):
            assert study["r2"][skill][key] == pytest.approx(R.r_squared([r[key] for r in rows.values()], y))
    # section 3's reading: weight change fits better than KL, on all runs and on those that learned the new task,
    # and keeping only the latter raises R² for both
    learned = [r for r in rows.values() if r["new_task"] >= study["base"]["new_task"] + 0.05]
    assert len(learned) >= 8
    for forgot in ("forgetting", "forgetting_navigation"):
        for pick in (list(rows.values()), learned):
            y = [r[forgot] for r in pick]
            assert R.r_squared([r["weight_change"] for r in pick], y) > R.r_squared([r["kl"] for r in pick], y)
        for key in ("kl", "weight_change"):
            assert (R.r_squared([r[key] for r in learned], [r[forgot] for r in learned])
                    > R.r_squared([r[key] for r in rows.values()], [r[forgot] for r in rows.values()]))
    # the ranked rule: every run under 1.6 nats kept it, every run over 2.3 nats lost some
    assert all(r["forgetting"] <= 0 for r in rows.values() if r["kl"] < 1.6)
    assert all(r["forgetting"] > 0 for r in rows.values() if r["kl"] > 2.3)
    # section 2's pair: comparable new-task scores, an order of magnitude apart in KL
    rl, sft = rows["RL lr 1e-4, KL beta 0.1"], rows["SFT other annotator lr 3e-4, 2x"]
    assert abs(rl["new_task"] - sft["new_task"]) <= 0.05 and sft["kl"] > 10 * rl["kl"]
    # section 3: every RL run that learned the new task kept both old skills within a point
    base_new = study["base"]["new_task"]
    learned_rl = [r for r in rows.values() if r["method"] == "rl" and r["new_task"] > base_new + 0.05]
    assert len(learned_rl) >= 3
    assert all(r["forgetting"] < 0.01 and r["forgetting_navigation"] < 0.01 for r in learned_rl)
    # section 4: the expert the base model was pretrained on is cheaper in KL than RL at a comparable score
    assert rows["SFT lr 1e-4, 20 steps"]["kl"] < min(rl["kl"], rows["RL lr 1e-4, 150 steps"]["kl"])
