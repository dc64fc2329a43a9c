"""Tests for the V-IRL-style text navigation environment (toyenv.envs.navigation)."""
from __future__ import annotations

import copy
import math
import re

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toyenv.envs  # noqa: F401  (registers the gymnasium ids)
from toyenv.envs import general_points as gp
from toyenv.envs.navigation import (
    ACTION_SPACE_KINDS,
    HEADINGS,
    LANDMARKS,
    MAX_ACTION_CHARS,
    MAX_PROMPT_CHARS,
    RELATIVE_TURNS,
    NavigationEnv,
    evaluate,
    expert_dataset,
    parse_action,
)
from toyenv.tokenizer import Tokenizer

from fakes import ModeTracking, SpySampler

TOK = Tokenizer()

# Compass geometry, written out here rather than read from the module: bearings in degrees clockwise from north.
BEARING = {"north": 0, "northeast": 45, "east": 90, "southeast": 135,
           "south": 180, "southwest": 225, "west": 270, "northwest": 315}
# Left turns counterclockwise (the bearing goes down), right clockwise; "slightly" is half a turn, 45 degrees.
TURN_DEGREES = {"left": -90, "slightly left": -45, "slightly right": 45, "right": 90}


def heading_after(heading: str, turn: str) -> str:
    """The compass heading after a relative turn, from bearings alone."""
    bearing = (BEARING[heading] + TURN_DEGREES[turn]) % 360
    return next(h for h, b in BEARING.items() if b == bearing)


def unit_step(heading: str) -> tuple[int, int]:
    """(dx east, dy north) of one intersection along `heading`; diagonals move one block in each axis."""
    rad = math.radians(BEARING[heading])
    return round(math.sin(rad)), round(math.cos(rad))


def turn_name(facing: str, target: str) -> str:
    """The one relative turn that takes `facing` to `target` (routes only turn by 45 or 90 degrees)."""
    names = [t for t in TURN_DEGREES if heading_after(facing, t) == target]
    assert len(names) == 1, (facing, target, names)
    return names[0]


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
        assert term and not trunc and r == 0.0 and "reset" in info["reason"]


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


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_nothing_more_after_truncation(kind):
    """Gymnasium's contract: after truncated=True the caller must reset(); the env used to keep paying +1."""
    env = NavigationEnv(kind, max_steps=2)
    _, info = env.reset(seed=0)
    for _ in range(2):
        obs, r, term, trunc, info = env.step(info["expert_action"])
        assert r == 1.0
    assert trunc and not term
    oracle_next = info["expert_action"]  # the oracle action of the last prompt: paid +1 before the fix
    assert oracle_next is not None
    for action in (oracle_next, "forward()", "stop()", "garbage"):
        obs2, r, term, trunc, info = env.step(action)
        assert (r, term, trunc) == (0.0, False, True) and obs2 == obs
        assert not info["correct"] and info["reason"] == "episode is over; call reset()"
    _, info = env.reset(seed=0)  # a new episode pays again
    assert env.step(info["expert_action"])[1] == 1.0


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_nothing_more_after_termination(kind):
    env = NavigationEnv(kind)
    _, info = env.reset(seed=3)
    obs, r, term, trunc, info = env.step("stop()")  # wrong: a turn is due
    assert (r, term, trunc) == (-1.0, True, False)
    for action in ("stop()", "forward()", env._states[0].action):
        assert env.step(action)[1:4] == (0.0, True, False)


# --------------------------------------------------------------------------- constructor arguments


