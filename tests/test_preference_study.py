"""toyenv.experiments.preference: notebook 05's displacement on the real base model, and the shipped study."""
from dataclasses import asdict

import numpy as np
import pytest

from toyenv.experiments import preference as P
from toyenv.preference import LLAMA2_MARGINS


@pytest.fixture(scope="module")
def displacement(base):
    """Plain DPO and DPO + NLL (α = 1) on the same 128 sampled pairs, 40 steps each."""
    model, tok = base
    exp = P.DPOExperiment(num_pairs=128, monitor_pairs=32, max_steps=40, eval_every=0, eval_episodes=50,
                          kl_prompts=16)
    pairs = P.sampled_pairs(model, tok, exp.num_pairs, seed=0)
    monitor = P.sampled_pairs(model, tok, exp.monitor_pairs, seed=P.MONITOR_SEED)
    return {name: P.run_dpo(loss, 0.1, alpha, 0, exp, model, tok, pairs, monitor, progress=False)[1]
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
    exp = P.MarginExperiment(num_train=64, num_test=64, max_steps=3)
    _, rec = P.run_margin("large", seed=0, exp=exp, base=model, tokenizer=tok, progress=False)
    assert rec["table"] == "large"
    assert sum(rec["test"][s]["n"] for s in rec["test"] if s != "all") == rec["test"]["all"]["n"] == 64
    assert all(0 <= v["accuracy"] <= 1 for v in rec["test"].values())


@pytest.fixture(scope="module")
def study():
    return P.load_study()


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
    assert exp.max_steps == 100 and exp.eval_every == 100
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
