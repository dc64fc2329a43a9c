"""toyenv.experiments.preference: notebook 05's displacement on the real base model, and the shipped study."""
from dataclasses import asdict, replace

import numpy as np
import pytest

from toyenv.experiments import preference as P
from toyenv.pairs import LLAMA2_MARGINS
from toyenv.trainers.dpo import PreferenceConfig
from toyenv.trainers.reward_model import RewardConfig


@pytest.fixture(scope="module")
def displacement(base):
    """Plain DPO and DPO + NLL (α = 1) on the same 128 sampled pairs, 40 steps of 16 pairs each. Measured (changes in
    nats): plain DPO ends with margin 3.6, chosen -4.7, rejected -8.3, KL 7.4; DPO + NLL with chosen -1.5, margin 2.3,
    KL 2.7. Batches of 32 took twice as long and went further the same way (plain DPO: margin 4.9, chosen -6.7)."""
    model, tok = base
    exp = P.DPOExperiment(num_pairs=128, monitor_pairs=32, eval_episodes=50, kl_prompts=16,
                          training=PreferenceConfig(max_steps=40, batch_size=16, learning_rate=1e-4, eval_every=0))
    pairs = P.sampled_pairs(model, tok, exp.num_pairs, seed=0)
    monitor = P.sampled_pairs(model, tok, exp.monitor_pairs, seed=P.MONITOR_SEED)
    return {name: P.run(loss, 0.1, alpha, 0, exp, model, tok, pairs, monitor, progress=False)[1]
            for name, loss, alpha in (("dpo", "dpo", 0.0), ("nll", "dpo_nll", 1.0))}


def test_plain_dpo_displaces_the_chosen_answers(displacement):
    f = displacement["dpo"]["final"]
    assert f["margin"] > 2.0          # the loss gets what it asks for ...
    assert f["chosen_delta"] < -1.0   # ... by pushing the chosen answers down too
    assert f["rejected_delta"] < f["chosen_delta"]


def test_the_nll_term_holds_the_chosen_answers_up(displacement):
    d, n = displacement["dpo"]["final"], displacement["nll"]["final"]
    assert n["chosen_delta"] > d["chosen_delta"] + 1.0
    assert n["kl"] < d["kl"]
    assert n["margin"] > 0


def test_records_have_what_the_notebooks_read(displacement):
    rec = displacement["nll"]
    assert rec["loss_type"] == "dpo_nll" and rec["alpha"] == 1.0 and rec["seed"] == 0
    assert [s for s, _ in rec["eval"]] == [0, 40]
    for key in ("chosen_logp", "rejected_logp", "chosen_delta", "rejected_delta", "margin", "accuracy",
                "task_accuracy", "kl"):
        assert key in rec["final"]


def test_margin_run_reports_every_strength(base):
    model, tok = base
    exp = P.MarginExperiment(num_train=64, num_test=64, training=RewardConfig(max_steps=3, learning_rate=3e-4))
    _, rec = P.run_margin("large", seed=0, exp=exp, base=model, tokenizer=tok, progress=False)
    assert rec["table"] == "large"
    assert sum(rec["test"][s]["n"] for s in rec["test"] if s != "all") == rec["test"]["all"]["n"] == 64
    assert all(0 <= v["accuracy"] <= 1 for v in rec["test"].values())


@pytest.fixture(scope="module")
def study():
    return P.load()


def test_shipped_alpha_sweep_anchors_the_chosen_answers_more_as_alpha_grows(study):
    seeds = sorted({r["seed"] for r in study["alpha_sweep"]})
    assert len(seeds) >= 2
    for s in seeds:
        runs = sorted((r for r in study["alpha_sweep"] if r["seed"] == s), key=lambda r: r["alpha"])
        assert [r["alpha"] for r in runs] == list(P.ALPHAS)
        chosen = [r["final"]["chosen_delta"] for r in runs]
        kl = [r["final"]["kl"] for r in runs]
        assert chosen == sorted(chosen) and kl == sorted(kl, reverse=True)
        assert runs[0]["final"]["chosen_delta"] < -5 and runs[0]["final"]["margin"] > 5  # α = 0: displacement


