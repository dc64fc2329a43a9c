"""V-IRL-style text navigation (after Chu et al. 2025, "SFT Memorizes, RL Generalizes").

The task
--------
Every episode draws a fresh synthetic city: a ``grid_size`` x ``grid_size`` lattice of
intersections joined by streets in all 8 compass directions (the usual north-south and
east-west streets plus diagonal avenues), so the agent can face any of the 8 headings
``north, northeast, east, southeast, south, southwest, west, northwest``.

Landmarks (``bakery``, ``bank``, ``cafe``, ...; names unique within a city, at most one
per intersection) stand at intersections.  Geometry: the 8 streets meeting at an
intersection cut the surroundings into 8 wedge-shaped blocks, and a landmark fills one of
them (wedge ``w`` lies between heading ``w`` and heading ``w+1``, clockwise).  No wedge is
ever straight ahead or behind, so for whatever heading the agent has, each landmark at its
intersection is unambiguously "on left" or "on right".

A route has 2-3 segments (``num_segments``).  Each segment is a turn of 45 or 90 degrees
(left or right) from the current heading, then 1-3 intersections straight ahead, ending
at the intersection of a landmark that is named in the instruction together with the side
it is on when you arrive.  Routes never revisit an intersection.  The instruction list,
in the same wording for both action spaces, reads for example::

    1.Face east. 2.Go to bakery on right. 3.Face north. 4.Go to bank on left. 5.Stop.

The agent always stands at an intersection.  Each step prompt holds the action space in
force, the instructions, the observation (current heading and the landmark at the current
intersection with its side, or ``none``) and a short run-length history of earlier actions
(``turn``/``fwd``/``stop``, e.g. ``turn, fwd x2``), which tells which instruction is due.
Example (relative action space)::

    Turns: relative
    1.Face east. 2.Go to bakery on right. 3.Face north. 4.Go to bank on left. 5.Stop.
    Facing: east. Here: bakery on right.
    History: turn, fwd x2
    Action: 

whose oracle answer is ``turn_direction(left)``.  Prompts stay within ``MAX_PROMPT_CHARS``
(300) characters, answers within ``MAX_ACTION_CHARS`` (30); everything is printable ASCII
plus newline, i.e. inside the course tokenizer's vocabulary.

Actions: ``forward()`` (go to the next intersection along the current heading),
``turn_direction(<direction>)`` (turn on the spot) and ``stop()``.

In distribution vs out of distribution
--------------------------------------
``action_space_kind="absolute"`` (ID): turns name the new heading,
``turn_direction(north)`` ... ``turn_direction(northwest)``.
``action_space_kind="relative"`` (OOD): turns name the change of heading,
``turn_direction(slightly left)`` / ``(slightly right)`` = 45 degrees and
``turn_direction(left)`` / ``(right)`` = 90 degrees.  The instructions keep their
absolute wording ("Face east") and the prompt shows the current heading in both modes,
so in relative mode the agent has to work out the turn from "Facing" and the instruction.
The first prompt line (``Turns: absolute`` / ``Turns: relative``) says which space is on.
The same seed gives the same route in both modes.

Oracle, reward and episode dynamics
-----------------------------------
At every state exactly one action is correct: the turn when a "Face" instruction is due,
``forward()`` until the instruction's landmark intersection is reached, and ``stop()``
after the last segment.  ``step`` gives ``+1`` for the oracle action and ``-1`` otherwise;
a malformed action (unparsable text, a non-string, or a direction from the other action
space, e.g. ``turn_direction(north)`` in relative mode) counts as wrong and its
``info["reason"]`` says why.  The episode terminates on the first wrong action (route
failed; the state is left as it was) or on a correct ``stop()`` (route completed,
``info["success"] = True``); so the agent only ever walks the oracle path.  It is
truncated after ``max_steps`` steps.  Oracle routes take at most 13 steps.  Once a step
has returned ``terminated`` or ``truncated``, further steps pay 0, repeat those flags and
say "episode is over; call reset()" in ``info["reason"]``.

Metrics (:func:`evaluate`)
--------------------------
* per-step accuracy: the model is asked at every state of the oracle trajectories
  (teacher forcing) and scored against the oracle action;
* route success: the fraction of episodes in which the model is right at every state of
  its oracle trajectory.  Because the environment ends an episode at the first mistake
  and otherwise follows the oracle path, this equals the success rate of closed-loop
  rollouts, at the cost of one batched pass over all states.

Helpers: :func:`parse_action`, :func:`expert_dataset` (SFT pairs), :func:`evaluate`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from toyenv.envs.sampling import sampling_generator
from toyenv.model import complete
from toyenv.tokenizer import CHARACTERS

__all__ = [
    "ACTION_SPACE_KINDS",
    "HEADINGS",
    "LANDMARKS",
    "MAX_ACTION_CHARS",
    "MAX_PROMPT_CHARS",
    "RELATIVE_TURNS",
    "NavigationEnv",
    "Route",
    "Segment",
    "evaluate",
    "expert_dataset",
    "parse_action",
]

ACTION_SPACE_KINDS = ("absolute", "relative")
MAX_PROMPT_CHARS = 300
MAX_ACTION_CHARS = 30

# Clockwise from north, 45 degrees apart; index = heading id.
HEADINGS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
_VECTORS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))  # (dx east, dy north)
# Relative turn -> change of heading in 45-degree steps (clockwise positive).
RELATIVE_TURNS = {"slightly left": -1, "left": -2, "slightly right": 1, "right": 2}
_DELTA_TO_RELATIVE = {d: name for name, d in RELATIVE_TURNS.items()}

LANDMARKS = (
    "bakery", "bank", "cafe", "school", "park", "museum", "pharmacy", "hotel", "library", "gym",
    "cinema", "church", "market", "hospital", "station", "theater", "zoo", "bar", "stadium", "florist",
)
_MAX_SEGMENT_LEN = 3
_MAX_SEGMENTS = 3  # more would not fit the prompt budget
_MAX_ROUTE_ATTEMPTS = 1000


@dataclass(frozen=True)
class Segment:
    """One leg of a route: face `heading`, walk `length` intersections to `landmark`."""

    heading: str
    length: int
    landmark: str
    side: str  # side of the landmark when arriving with `heading`: "left" or "right"
    goal: tuple[int, int]


@dataclass(frozen=True)
class Route:
    """A city and a route through it. Coordinates (x, y): x grows east, y grows north."""

    grid_size: int
    start: tuple[int, int]
    start_heading: str
    segments: tuple[Segment, ...]
    landmarks: tuple[tuple[str, int, int, int], ...]  # (name, x, y, wedge 0..7)

    @property
    def instructions(self) -> str:
        parts = []
        for i, seg in enumerate(self.segments):
            parts.append(f"{2 * i + 1}.Face {seg.heading}.")
            parts.append(f"{2 * i + 2}.Go to {seg.landmark} on {seg.side}.")
        parts.append(f"{2 * len(self.segments) + 1}.Stop.")
        return " ".join(parts)


@dataclass(frozen=True)
class _State:
    prompt: str
    action: str  # oracle action
    position: tuple[int, int]
    heading: str


# --------------------------------------------------------------------------- geometry


def _side(wedge: int, heading: int) -> str:
    """Side of a landmark in `wedge` for an agent facing `heading` (wedges sit between streets)."""
    return "right" if (wedge - heading) % 8 < 4 else "left"


def _turn_action(current: int, target: int, kind: str) -> str:
    if kind == "absolute":
        return f"turn_direction({HEADINGS[target]})"
    delta = (target - current + 4) % 8 - 4  # in -4..3
    return f"turn_direction({_DELTA_TO_RELATIVE[delta]})"


def _sample_route(rng: np.random.Generator, grid_size: int, num_segments: tuple[int, int]) -> Route:
    n = grid_size
    for _ in range(_MAX_ROUTE_ATTEMPTS):
        n_seg = int(rng.integers(num_segments[0], num_segments[1] + 1))
        start = (int(rng.integers(n)), int(rng.integers(n)))
        h = int(rng.integers(8))
        start_heading = h
        visited = {start}
        pos = start
        legs: list[tuple[int, int, tuple[int, int]]] = []
        for _seg in range(n_seg):
            h = (h + int(rng.choice((-2, -1, 1, 2)))) % 8
            dx, dy = _VECTORS[h]
            room = 0
            x, y = pos
            while room < _MAX_SEGMENT_LEN:
                x, y = x + dx, y + dy
                if not (0 <= x < n and 0 <= y < n) or (x, y) in visited:
                    break
                room += 1
            if room == 0:
                break
            length = int(rng.integers(1, room + 1))
            for _k in range(length):
                pos = (pos[0] + dx, pos[1] + dy)
                visited.add(pos)
            legs.append((h, length, pos))
        if len(legs) < n_seg:
            continue

        names = [LANDMARKS[int(i)] for i in rng.permutation(len(LANDMARKS))]
        segments, landmarks = [], []
        for (heading, length, goal), name in zip(legs, names):
            side = "right" if int(rng.integers(2)) == 0 else "left"
            wedge = (heading + (0 if side == "right" else 4) + int(rng.integers(4))) % 8
            segments.append(Segment(HEADINGS[heading], length, name, side, goal))
            landmarks.append((name, goal[0], goal[1], wedge))
        goals = {leg[2] for leg in legs}
        free = [(x, y) for x in range(n) for y in range(n) if (x, y) not in goals]
        n_distract = min(len(LANDMARKS) - n_seg, len(free), (n * n) // 3)
        cells = rng.choice(len(free), size=n_distract, replace=False)
        for name, c in zip(names[n_seg:], cells):
            x, y = free[int(c)]
            landmarks.append((name, x, y, int(rng.integers(8))))
        return Route(n, start, HEADINGS[start_heading], tuple(segments), tuple(landmarks))
    raise RuntimeError(f"could not draw a route on a {n}x{n} grid with {num_segments} segments")


def _format_history(history: Sequence[str]) -> str:
    if not history:
        return "none"
    parts, i = [], 0
    while i < len(history):
        j = i
        while j < len(history) and history[j] == history[i]:
            j += 1
        parts.append(history[i] if j - i == 1 else f"{history[i]} x{j - i}")
        i = j
    return ", ".join(parts)


def _prompt(route: Route, kind: str, position: tuple[int, int], heading: int, history: Sequence[str]) -> str:
    here = "none"
    for name, x, y, wedge in route.landmarks:
        if (x, y) == position:
            here = f"{name} on {_side(wedge, heading)}"
            break
    return (
        f"Turns: {kind}\n{route.instructions}\n"
        f"Facing: {HEADINGS[heading]}. Here: {here}.\n"
        f"History: {_format_history(history)}\nAction: "
    )


def _oracle_trajectory(route: Route, kind: str) -> tuple[list[_State], str]:
    """Oracle states (prompt, action, ...) of `route` and the prompt after the final stop()."""
    states: list[_State] = []
    pos, h = route.start, HEADINGS.index(route.start_heading)
    history: list[str] = []

    def add(action: str) -> None:
        states.append(_State(_prompt(route, kind, pos, h, history), action, pos, HEADINGS[h]))

    for seg in route.segments:
        target = HEADINGS.index(seg.heading)
        add(_turn_action(h, target, kind))
        history.append("turn")
        h = target
        dx, dy = _VECTORS[h]
        for _ in range(seg.length):
            add("forward()")
            history.append("fwd")
            pos = (pos[0] + dx, pos[1] + dy)
    add("stop()")
    history.append("stop")
    return states, _prompt(route, kind, pos, h, history)


# --------------------------------------------------------------------------- parsing

# Whitespace is ASCII space, tab, CR and newline only, the same set as GeneralPoints' verifier: Python's
# `\s` and str.strip() would also accept Unicode spaces such as U+00A0, which the grammar does not allow.
# The course tokenizer emits only newline and printable ASCII, where both definitions agree, so no model
# completion is judged differently.
_WHITESPACE = " \t\r\n"
_ACTION_RE = re.compile(
    r"(forward|stop)\([ \t\r]*\)|turn_direction\([ \t\r]*([a-z]+(?:[ \t\r]+[a-z]+)*)[ \t\r]*\)"
)
_MAX_ACTION_LINE = 80


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """`value` as an int in lo..hi; otherwise a ValueError naming NavigationEnv.`name`, the value and the range.

    Floats are refused rather than truncated (grid_size=3.9 must not quietly become 3)."""
    allowed = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
    if not _is_int(value) or value < lo or (hi is not None and value > hi):
        raise ValueError(f"NavigationEnv.{name} must be {allowed}, got {value!r}")
    return int(value)


def _check_num_segments(num_segments: Any) -> tuple[int, int]:
    """An int n (meaning (n, n)) or a (lo, hi) pair with 1 <= lo <= hi <= _MAX_SEGMENTS."""
    pair = (num_segments, num_segments) if _is_int(num_segments) else num_segments
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(_is_int(v) for v in pair)
        or not 1 <= pair[0] <= pair[1] <= _MAX_SEGMENTS
    ):
        raise ValueError(
            f"NavigationEnv.num_segments must be an integer in 1..{_MAX_SEGMENTS} or a (lo, hi) pair of integers with "
            f"1 <= lo <= hi <= {_MAX_SEGMENTS}, got {num_segments!r}"
        )
    return int(pair[0]), int(pair[1])


def check_kind(action_space_kind: Any) -> str:
    if action_space_kind not in ACTION_SPACE_KINDS:
        raise ValueError(f"action_space_kind must be one of {ACTION_SPACE_KINDS}, got {action_space_kind!r}")
    return action_space_kind


def _clip(text: str, n: int = 40) -> str:
    s = ascii(text)
    return s if len(s) <= n else s[: n - 3] + "..."


def parse_action(text: Any, action_space_kind: str = "absolute") -> tuple[str | None, str | None]:
    """Parse a model answer into a normalized action.

    Returns ``(action, None)`` with ``action`` one of ``"forward()"``, ``"stop()"``,
    ``"turn_direction(<direction>)"`` (direction lower-case, single spaces), or
    ``(None, reason)`` when the answer is malformed.  Only the first non-empty line counts;
    surrounding whitespace and letter case are ignored.  Never raises on the answer (any
    type, any length); raises ValueError only for an unknown ``action_space_kind``.
    Whitespace means ASCII space, tab, CR and newline (as in GeneralPoints' verifier); any other
    character outside printable ASCII, e.g. a no-break space, makes the answer malformed.
    """
    kind = check_kind(action_space_kind)
    if not isinstance(text, str):
        return None, f"malformed action: expected a string, got {type(text).__name__}"
    line = text[:10_000].strip(_WHITESPACE).split("\n", 1)[0].strip(_WHITESPACE)
    if not line:
        return None, "malformed action: empty answer"
    if len(line) > _MAX_ACTION_LINE:
        return None, f"malformed action: answer too long ({len(line)} characters): {_clip(line)}"
    for pos, ch in enumerate(line):
        if not (" " <= ch <= "~" or ch in _WHITESPACE):
            return None, f"malformed action: unexpected character {ascii(ch)} at position {pos} of {_clip(line)}"
    m = _ACTION_RE.fullmatch(line.lower())
    if m is None:
        return None, f"malformed action: expected forward(), stop() or turn_direction(<direction>), got {_clip(line)}"
    if m.group(1):
        return f"{m.group(1)}()", None
    direction = " ".join(m.group(2).split())
    if kind == "absolute":
        if direction in HEADINGS:
            return f"turn_direction({direction})", None
        if direction in RELATIVE_TURNS:
            return None, (
                f"malformed action: '{direction}' is a relative turn, but this episode uses absolute "
                "directions (north, northeast, ..., northwest)"
            )
    else:
        if direction in RELATIVE_TURNS:
            return f"turn_direction({direction})", None
        if direction in HEADINGS:
            return None, (
                f"malformed action: '{direction}' is an absolute direction, but this episode uses "
                "relative turns (left, right, slightly left, slightly right)"
            )
    return None, f"malformed action: unknown direction {_clip(direction)} for {kind} turns"


# --------------------------------------------------------------------------- environment


class NavigationEnv(gym.Env):
    """Text navigation: follow a route instruction through a random city, one action per step.

    Observations and actions are strings (``gymnasium.spaces.Text`` over newline plus
    printable ASCII).  See the module docstring for the task, reward and termination rules.

    ``reset`` info: ``expert_action`` (oracle action for the returned prompt), ``route``
    (:class:`Route`), ``step`` (index of the state), ``heading``, ``position``,
    ``n_oracle_steps``.  ``step`` info adds ``correct``, ``reason``, ``expected_action``
    (oracle action for the state the action was taken in) and ``success``;
    ``expert_action`` is the oracle action for the returned prompt, None once terminated.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        action_space_kind: str = "absolute",
        grid_size: int = 6,
        num_segments: int | tuple[int, int] = (2, 3),
        max_steps: int = 20,
    ) -> None:
        super().__init__()
        self.action_space_kind = check_kind(action_space_kind)
        self.grid_size = _check_int("grid_size", grid_size, 3, 20)
        self.num_segments = _check_num_segments(num_segments)
        self.max_steps = _check_int("max_steps", max_steps, 1)
        self.observation_space = spaces.Text(max_length=MAX_PROMPT_CHARS, min_length=1, charset=CHARACTERS)
        self.action_space = spaces.Text(max_length=MAX_ACTION_CHARS, min_length=0, charset=CHARACTERS)
        self.route: Route | None = None
        self._states: list[_State] = []
        self._final_prompt = ""
        self._t = 0
        self._steps = 0
        self._done = False  # terminated: a wrong action or the final stop()
        self._over: tuple[bool, bool] | None = None  # (terminated, truncated) of the step that ended the episode
        self._obs = ""

    # the oracle action for the current state (None once the episode is over)
    @property
    def expert_action(self) -> str | None:
        if self.route is None or self._done:
            return None
        return self._states[self._t].action

    def _info(self) -> dict[str, Any]:
        s = self._states[self._t]
        return {
            "expert_action": None if self._done else s.action,
            "route": self.route,
            "step": self._t,
            "heading": s.heading,
            "position": s.position,
            "n_oracle_steps": len(self._states),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.route = _sample_route(self.np_random, self.grid_size, self.num_segments)
        self._states, self._final_prompt = _oracle_trajectory(self.route, self.action_space_kind)
        self._t = 0
        self._steps = 0
        self._done = False
        self._over = None
        self._obs = self._states[0].prompt
        return self._obs, self._info()

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.route is None:
            raise RuntimeError("call reset() before step()")
        if self._over is not None:
            # Gymnasium: once a step returns terminated or truncated, the caller must reset(); further steps are
            # undefined. We follow its reference environments (CartPole): no error, reward 0 and the same
            # terminated/truncated flags again, so a loop that overruns the episode earns nothing extra
            # (it used to keep earning +1 after truncation) and an old loop that only checks one flag still stops.
            info = self._info()
            info.update(correct=False, reason="episode is over; call reset()", expected_action=None, success=False)
            return self._obs, 0.0, *self._over, info
        expected = self._states[self._t].action
        parsed, why = parse_action(action, self.action_space_kind)
        self._steps += 1
        success = False
        if parsed is None:
            correct, reason = False, why
        elif parsed != expected:
            correct, reason = False, f"wrong action: {parsed} (expected {expected})"
        else:
            correct, reason = True, "correct"
        if not correct:
            terminated = True
            self._done = True
        elif expected == "stop()":
            terminated = success = True
            self._done = True
            self._obs = self._final_prompt
        else:
            terminated = False
            self._t += 1
            self._obs = self._states[self._t].prompt
        truncated = (not terminated) and self._steps >= self.max_steps
        if terminated or truncated:
            self._over = (terminated, truncated)
        info = self._info()
        info.update(correct=correct, reason=reason, expected_action=expected, success=success)
        return self._obs, (1.0 if correct else -1.0), terminated, truncated, info


# --------------------------------------------------------------------------- datasets and evaluation


def oracle_episodes(n: int, kind: str, seed: int, env_kwargs: dict[str, Any] | None) -> list[list[_State]]:
    """Oracle trajectories of `n` routes: the routes of env.reset(seed=seed) and n-1 further reset()s."""
    env = NavigationEnv(action_space_kind=kind, **(env_kwargs or {}))
    episodes = []
    for i in range(int(n)):
        env.reset(seed=int(seed) if i == 0 else None)
        episodes.append(list(env._states))
    return episodes


def expert_dataset(
    n_routes: int, action_space_kind: str = "absolute", seed: int = 0, env_kwargs: dict[str, Any] | None = None
) -> list[tuple[str, str]]:
    """(step prompt, oracle action) for every state of `n_routes` oracle routes (SFT data).

    Routes come from one seeded stream, so different seeds give (practically) disjoint sets;
    the same seed gives the same routes for either action space.
    """
    kind = check_kind(action_space_kind)
    return [(s.prompt, s.action) for ep in oracle_episodes(n_routes, kind, seed, env_kwargs) for s in ep]


def evaluate(
    model: Any,
    tokenizer: Any,
    action_space_kind: str = "absolute",
    n_episodes: int = 500,
    seed: int = 0,
    batch_size: int = 256,
    max_new_tokens: int = MAX_ACTION_CHARS + 2,
    greedy: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    n_samples: int = 8,
) -> dict[str, Any]:
    """Per-step accuracy and route success of `model` on `n_episodes` routes.

    Every state of every oracle trajectory is put to the model (prompts encoded with BOS,
    batches of `batch_size`, one ``model.generate`` call per batch).  Route success counts
    the episodes where every state was answered correctly, which equals the success rate of
    closed-loop rollouts in :class:`NavigationEnv` (those end at the first mistake and
    otherwise follow the oracle path).  Also returns ``malformed_rate``, ``correct`` (one
    bool per state, route by route; the first n routes of a larger `n_episodes` are the
    same routes) and the first `n_samples` states as ``samples`` (prompt, completion,
    expected, correct, reason).
    `max_new_tokens` defaults to 32: the longest answer, ``turn_direction(slightly right)``,
    is 30 characters, plus EOS.
    """
    kind = check_kind(action_space_kind)
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, (int, np.integer)) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an integer >= 1, got {n_episodes!r}")
    episodes = oracle_episodes(n_episodes, kind, seed, env_kwargs)
    flat = [(e, s) for e, ep in enumerate(episodes) for s in ep]
    completions = complete(model, tokenizer, [s.prompt for _, s in flat], max_new_tokens, batch_size=int(batch_size),
                           greedy=greedy, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id,
                           generator=sampling_generator(model, greedy, seed))

    if len(completions) != len(flat):
        raise ValueError(f"model.generate returned {len(completions)} rows for {len(flat)} prompts")
    episode_ok = [True] * len(episodes)
    n_malformed = 0
    correct, samples = [], []
    for i, ((e, s), completion) in enumerate(zip(flat, completions)):
        parsed, why = parse_action(completion, kind)
        ok = parsed == s.action
        correct.append(ok)
        n_malformed += parsed is None
        if not ok:
            episode_ok[e] = False
        if i < n_samples:
            reason = "correct" if ok else (why or f"wrong action: {parsed} (expected {s.action})")
            samples.append(
                {"prompt": s.prompt, "completion": completion, "expected": s.action, "correct": ok, "reason": reason}
            )
    n_steps = len(flat)  # >= 1: every route has at least one state
    return {
        "per_step_accuracy": sum(correct) / n_steps,
        "route_success": sum(episode_ok) / len(episodes),
        "malformed_rate": n_malformed / n_steps,
        "n_steps": n_steps,
        "n_episodes": len(episodes),
        "correct": correct,
        "samples": samples,
    }
