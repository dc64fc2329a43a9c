"""Tests for the V-IRL-style text navigation environment (toyenv.envs.navigation)."""
from __future__ import annotations

import re

import gymnasium as gym
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toyenv.envs  # noqa: F401  (registers the gymnasium ids)
from toyenv.envs.navigation import (
    ACTION_SPACE_KINDS,
    HEADINGS,
    MAX_ACTION_CHARS,
    MAX_PROMPT_CHARS,
    RELATIVE_TURNS,
    NavigationEnv,
    evaluate,
    expert_dataset,
    parse_action,
)
from toyenv.tokenizer import Tokenizer

TOK = Tokenizer()


def run_oracle(env: NavigationEnv, seed: int):
    obs, info = env.reset(seed=seed)
    rewards, infos, obs_list = [], [info], [obs]
    while True:
        obs, r, term, trunc, info = env.step(info["expert_action"])
        rewards.append(r)
        infos.append(info)
        obs_list.append(obs)
        if term or trunc:
            return rewards, infos, obs_list, term, trunc


# --------------------------------------------------------------------------- gymnasium API


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_check_env(kind):
    check_env(NavigationEnv(kind).unwrapped, skip_render_check=True)


def test_registered_and_bad_kind():
    env = gym.make("toyenv/Navigation-v0", action_space_kind="relative")
    obs, _ = env.reset(seed=0)
    assert obs.startswith("Turns: relative")
    with pytest.raises(ValueError, match="absolute.*relative"):
        NavigationEnv("compass")
    with pytest.raises(ValueError):
        parse_action("forward()", "polar")


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_reset_deterministic(kind):
    a, b = NavigationEnv(kind), NavigationEnv(kind)
    for seed in range(20):
        (oa, ia), (ob, ib) = a.reset(seed=seed), b.reset(seed=seed)
        assert oa == ob and ia["route"] == ib["route"] and ia["expert_action"] == ib["expert_action"]
    assert len({a.reset(seed=s)[0] for s in range(20)}) > 15


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_oracle_always_rewarded_and_succeeds(kind):
    env = NavigationEnv(kind)
    for seed in range(200):
        rewards, infos, obs_list, term, trunc = run_oracle(env, seed)
        assert term and not trunc
        assert all(r == 1.0 for r in rewards)
        assert infos[-1]["success"] and infos[-1]["expected_action"] == "stop()"
        assert all(i["correct"] and i["reason"] == "correct" for i in infos[1:])
        n_seg = len(infos[0]["route"].segments)
        assert 2 <= n_seg <= 3
        assert len(rewards) == infos[0]["n_oracle_steps"] == sum(1 + s.length for s in infos[0]["route"].segments) + 1
        for o in obs_list:
            assert env.observation_space.contains(o)
        # stepping a finished episode is harmless
        obs, r, term, trunc, info = env.step("forward()")
        assert term and r == 0.0 and "reset" in info["reason"]


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_prompt_budget_and_tokenizable(kind):
    data = expert_dataset(400, kind, seed=7)
    assert len(data) > 2000
    for prompt, action in data:
        assert len(prompt) <= MAX_PROMPT_CHARS
        assert len(action) <= MAX_ACTION_CHARS
        TOK.encode(prompt + action, bos=True, eos=True)  # raises on any out-of-vocabulary char
        assert prompt.startswith(f"Turns: {kind}\n") and prompt.endswith("Action: ")
        assert parse_action(action, kind) == (action, None)


def test_max_steps_truncates():
    env = NavigationEnv(max_steps=2)
    obs, info = env.reset(seed=0)
    _, _, term, trunc, info = env.step(info["expert_action"])
    assert not term and not trunc
    _, _, term, trunc, _ = env.step(info["expert_action"])
    assert trunc and not term


# --------------------------------------------------------------------------- rewards and parsing


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_wrong_action_gets_minus_one_and_ends(kind):
    env = NavigationEnv(kind)
    obs, info = env.reset(seed=1)
    assert info["expert_action"].startswith("turn_direction(")
    obs2, r, term, trunc, info2 = env.step("forward()")
    assert r == -1.0 and term and not trunc and not info2["correct"] and not info2["success"]
    assert "wrong action" in info2["reason"] and "forward()" in info2["reason"]
    assert obs2 == obs and info2["expert_action"] is None