@pytest.mark.parametrize("field, value", [
    ("grid_size", 3.9),  # used to become 3 in silence
    ("grid_size", 6.0),
    ("grid_size", 2),
    ("grid_size", 21),
    ("grid_size", -6),
    ("grid_size", "6"),
    ("grid_size", None),
    ("grid_size", True),
    ("num_segments", 2.5),  # used to fail with "'float' object is not iterable"
    ("num_segments", 0),
    ("num_segments", -2),
    ("num_segments", 4),
    ("num_segments", (3, 2)),
    ("num_segments", (0, 2)),
    ("num_segments", (2, 3.0)),
    ("num_segments", (1, 2, 3)),
    ("num_segments", "23"),  # used to be read as (2, 3)
    ("num_segments", None),
    ("max_steps", 0),
    ("max_steps", -1),
    ("max_steps", 1.5),
    ("max_steps", float("nan")),
])
def test_constructor_refuses_bad_arguments(field, value):
    with pytest.raises(ValueError) as err:
        NavigationEnv(**{field: value})
    msg = str(err.value)
    assert f"NavigationEnv.{field} must be an integer" in msg and msg.endswith(f"got {value!r}"), msg


def test_constructor_accepts_ints_of_any_kind():
    env = NavigationEnv(grid_size=np.int64(4), num_segments=[1, np.int32(2)], max_steps=np.int16(30))
    assert (env.grid_size, env.num_segments, env.max_steps) == (4, (1, 2), 30)
    assert NavigationEnv(num_segments=3).num_segments == (3, 3)
    route = env.reset(seed=0)[1]["route"]
    assert route.grid_size == 4 and 1 <= len(route.segments) <= 2


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
        ("absolute", "turn_direction(up)", "unknown direction 'up' for absolute turns"),
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
    assert r == -1.0 and term and not info["correct"] and why in info["reason"] and info["success"] is False


def test_parse_normalizes():
    assert parse_action("  Forward( )\nstop()", "absolute") == ("forward()", None)
    assert parse_action("turn_direction( slightly   LEFT )", "relative") == ("turn_direction(slightly left)", None)
    assert parse_action("STOP()", "relative") == ("stop()", None)
    assert parse_action("turn_direction(northeast)", "absolute") == ("turn_direction(northeast)", None)
    assert parse_action("forward() please", "absolute")[0] is None


# Whitespace Python's str.strip() and regex \s accept but the grammar does not; the first three are ASCII controls.
NON_GRAMMAR_SPACES = ["\x0b", "\x0c", "\x1c", "\x85", "\u00a0", "\u2003", "\u2028", "\u3000", "\ufeff"]


@pytest.mark.parametrize("space", NON_GRAMMAR_SPACES)
def test_parser_rejects_non_grammar_whitespace_like_the_verifier(space):
    """Navigation's grammar allows ASCII space, tab and CR inside a line, as GeneralPoints' verifier does."""
    for kind, text in [
        ("relative", f"turn_direction(slightly{space}left)"),
        ("absolute", f"{space}forward()"),
        ("absolute", f"forward(){space}"),
        ("relative", f"stop({space})"),
        ("absolute", f"turn_direction({space}north)"),
    ]:
        parsed, reason = parse_action(text, kind)
        assert parsed is None and reason.startswith("malformed action: unexpected character"), (text, reason)
        assert ascii(space) in reason
    # the verifier of the other game refuses the same character
    assert gp.verify(["3", "3", "8", "8"], f"8/(3-8/3){space}").kind == "illegal"
    assert gp.verify(["3", "3", "8", "8"], f"8/(3{space}-8/3)").kind == "illegal"


@pytest.mark.parametrize("space", [" ", "\t", "\r", " \t "])
def test_parser_accepts_grammar_whitespace_like_the_verifier(space):
    assert parse_action(f"turn_direction(slightly{space}left)", "relative") == ("turn_direction(slightly left)", None)
    assert parse_action(f"{space}forward({space}){space}", "absolute") == ("forward()", None)
    assert gp.verify(["3", "3", "8", "8"], f"{space}8/(3{space}-8/3){space}").correct


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


# --------------------------------------------------------------------------- compass geometry


