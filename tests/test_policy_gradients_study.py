"""toyenv.experiments.policy_gradients: notebook A1's five RL runs, shipped in toyenv/data/policy_gradients.json.

The notebook runs RLOO live and reads the other four from the study; these tests check that the study holds what
the notebook reads and the claims the notebook's prose makes about the shipped runs. The live run is not re-run here:
CI runs notebook A1, whose check cell compares it with its shipped twin (`PG.compare_with_twin`, rtol 0.001)."""
import numpy as np
import pytest

from toyenv.experiments import policy_gradients as PG


@pytest.fixture(scope="module")
def study():
    return PG.load()


def test_the_study_holds_five_runs_with_the_notebooks_settings(study):
    assert tuple(study["runs"]) == PG.ALGORITHMS
    config = study["config"]
    assert {k: config[k] for k in ("max_steps", "num_prompts", "num_generations", "max_new_tokens", "learning_rate",
                                   "beta", "seed")} == \
        {"max_steps": 30, "num_prompts": 8, "num_generations": 8, "max_new_tokens": 20, "learning_rate": 1e-4,
         "beta": 0.0, "seed": 0}
    assert (study["ppo_iterations"], study["eval_episodes"]) == (2, 300)
    assert "threads" in study["machine"] and study["seconds"] > 0
    for name, r in study["runs"].items():
        assert r["algorithm"] == name
        for key in PG.SERIES:
            assert len(r[key]) == 30 and all(round(x, 4) == x for x in r[key]), (name, key)
        assert 0 <= r["greedy_accuracy"] <= 1 and round(r["greedy_accuracy"] * 300) == r["greedy_accuracy"] * 300
    assert 0 <= study["base"]["greedy_accuracy"] <= 1


def test_the_configs_are_the_notebooks():
    for name in PG.ALGORITHMS:
        cfg = PG.rl_config(name)
        assert (cfg.algorithm, cfg.max_steps, cfg.num_prompts, cfg.num_generations, cfg.max_new_tokens,
                cfg.learning_rate, cfg.beta, cfg.seed) == (name, 30, 8, 8, 20, 1e-4, 0.0, 0)
        assert cfg.num_iterations == (2 if name == "ppo" else 1)


# The notebook's prose about the shipped runs (section 4, "what holds across the runs").

def test_every_algorithm_raised_the_sampled_reward_ppo_the_least(study):
    gains = {name: PG.summary(r)["reward_last"] - PG.summary(r)["reward_first"] for name, r in study["runs"].items()}
    assert all(g > 0 for g in gains.values()), gains
    assert min(gains, key=gains.get) == "ppo", gains


def test_greedy_accuracy_moved_by_a_few_points_up_for_four_runs_down_for_ppo(study):
    base = study["base"]["greedy_accuracy"]
    moves = {name: r["greedy_accuracy"] - base for name, r in study["runs"].items()}
    assert all(abs(m) <= 0.08 for m in moves.values()), moves  # a few points of 300 deals
    assert moves["ppo"] < 0 and all(m > 0 for name, m in moves.items() if name != "ppo"), moves


def test_ppo_moved_furthest_from_the_base_model_without_gaining_more_reward(study):
    s = {name: PG.summary(r) for name, r in study["runs"].items()}
    assert max(s, key=lambda n: s[n]["kl_end"]) == "ppo"
    assert s["ppo"]["reward_last"] < max(v["reward_last"] for n, v in s.items() if n != "ppo")


def test_every_run_moved_away_from_the_base_model_and_lowered_its_entropy(study):
    for name, r in study["runs"].items():
        assert np.mean(r["kl"][-5:]) > 0.05, name
        assert np.mean(r["entropy"][-5:]) < np.mean(r["entropy"][:5]), name


def test_only_ppo_clips(study):
    for name, r in study["runs"].items():
        if name == "ppo":
            assert r["clip_frac"][0] > 0 and np.mean(r["clip_frac"]) > 0
        else:  # one pass over each batch: the ratio is 1 and nothing is clipped
            assert r["clip_frac"] == [0.0] * 30, name