def test_shipped_beta_sweep_moves_less_as_beta_grows(study):
    for s in sorted({r["seed"] for r in study["beta_sweep"]}):
        runs = [r for r in study["beta_sweep"] if r["seed"] == s]
        runs += [r for r in study["alpha_sweep"] if r["seed"] == s and r["alpha"] == 0.0]
        runs.sort(key=lambda r: r["beta"])
        assert [r["beta"] for r in runs] == list(P.BETAS)
        kl = [r["final"]["kl"] for r in runs]
        assert kl == sorted(kl, reverse=True)


def test_shipped_margin_study_is_complete(study):
    tables = [r["table"] for r in study["margins"]]
    assert sorted(tables, key=str) == sorted(list(P.TABLES) * 3, key=str)
    acc = np.array([r["test"]["all"]["accuracy"] for r in study["margins"]])
    assert ((acc > 0.7) & (acc <= 1)).all()


def test_shipped_margin_gap_statistics_are_consistent(study):
    """bucket_metrics records, from the same held-out scores, where the score gaps sit against the margins."""
    for rec in study["margins"]:
        a = rec["test"]["all"]
        for key in ("below_small", "below_large", "wrong"):
            assert 0 <= a[key] <= 1
        # the large table's margins are >= the small table's, which are >= 0 (and 0 for "negligibly better")
        assert a["wrong"] <= a["below_small"] <= a["below_large"]
        # the scores are continuous (no ties), so a pair is either ranked right or wrong
        assert a["wrong"] == pytest.approx(1 - a["accuracy"], abs=1e-4)
        assert a["median_gap"] > 0


def test_shipped_score_gaps_mostly_clear_the_largest_margin(study):
    """Notebook 06's prose: most held-out score gaps are already above Llama 2's largest margin (3), so the margin
    binds only on the pairs the model still finds hard."""
    for rec in study["margins"]:
        a = rec["test"]["all"]
        assert a["median_gap"] > max(LLAMA2_MARGINS["large"].values())
        assert a["below_large"] < 0.5


def test_shipped_policy_margins_part(study):
    exp = P.policy_margin_experiment()
    assert study["policy_margin_experiment"] == asdict(exp)
    assert exp.training.max_steps == 100 and exp.training.eval_every == 100
    assert replace(exp.training, max_steps=200, eval_every=50) == P.DPOExperiment().training
    runs = {r["method"]: r for r in study["policy_margins"]}
    assert list(runs) == list(P.POLICY_METHODS) == ["DPO", "RPO", "REBEL"]
    for name, r in runs.items():
        assert all(r[k] == v for k, v in P.POLICY_METHODS[name].items())
        assert r["seed"] == P.POLICY_SEED and r["alpha"] == 0.0
        assert [s for s, _ in r["eval"]] == [0, 100]
        assert set(r["final"]) == {"chosen_logp", "rejected_logp", "chosen_delta", "rejected_delta", "margin",
                                   "accuracy", "task_accuracy", "kl"}
        h = np.array(r["h"])
        assert len(h) == exp.monitor_pairs
        # h is the per-pair log-ratio gap whose mean the monitor records as "margin", and whose sign "accuracy"
        assert h.mean() == pytest.approx(r["final"]["margin"], abs=1e-3)
        assert ((h > 0).mean() + 0.5 * (h == 0).mean()) == pytest.approx(r["final"]["accuracy"], abs=1.5 / len(h))
    # notebook 06's prose: DPO keeps widening h; the finite targets of RPO and REBEL stop the policy sooner
    assert runs["DPO"]["final"]["margin"] > max(runs["RPO"]["final"]["margin"], runs["REBEL"]["final"]["margin"])
    assert runs["DPO"]["final"]["kl"] > max(runs["RPO"]["final"]["kl"], runs["REBEL"]["final"]["kl"])