def test_compass_helpers_by_hand():
    """The test's own geometry, pinned on cases one can check on a compass rose."""
    assert heading_after("north", "left") == "west" and heading_after("north", "right") == "east"
    assert heading_after("north", "slightly left") == "northwest"
    assert heading_after("north", "slightly right") == "northeast"
    assert heading_after("east", "right") == "south" and heading_after("east", "slightly left") == "northeast"
    assert heading_after("southwest", "left") == "southeast" and heading_after("northwest", "slightly right") == "north"
    assert unit_step("north") == (0, 1) and unit_step("east") == (1, 0) and unit_step("southwest") == (-1, -1)
    # the module names the same headings and turns, and documents HEADINGS as clockwise from north, 45 apart
    assert set(HEADINGS) == set(BEARING) and set(RELATIVE_TURNS) == set(TURN_DEGREES)
    assert [BEARING[h] for h in HEADINGS] == list(range(0, 360, 45))


def turn_states(kind, seeds):
    """(env at a state where a turn is due, heading faced, heading the due "Face" instruction names)."""
    env = NavigationEnv(kind)
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        faces = re.findall(r"\d+\.Face (\w+)\.", obs)
        turns_done = 0
        while info["expert_action"] is not None:
            if info["expert_action"].startswith("turn_direction("):
                facing = re.search(r"Facing: (\w+)\.", obs).group(1)
                assert facing == info["heading"]
                yield env, facing, faces[turns_done]
                turns_done += 1
            obs, _, _, _, info = env.step(info["expert_action"])


def test_relative_turn_table_from_compass_geometry():
    """From every heading, every relative turn leads where the compass says, and only that turn is paid.

    The expected heading comes from bearings (left = counterclockwise), never from the module's table, so
    swapping left and right (or slightly and fully) in navigation's relative-turn table fails here."""
    covered = set()
    for env, facing, target in turn_states("relative", range(200)):
        for turn in TURN_DEGREES:
            trial = copy.deepcopy(env)
            obs, r, term, trunc, info = trial.step(f"turn_direction({turn})")
            if heading_after(facing, turn) == target:
                assert (r, term, info["correct"]) == (1.0, False, True), (facing, turn, target, info["reason"])
                assert info["heading"] == target and f"Facing: {target}." in obs
                covered.add((facing, turn))
            else:
                assert (r, term, info["correct"]) == (-1.0, True, False), (facing, turn, target, info["reason"])
        assert env.expert_action == f"turn_direction({turn_name(facing, target)})"
    assert covered == {(h, t) for h in BEARING for t in TURN_DEGREES}  # all 8 x 4 entries of the table checked


def test_absolute_turns_face_the_named_heading():
    """In the absolute space turn_direction(X) faces X: paid only when X is the instruction's heading."""
    covered = set()
    for env, facing, target in turn_states("absolute", range(120)):
        assert env.expert_action == f"turn_direction({target})"
        for heading in BEARING:
            trial = copy.deepcopy(env)
            obs, r, term, _, info = trial.step(f"turn_direction({heading})")
            if heading == target:
                assert r == 1.0 and not term and info["heading"] == heading and f"Facing: {heading}." in obs
            else:
                assert r == -1.0 and term
        covered.add((facing, target))
    # every turn the routes make (45 or 90 degrees either way) was tried from every heading
    assert covered == {(h, heading_after(h, t)) for h in BEARING for t in TURN_DEGREES}


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_forward_moves_one_block_along_the_heading_and_sides_follow_geometry(kind):
    """forward() moves by the heading's compass step (x east, y north), and "on left/right" is the side of the
    landmark's wedge: wedge w spans bearings 45w..45(w+1), so it is on the right when its centre lies 0..180
    degrees clockwise of the heading."""
    env = NavigationEnv(kind)
    n_forward = n_sides = n_final = 0
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        wedges = {(x, y): (name, w) for name, x, y, w in info["route"].landmarks}
        while True:  # every observation, the one after the final stop() included
            here = re.search(r"Here: (\w+)(?: on (\w+))?\.", obs).groups()
            if info["position"] in wedges:
                name, w = wedges[info["position"]]
                clockwise = (45 * w + 22.5 - BEARING[info["heading"]]) % 360
                assert here == (name, "right" if clockwise < 180 else "left")
                n_sides += 1
            else:
                assert here == ("none", None)
            if info["expert_action"] is None:
                n_final += info["position"] in wedges  # every route ends at a landmark
                break
            before, heading = info["position"], info["heading"]
            action = info["expert_action"]
            obs, _, _, _, info = env.step(action)
            if action == "forward()":
                dx, dy = unit_step(heading)
                assert info["position"] == (before[0] + dx, before[1] + dy)
                n_forward += 1
    assert n_forward > 100 and n_sides > 100 and n_final == 40


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
            before = infos_r[k - 1]["heading"]
            assert target != before
            assert heading_after(before, turn) == target == infos_a[k]["heading"] == infos_r[k]["heading"]
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
            assert heading_after(facing, turn) == aa[len("turn_direction(") : -1]
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
    return f"turn_direction({turn_name(facing, target)})"