@pytest.mark.parametrize(
    "kind, action, why",
    [
        ("relative", "turn_direction(north)", "absolute direction"),
        ("relative", "turn_direction(southwest)", "absolute direction"),
        ("absolute", "turn_direction(left)", "relative turn"),
        ("absolute", "turn_direction(slightly right)", "relative turn"),
        ("absolute", "turn_direction(up)", "unknown direction"),
        ("absolute", "go north", "expected forward()"),
        ("relative", "", "empty"),
        ("relative", "x" * 500, "too long"),
        ("absolute", None, "expected a string"),
        ("absolute", b"forward()", "expected a string"),
    ],
)
def test_malformed_actions(kind, action, why):
    parsed, reason = parse_action(action, kind)
    assert parsed is None and why in reason and reason.startswith("malformed")
    env = NavigationEnv(kind)
    env.reset(seed=0)
    _, r, term, _, info = env.step(action)
    assert r == -1.0 and term and not info["correct"] and why in info["reason"]


def test_parse_normalizes():
    assert parse_action("  Forward( )\nstop()", "absolute") == ("forward()", None)
    assert parse_action("turn_direction( slightly   LEFT )", "relative") == ("turn_direction(slightly left)", None)
    assert parse_action("STOP()", "relative") == ("stop()", None)
    assert parse_action("turn_direction(northeast)", "absolute") == ("turn_direction(northeast)", None)
    assert parse_action("forward() please", "absolute")[0] is None


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=20), st.integers(), st.none(), st.lists(st.text())))
def test_fuzz_parse_action(text):
    for kind in ACTION_SPACE_KINDS:
        parsed, reason = parse_action(text, kind)
        assert (parsed is None) != (reason is None)
        if parsed is not None:
            assert re.fullmatch(r"forward\(\)|stop\(\)|turn_direction\([a-z ]+\)", parsed)


_FUZZ_ENV = {k: NavigationEnv(k) for k in ACTION_SPACE_KINDS}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(ACTION_SPACE_KINDS),
    actions=st.lists(st.one_of(st.text(max_size=60), st.sampled_from(["forward()", "stop()"])), max_size=4),
)
def test_fuzz_env_step(seed, kind, actions):
    env = _FUZZ_ENV[kind]
    env.reset(seed=seed)
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        assert r in (-1.0, 0.0, 1.0) and isinstance(info["reason"], str)
        assert env.observation_space.contains(obs)


# --------------------------------------------------------------------------- absolute vs relative


def test_relative_and_absolute_agree():
    """Same seed, same route; the relative oracle turn applied to the heading gives the absolute one."""
    env_a, env_r = NavigationEnv("absolute"), NavigationEnv("relative")
    n_turns = 0
    for seed in range(150):
        infos_a = run_oracle(env_a, seed)[1]
        infos_r = run_oracle(env_r, seed)[1]
        assert infos_a[0]["route"] == infos_r[0]["route"]
        assert len(infos_a) == len(infos_r)
        # infos[k] (k >= 1) judges the action taken in the state described by infos[k - 1]
        for k in range(1, len(infos_a)):
            ea, er = infos_a[k]["expected_action"], infos_r[k]["expected_action"]
            assert infos_a[k - 1]["heading"] == infos_r[k - 1]["heading"]
            if not ea.startswith("turn_direction("):
                assert ea == er
                continue
            n_turns += 1
            target = ea[len("turn_direction(") : -1]
            turn = er[len("turn_direction(") : -1]
            before = HEADINGS.index(infos_r[k - 1]["heading"])
            assert target != HEADINGS[before]
            assert HEADINGS[(before + RELATIVE_TURNS[turn]) % 8] == target == infos_a[k]["heading"]
    assert n_turns > 300