# --------------------------------------------------------------------------- reading the results (notebooks 05, 06)
def test_displacement_verdicts():
    shipped_like = {"final": {"chosen_delta": -18.07, "rejected_delta": -30.78, "margin": 12.71,
                              "task_accuracy": 0.045}}
    assert P.displacement_verdicts(shipped_like, base_task_accuracy=0.52) == [
        "chosen log-prob fell by more than 5 nats: yes", "rejected log-prob fell further than the chosen: yes",
        "margin h grew above 5: yes", "greedy task accuracy below half the base model's: yes"]
    held = {"final": {"chosen_delta": -3.2, "rejected_delta": -1.0, "margin": 4.0, "task_accuracy": 0.3}}
    assert all(line.endswith(": no") for line in P.displacement_verdicts(held, base_task_accuracy=0.52))


def _pair(kc, kr, rc, rr):
    from toyenv.pairs import PreferencePair, strength_for_gap
    return PreferencePair("p", "c", "r", strength=strength_for_gap(rc - rr), reward_chosen=rc, reward_rejected=rr,
                          info={"kind_chosen": kc, "kind_rejected": kr})


def test_kinds_accuracy_groups_pairs_by_their_verdicts():
    pairs = [_pair("correct", "wrong_value", 5, -1), _pair("correct", "wrong_value", 5, -1),
             _pair("wrong_value", "illegal", -1, -3), _pair("correct", "illegal", 5, -3),
             _pair("correct", "wrong_value", 5, -1)]
    r_c = [1.0, 0.0, 2.0, 3.0, 0.5]
    r_r = [0.0, 1.0, -1.0, 0.0, 0.5]   # right, wrong, right, right, tie (counts half)
    rows = P.kinds_accuracy(pairs, r_c, r_r)
    assert [(r["chosen"], r["rejected"], r["reward_gap"]) for r in rows] == [
        ("correct", "illegal", 8), ("correct", "wrong_value", 6), ("wrong_value", "illegal", 2)]
    cv = rows[1]
    assert cv["n"] == 3 and cv["accuracy"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert cv["strength"] == "significantly_better" and rows[2]["strength"] == "better"
    with pytest.raises(ValueError):
        P.kinds_accuracy(pairs, r_c[:4], r_r)


def test_gaps_by_reward_gap_and_targets():
    assert P.target_gap("RPO", 6.0) == pytest.approx(6.0)     # η/β = 0.1/0.1
    assert P.target_gap("REBEL", 6.0) == pytest.approx(6.0)   # η = 1
    assert P.target_gap("DPO", 6.0) is None
    h = [0.5, 1.5, 3.0, 2.0, 7.0, 1.0]
    dr = [1, 1, 6, 6, 6, 2]
    rows = P.gaps_by_reward_gap(h, dr, "REBEL")
    assert [r["reward_gap"] for r in rows] == [1.0, 2.0, 6.0]
    assert rows[0] == {"reward_gap": 1.0, "n": 2, "median_h": 1.0, "target": 1.0, "reached": 0.5}
    assert rows[2]["median_h"] == 3.0 and rows[2]["reached"] == pytest.approx(1 / 3)
    assert P.gaps_by_reward_gap(h, dr, "DPO")[2]["target"] is None


def test_margin_verdicts_on_the_shipped_study(study):
    """By hand from preference_study.json: held-out accuracy (all pairs) of seeds 0, 1, 2 is no margin 0.872,
    0.898, 0.861 (mean 0.877, std 0.0155); small 0.865, 0.932, 0.869 (mean 0.8887); large 0.839, 0.845, 0.846
    (mean 0.843), below no margin on every seed."""
    m = P.margin_summary(study)
    assert m[None]["all"] == [0.872, 0.898, 0.861] and m["large"]["all"] == [0.839, 0.845, 0.846]
    assert m[None]["mean"]["all"] == pytest.approx(0.877) and m[None]["std"]["all"] == pytest.approx(0.01551, abs=1e-5)
    assert m["small"]["all"] == [0.865, 0.932, 0.869]
    assert m["small"]["mean"]["all"] == pytest.approx(0.88867, abs=1e-5)
    assert m[None]["mean"]["significantly_better"] == pytest.approx((0.8264 + 0.8473 + 0.837) / 3)
    assert P.margin_verdicts(study) == [
        "small margin vs no margin, mean held-out accuracy 0.889 vs 0.877 (+0.012); lower on 1/3 seeds; within the "
        "no-margin seed-to-seed spread (std 0.016): yes",
        "large margin vs no margin, mean held-out accuracy 0.843 vs 0.877 (-0.034); lower on 3/3 seeds; within the "
        "no-margin seed-to-seed spread (std 0.016): no",
        "large margin below no margin in mean held-out accuracy and on every seed: yes",
        "hardest bucket in mean held-out accuracy, for every table: significantly better",
        "'better' pairs ranked right by every model on every seed: yes"]


def test_policy_verdicts(study):
    runs = {r["method"]: r for r in study["policy_margins"]}
    assert all(line.endswith(": yes") for line in P.policy_verdicts(runs))
    # by hand: DPO moved the chosen log-probs by −9.74 with KL 21.5; RPO −0.89, KL 1.85; REBEL −1.06, KL 2.03
    far = {"DPO": {"final": {"chosen_delta": -4.0, "kl": 8.0}}, "RPO": {"final": {"chosen_delta": -1.5, "kl": 1.0}},
           "REBEL": {"final": {"chosen_delta": -0.5, "kl": 3.0}}}
    assert P.policy_verdicts(far) == ["RPO: |Δ log π(y_c)| below 0.25 of DPO's: no",
                                      "RPO: KL(π ‖ π_ref) below 0.25 of DPO's: yes",
                                      "REBEL: |Δ log π(y_c)| below 0.25 of DPO's: yes",
                                      "REBEL: KL(π ‖ π_ref) below 0.25 of DPO's: no"]


def test_strength_labels_are_sets_of_pair_kinds():
    """Notebook 06's reading of the buckets: the label comes from the reward gap, so 'significantly better' is the
    correct answer against any failure, 'better' only a wrong value against an illegal answer, 'slightly better' a
    wrong value against wrong numbers or wrong numbers against an illegal answer."""
    kinds: dict = {}
    for p in P.graded_pool_pairs(1000, seed=1000):
        kinds.setdefault(p.info["gap_strength"], set()).add((p.info["kind_chosen"], p.info["kind_rejected"]))
    assert kinds == {
        "significantly_better": {("correct", "wrong_value"), ("correct", "wrong_numbers"), ("correct", "illegal")},
        "better": {("wrong_value", "illegal")},
        "slightly_better": {("wrong_value", "wrong_numbers"), ("wrong_numbers", "illegal")}}


def test_shipped_policy_gaps_fall_short_of_their_targets(base, study):
    """Notebook 06's section 3, on the shipped runs: after 100 steps RPO and REBEL reached their target h = Δr on
    about half of the Δr = 1 pairs, but their median h is below the target for every Δr >= 6 (about 2.4 to 4.4
    against 6 to 8), and h follows Δr only loosely; DPO pushed even the Δr = 1 pairs far past h = 1."""
    model, tok = base
    monitor = P.sampled_pairs(model, tok, P.policy_margin_experiment().monitor_pairs, seed=P.MONITOR_SEED)
    dr = np.array([p.reward_chosen - p.reward_rejected for p in monitor])
    assert sorted(set(dr)) == [1, 2, 6, 7, 8] and (dr >= 6).sum() == 78 and (dr == 1).sum() == 40
    runs = {r["method"]: r for r in study["policy_margins"]}
    for name, corr in (("RPO", 0.22), ("REBEL", 0.28), ("DPO", 0.12)):
        assert np.corrcoef(dr, runs[name]["h"])[0, 1] == pytest.approx(corr, abs=0.005)
    for name in ("RPO", "REBEL"):
        rows = {r["reward_gap"]: r for r in P.gaps_by_reward_gap(runs[name]["h"], dr, name)}
        assert all(rows[g]["median_h"] < rows[g]["target"] - 1.5 for g in (6.0, 7.0, 8.0))
        assert rows[1.0]["median_h"] > 1.0 and 0.4 < rows[1.0]["reached"] < 0.6
    assert P.gaps_by_reward_gap(runs["DPO"]["h"], dr, "DPO")[0]["median_h"] > 5