class FakeModel(ModeTracking):
    """Stands in for the course GPT: same `generate` signature, answers by a rule."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0

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
    assert res["correct"] == [a == "forward()" for _, a in data]
    assert evaluate(FakeModel(lambda p: "forward()"), TOK, n_episodes=20, seed=1)["correct"] == \
        res["correct"][: len(expert_dataset(20, "absolute", seed=1))]  # the first 20 routes are the same routes


def test_solver_matches_oracle_on_dataset():
    for kind in ACTION_SPACE_KINDS:
        for prompt, action in expert_dataset(300, kind, seed=11):
            assert solve_from_prompt(prompt) == action


# --------------------------------------------------------------------------- the routes themselves
# Compass geometry, written out here: heading name -> one block (dx east, dy north).
_BLOCK = {"north": (0, 1), "northeast": (1, 1), "east": (1, 0), "southeast": (1, -1), "south": (0, -1),
          "southwest": (-1, -1), "west": (-1, 0), "northwest": (-1, 1)}
_CLOCKWISE = list(_BLOCK)  # 45 degrees apart, clockwise from north


def test_routes_walk_inside_the_city_without_crossing_themselves():
    """Many drawn routes, checked against the documented rules: inside the grid, self-avoiding, each leg a turn of
    45 or 90 degrees and 1 to 3 blocks, its landmark at its end on the side the wedge says, distractors elsewhere."""
    sides, turns, lengths, n_segments, distractor_wedges = set(), set(), set(), set(), set()
    for grid, segs in ((4, (1, 3)), (6, (2, 3)), (9, (1, 3))):
        env = NavigationEnv(grid_size=grid, num_segments=segs)
        for seed in range(60):
            env.reset(seed=seed)
            route = env.route
            n = route.grid_size
            assert n == grid and segs[0] <= len(route.segments) <= segs[1]
            n_segments.add(len(route.segments))
            pos, heading, visited = route.start, route.start_heading, {route.start}
            assert 0 <= pos[0] < n and 0 <= pos[1] < n
            landmark_at = {(x, y): (name, wedge) for name, x, y, wedge in route.landmarks}
            assert len(landmark_at) == len(route.landmarks)  # one landmark per cell
            assert len({name for name, *_ in route.landmarks}) == len(route.landmarks)  # and distinct names
            for seg in route.segments:
                turn = (_CLOCKWISE.index(seg.heading) - _CLOCKWISE.index(heading)) % 8
                assert turn in (1, 2, 6, 7), (heading, seg.heading)  # 45 or 90 degrees, left or right
                turns.add(turn)
                assert 1 <= seg.length <= 3
                lengths.add(seg.length)
                dx, dy = _BLOCK[seg.heading]
                for _ in range(seg.length):
                    pos = (pos[0] + dx, pos[1] + dy)
                    assert 0 <= pos[0] < n and 0 <= pos[1] < n, (route, pos)
                    assert pos not in visited, (route, pos)
                    visited.add(pos)
                assert seg.goal == pos
                name, wedge = landmark_at[pos]
                assert name == seg.landmark and 0 <= wedge < 8
                # wedges sit between streets, clockwise from the heading: the first four are on the right
                assert seg.side == ("right" if (wedge - _CLOCKWISE.index(seg.heading)) % 8 < 4 else "left")
                sides.add(seg.side)
                heading = seg.heading
            goals = {seg.goal for seg in route.segments}
            distractors = [(x, y, w) for name, x, y, w in route.landmarks
                           if name not in {seg.landmark for seg in route.segments}]
            assert all((x, y) not in goals and 0 <= x < n and 0 <= y < n for x, y, _ in distractors)
            assert len(distractors) == min(len(LANDMARKS) - len(route.segments), n * n - len(goals), n * n // 3)
            distractor_wedges |= {w for *_, w in distractors}
    assert sides == {"left", "right"} and turns == {1, 2, 6, 7} and lengths == {1, 2, 3}
    assert n_segments == {1, 2, 3} and distractor_wedges == set(range(8))


def test_parser_boundaries_by_hand():
    """The documented limits, at their edges: the first non-empty line of any number of lines, 80 characters per
    line and no more, printable ASCII up to "~" (which is allowed as a character, then fails the grammar)."""
    assert parse_action("\n\n  forward()  \nstop()\nturn_direction(north)") == ("forward()", None)
    padded = "turn_direction(" + " " * (80 - len("turn_direction(north)")) + "north)"
    assert len(padded) == 80 and parse_action(padded) == ("turn_direction(north)", None)
    action, why = parse_action(padded[:-1] + " )")
    assert action is None and "too long (81 characters)" in why
    action, why = parse_action("forward()~")
    assert action is None and "expected forward()" in why  # "~" is printable: a grammar error, not a bad character
    action, why = parse_action("forward()\x7f")
    assert action is None and why == "malformed action: unexpected character '\\x7f' at position 9 of 'forward()\\x7f'"


def test_evaluate_counts_steps_routes_and_malformed_answers_by_hand(monkeypatch):
    import toyenv.envs.navigation as nav
    from toyenv.envs.navigation import oracle_episodes, parse_action

    env_kwargs = {"num_segments": (2, 2)}
    episodes = oracle_episodes(6, "relative", 4, env_kwargs)
    prompts = [s.prompt for ep in episodes for s in ep]
    starts = np.cumsum([0] + [len(ep) for ep in episodes])
    # routes 0, 2, 3 and 5 answered right; route 1 has garbage at its first state and last, route 4 a well-formed
    # wrong action at its second
    garbage, wrong = {int(starts[1]), int(starts[2]) - 1}, {int(starts[4]) + 1}

    def answer(i, prompt):
        right = solve_from_prompt(prompt)
        if i in garbage:
            return "go ~north~"
        if i in wrong:
            return "stop()" if right != "stop()" else "forward()"
        return right

    spy = SpySampler(answer)
    monkeypatch.setattr(nav, "complete", spy)
    res = evaluate("model", TOK, "relative", n_episodes=6, seed=4, batch_size=5, max_new_tokens=20, greedy=False,
                   env_kwargs=env_kwargs, n_samples=starts[2] + 2)
    (call,) = spy.calls
    assert call["prompts"] == prompts
    assert (call["max_new_tokens"], call["batch_size"], call["greedy"]) == (20, 5, False)
    assert (call["eos_id"], call["pad_id"], call["generator"].initial_seed()) == (TOK.eos_id, TOK.pad_id, 4)
    n = len(prompts)
    assert res["per_step_accuracy"] == (n - 3) / n
    assert res["correct"] == [i not in garbage | wrong for i in range(n)]
    assert res["route_success"] == 4 / 6
    assert res["malformed_rate"] == 2 / n
    assert (res["n_steps"], res["n_episodes"]) == (n, 6)
    # the first n_samples states (routes 0 and 1 and two states of route 2), each with its reason
    assert len(res["samples"]) == starts[2] + 2
    for i, sample in enumerate(res["samples"]):
        expected, given = solve_from_prompt(prompts[i]), answer(i, prompts[i])
        reason = ("correct" if given == expected else parse_action(given, "relative")[1])
        assert sample == {"prompt": prompts[i], "completion": given, "expected": expected,
                          "correct": given == expected, "reason": reason}
    assert res["samples"][starts[1]]["reason"].startswith("malformed action")
    # a well-formed wrong answer says what it was and what was expected
    res = evaluate("model", TOK, "relative", n_episodes=6, seed=4, env_kwargs=env_kwargs, n_samples=n)
    i = starts[4] + 1
    given, expected = answer(i, prompts[i]), solve_from_prompt(prompts[i])
    assert res["samples"][i]["reason"] == f"wrong action: {given} (expected {expected})"


def test_evaluate_defaults(monkeypatch):
    import toyenv.envs.navigation as nav
    from toyenv.envs.navigation import oracle_episodes

    spy = SpySampler(lambda i, p: solve_from_prompt(p))
    monkeypatch.setattr(nav, "complete", spy)
    res = evaluate("model", TOK)
    (call,) = spy.calls
    assert call["prompts"] == [s.prompt for ep in oracle_episodes(500, "absolute", 0, None) for s in ep]
    # 32 tokens, as documented: the longest answer, "turn_direction(slightly right)", is 30 characters, plus EOS
    assert (call["max_new_tokens"], call["batch_size"], call["greedy"], call["generator"]) == (32, 256, True, None)
    assert res["n_episodes"] == 500 and len(res["samples"]) == 8 and res["route_success"] == 1.0
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=rf"^n_episodes must be an integer >= 1, got {bad!r}"):
            evaluate("model", TOK, n_episodes=bad)
    assert evaluate("model", TOK, n_episodes=1)["n_episodes"] == 1  # the smallest run


def test_long_answers_are_clipped_to_40_characters_in_messages():
    from toyenv.envs.navigation import parse_action

    def shown(text):  # what the message quotes of a malformed answer, after its fixed words
        return parse_action(text)[1].split(", got ", 1)[1]

    assert shown("x" * 38) == "'" + "x" * 38 + "'"            # ascii() adds 2 quotes: 40 characters, shown whole
    assert shown("x" * 39) == "'" + "x" * 36 + "..."          # 41: cut to 37, then "..."
    assert shown("y" * 70) == "'" + "y" * 36 + "..."


def test_expert_dataset_defaults_and_env_kwargs():
    from toyenv.envs.navigation import oracle_episodes

    assert expert_dataset(3) == expert_dataset(3, "absolute", 0, None)
    kw = {"num_segments": (1, 1)}
    one_leg = expert_dataset(3, env_kwargs=kw)
    assert one_leg == [(s.prompt, s.action) for ep in oracle_episodes(3, "absolute", 0, kw) for s in ep]
    assert one_leg != expert_dataset(3)
    assert all(p.count(".Face ") == 1 for p, _ in one_leg)  # one segment: one "Face" instruction per route


def test_evaluate_refuses_a_sampler_that_loses_rows(monkeypatch):
    import toyenv.envs.navigation as nav

    monkeypatch.setattr(nav, "complete", lambda model, tok, prompts, n, **kw: ["forward()"] * (len(prompts) - 1))
    with pytest.raises(ValueError, match=r"^model.generate returned (\d+) rows for (\d+) prompts"):
        evaluate("model", TOK, n_episodes=2)


# --------------------------------------------------------------------------- the prompt's history and info


def _history_by_hand(actions: list[str]) -> str:
    """The prompt's history line written out here: turn / fwd / stop, runs of one action as 'fwd x3'."""
    names = ["turn" if a.startswith("turn_direction(") else "fwd" if a == "forward()" else "stop" for a in actions]
    if not names:
        return "none"
    runs = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in runs)