def test_relative_turn_from_prompt_heading():
    """Applying the relative oracle turn to the heading shown in the prompt gives the absolute target."""
    abs_data = expert_dataset(200, "absolute", seed=3)
    rel_data = expert_dataset(200, "relative", seed=3)
    assert len(abs_data) == len(rel_data)
    checked = 0
    for (pa, aa), (pr, ar) in zip(abs_data, rel_data):
        assert pa.split("\n", 1)[1] == pr.split("\n", 1)[1]  # same state, only the header differs
        if aa.startswith("turn_direction("):
            facing = re.search(r"Facing: (\w+)\.", pr).group(1)
            turn = ar[len("turn_direction(") : -1]
            assert HEADINGS[(HEADINGS.index(facing) + RELATIVE_TURNS[turn]) % 8] == aa[len("turn_direction(") : -1]
            checked += 1
        else:
            assert aa == ar
    assert checked > 400


# --------------------------------------------------------------------------- evaluate()


def solve_from_prompt(prompt: str) -> str:
    """A hand-written policy that reads only the prompt text (proves the task is well posed)."""
    kind = re.search(r"Turns: (\w+)", prompt).group(1)
    faces = re.findall(r"\d+\.Face (\w+)\.", prompt)
    goals = re.findall(r"\d+\.Go to (\w+) on (?:left|right)\.", prompt)
    facing = re.search(r"Facing: (\w+)\.", prompt).group(1)
    here = re.search(r"Here: (\w+)", prompt).group(1)
    history = re.search(r"History: (.*)\n", prompt).group(1)
    t = history.split(", ").count("turn")
    if t > 0 and here != goals[t - 1]:
        return "forward()"
    if t == len(faces):
        return "stop()"
    target = faces[t]
    if kind == "absolute":
        return f"turn_direction({target})"
    delta = (HEADINGS.index(target) - HEADINGS.index(facing)) % 8
    name = {d % 8: n for n, d in RELATIVE_TURNS.items()}[delta]
    return f"turn_direction({name})"


class FakeModel:
    """Stands in for the course GPT: same `generate` signature, answers by a rule."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0
        self.training = True

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_k=None, greedy=False, eos_id=2,
                 pad_id=0, use_cache=True, generator=None):
        assert torch.is_grad_enabled() is False and self.training is False
        self.calls += 1
        P = max(len(p) for p in prompts)
        rows, masks = [], []
        for p in prompts:
            assert p[0] == TOK.bos_id
            gen = (TOK.encode(self.answer(TOK.decode(p))) + [eos_id])[:max_new_tokens]
            gen += [pad_id] * (max_new_tokens - len(gen))
            rows.append([pad_id] * (P - len(p)) + list(p) + gen)
            masks.append([False] * P + [True] * max_new_tokens)
        return torch.tensor(rows), torch.tensor(masks)


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_evaluate_oracle_and_garbage(kind):
    oracle = FakeModel(solve_from_prompt)
    res = evaluate(oracle, TOK, action_space_kind=kind, n_episodes=60, seed=5, batch_size=128)
    assert res["per_step_accuracy"] == 1.0 and res["route_success"] == 1.0
    assert res["n_episodes"] == 60 and res["n_steps"] > 60 * 6
    assert oracle.calls == -(-res["n_steps"] // 128)  # one generate call per batch
    assert oracle.training is True  # restored
    assert res["samples"] and all(s["correct"] for s in res["samples"])

    garbage = FakeModel(lambda prompt: "I think we should go ~north~!")
    res = evaluate(garbage, TOK, action_space_kind=kind, n_episodes=20, seed=5)
    assert res["per_step_accuracy"] == 0.0 and res["route_success"] == 0.0 and res["malformed_rate"] == 1.0


def test_evaluate_partial_credit():
    """Always answering forward() is right on the forward states only and never completes a route."""
    res = evaluate(FakeModel(lambda p: "forward()"), TOK, n_episodes=50, seed=1)
    data = expert_dataset(50, "absolute", seed=1)
    expected = sum(a == "forward()" for _, a in data) / len(data)
    assert res["per_step_accuracy"] == pytest.approx(expected) and 0.3 < expected < 0.8
    assert res["route_success"] == 0.0 and res["n_steps"] == len(data)


def test_solver_matches_oracle_on_dataset():
    for kind in ACTION_SPACE_KINDS:
        for prompt, action in expert_dataset(300, kind, seed=11):
            assert solve_from_prompt(prompt) == action