@pytest.mark.parametrize("kind", ACTION_SPACE_KINDS)
def test_the_prompt_shows_the_actions_taken_so_far_and_info_counts_them(kind):
    env = NavigationEnv(kind)
    assert env.grid_size == 6  # the default the shipped studies were built on
    repeats = 0
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert info["route"].grid_size == 6
        taken = []
        while True:
            assert re.search(r"History: (.*)\n", obs).group(1) == _history_by_hand(taken)
            assert info["step"] == len(taken)
            action = info["expert_action"]
            obs, r, term, trunc, info = env.step(action)
            taken.append(action)
            if term:
                break
        assert r == 1.0 and info["success"] is True
        assert re.search(r"History: (.*)\n", obs).group(1) == _history_by_hand(taken)
        assert obs.startswith(f"Turns: {kind}\n")  # the last observation is a prompt like every other
        assert _history_by_hand(taken).endswith("stop")
        repeats += " x" in _history_by_hand(taken)
        over = env.step("stop()")[4]  # after the episode: nothing more, and no success either
        assert over["success"] is False and over["correct"] is False and over["expected_action"] is None
    assert repeats > 0  # some route has a leg of two or more steps


def test_routes_reach_the_grids_edges():
    """Legs may end on row 0 and on column 0 as well as on the last ones (a start anywhere, legs inside the grid)."""
    env = NavigationEnv()
    goals = [seg.goal for seed in range(200) for seg in env.reset(seed=seed)[1]["route"].segments]
    for axis in (0, 1):
        assert {g[axis] for g in goals} == set(range(6)), axis


def test_malformed_action_messages_name_what_came():
    assert parse_action(17)[1].endswith("expected a string, got int")
    reason = parse_action("turn_direction(north) " + "y" * 100)[1]
    assert "too long (122 characters)" in reason and "turn_direction(north)" in reason


def test_constructor_messages_state_the_allowed_range():
    with pytest.raises(ValueError, match=r"^NavigationEnv\.grid_size must be an integer in 3\.\.20, got 2$"):
        NavigationEnv(grid_size=2)
    with pytest.raises(ValueError, match=r"^NavigationEnv\.max_steps must be an integer >= 1, got 0$"):
        NavigationEnv(max_steps=0)
    env = NavigationEnv()
    assert env.max_steps == 20 and env.num_segments == (2, 3)  # the documented defaults
    # each end of a range is allowed
    assert NavigationEnv(grid_size=3).grid_size == 3 and NavigationEnv(grid_size=20).grid_size == 20
    assert NavigationEnv(max_steps=1).max_steps == 1
    assert env.action_space.contains("")  # an empty answer is a legal action: it is scored as malformed, not refused
    for action in ("forward()", "stop()", "turn_direction(slightly left)"):  # the grammar's characters are in it
        assert env.action_space.contains(action), action
    with pytest.raises(RuntimeError, match=r"^call reset\(\) before step\(\)$"):
        env.step("forward()")


def test_landmarks_stand_on_either_side_about_equally_often():
    env = NavigationEnv()
    sides = [seg.side for seed in range(400) for seg in env.reset(seed=seed)[1]["route"].segments]
    assert set(sides) == {"left", "right"} and 0.42 < sides.count("right") / len(sides) < 0.58, len(sides)


def test_parser_reads_only_the_first_10000_characters():
    """An answer is cut to its first 10,000 characters before it is stripped or split, so a huge answer costs
    nothing: an action that ends at the 10,000th character is read, the same action one character later is cut."""
    fits = " " * (10_000 - len("forward()")) + "forward()"
    assert len(fits) == 10_000 and parse_action(fits) == ("forward()", None)
    action, why = parse_action(" " + fits)
    assert action is None and "got 'forward('" in why  # the cut leaves "forward(" without its ")"
