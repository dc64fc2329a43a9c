"""Bad settings are refused when a config is built, and a diverging run stops loudly (issue 19: D1, D2, D3).

The allowed range of every field is written out here, from the issue and the project's guide, not read from the
configs: the property tests then check the configs against this independent table.
"""
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toyenv import GPT, GPTConfig, Tokenizer, seed_everything
from toyenv.pairs import PreferencePair
from toyenv.experiments.base_model import PretrainConfig
from toyenv.tasks import Task, reverse_dataset
from toyenv.trainers import dpo, reward_model, rl, sft
from toyenv.trainers.dpo import PreferenceConfig
from toyenv.trainers.reward_model import RewardConfig, RewardModel
from toyenv.trainers.rl import RLConfig
from toyenv.trainers.sft import SFTConfig

TOK = Tokenizer()
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=32)


def _gpt(seed=0):
    seed_everything(seed)
    return GPT(GPTConfig(**TINY))


def _task():
    """Short prompts and a reward that differs between completions (their length), so advantages are not zero."""
    return Task(lambda rng, n: (["ab:"] * n, [{}] * n), lambda p, c, i: [float(len(x)) for x in c], name="len")


def _pairs(n=8):
    """Reversal prompts: the reversed word is preferred to the word itself."""
    return [PreferencePair(prompt, completion, completion[::-1]) for prompt, completion in reverse_dataset(n)]


def _finite(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


class _NaNGradientFrom:
    """A gradient hook that turns a parameter's gradient into NaN from the `start`-th backward pass on (0-based),
    while the loss stays finite: the situation D1 describes, made deterministic."""

    def __init__(self, param, start):
        self.calls, self.start = 0, start
        param.register_hook(self)

    def __call__(self, grad):
        self.calls += 1
        return grad * float("nan") if self.calls > self.start else grad


# ----------------------------------------------------------------------------------- D1: divergence
def _run_rl(policy, ref, **kw):
    cfg = RLConfig(**{**dict(algorithm="grpo", max_steps=3, num_prompts=2, num_generations=4, max_new_tokens=6,
                             learning_rate=1e-3), **kw})
    return rl.train(policy, _task(), cfg, TOK, ref=ref, progress=False)


def _run_sft(model, **kw):
    return sft.train(model, reverse_dataset(16), SFTConfig(**{**dict(max_steps=3, batch_size=4, warmup_steps=0), **kw}),
               TOK, progress=False)


def _run_dpo(policy, **kw):
    cfg = PreferenceConfig(**{**dict(max_steps=3, batch_size=4, warmup_steps=0, eval_every=0), **kw})
    return dpo.train(policy, _pairs(), cfg, tokenizer=TOK, progress=False)


def _run_rm(rm, **kw):
    cfg = RewardConfig(**{**dict(max_steps=3, batch_size=4, warmup_steps=0), **kw})
    return reward_model.train(rm, _pairs(), cfg, TOK, progress=False)


def _rm():
    seed_everything(0)
    return RewardModel(GPTConfig(**TINY))


TRAINERS = {  # name -> (build the model, run 3 steps on it, the quantity's prefix in the message)
    # seed 2: a model whose GRPO run at learning_rate=1e6 blows up within 6 steps (seed 0's collapses to one
    # finite, deterministic answer whose advantages are all 0: ruined, but not NaN)
    "rl": (lambda: _gpt(2), lambda m, **kw: _run_rl(m, _gpt(2), **kw), "RL"),
    "sft": (_gpt, _run_sft, "SFT"),
    "dpo": (_gpt, _run_dpo, "dpo"),
    "reward_model": (_rm, _run_rm, "reward model"),
}


@pytest.mark.parametrize("name", TRAINERS)
def test_a_nan_gradient_with_a_finite_loss_stops_training_before_the_update(name):
    """D1: the loss is finite at step 1 but a gradient is NaN. The run must stop right there, naming the step, the
    gradient norm and the learning rate, and the NaN must not reach the weights (the check precedes opt.step)."""
    build, run, prefix = TRAINERS[name]
    model = build()
    _NaNGradientFrom(next(model.parameters()), start=1)  # the first update is fine, the second one is not
    with pytest.raises(FloatingPointError) as err:
        run(model, learning_rate=1e-3)
    msg = str(err.value)
    assert re.search(rf"{prefix} gradient norm became nan at step 1\b", msg), msg
    assert "learning_rate=0.001" in msg and "learning rate (0.001) is probably too high" in msg, msg
    assert _finite(model)  # the step that saw the NaN gradient never updated the weights


@pytest.mark.parametrize("name", ["sft", "dpo", "reward_model"])
def test_a_nan_loss_stops_training_before_backward_naming_the_loss(name):
    """D1 at the loss: a NaN weight makes the first loss NaN. The run stops on it at step 0, before backward, with
    the trainer's name for the quantity (RL's policy would fail in sampling first: its own test is below)."""
    build, run, prefix = TRAINERS[name]
    model = build()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=rf"^{prefix} loss became nan at step 0 \(learning_rate=0\.001\)"):
        run(model, learning_rate=1e-3)


@pytest.mark.parametrize("name", TRAINERS)
def test_a_huge_learning_rate_stops_with_a_floating_point_error_naming_step_and_learning_rate(name):
    """D1 as a learner meets it: learning_rate=1e6 on a tiny model. Whichever quantity breaks first (the loss, the
    gradient norm, or for RL the logits it samples from), the error is a FloatingPointError that names the step
    and the learning rate, never torch's internal message."""
    build, run, _ = TRAINERS[name]
    model = build()
    with pytest.raises(FloatingPointError, match=r"at step \d+.*learning_rate=1000000\.0"):
        run(model, learning_rate=1e6, max_steps=6)


@pytest.mark.parametrize("algorithm", ["reinforce", "grpo"])
def test_rl_divergence_in_sampling_names_divergence_and_the_step(algorithm):
    """D1 with reinforce: after one update at learning_rate=1e6 the weights are finite but the logits they produce
    are not, so the next step dies inside sampling. It must say so (torch's "probability tensor contains either
    inf, nan or element < 0" says nothing about training)."""
    with pytest.raises(FloatingPointError) as err:
        _run_rl(_gpt(2), _gpt(2), algorithm=algorithm, learning_rate=1e6)
    msg = str(err.value)
    assert "diverged" in msg and re.search(r"at step 1\b", msg) and "learning_rate=1000000.0" in msg, msg


@pytest.mark.parametrize("greedy", [False, True])
@pytest.mark.parametrize("use_cache", [False, True])
def test_generate_refuses_non_finite_logits_and_names_divergence(greedy, use_cache):
    model = _gpt().eval()
    with torch.no_grad():
        model.lm_head.weight[5].fill_(float("nan"))  # one token's logit is NaN
    with pytest.raises(FloatingPointError, match="diverged"):
        model.generate([[1, 5, 6]], 4, greedy=greedy, use_cache=use_cache, eos_id=None,
                       generator=torch.Generator().manual_seed(0))


def test_generate_with_finite_logits_is_unchanged_by_the_check():
    """The check only reads the logits: sampling a healthy model gives the tokens that multinomial over
    softmax(logits / T), computed here step by step, gives with the same generator."""
    model = _gpt().eval()
    prompt = [1, 5, 6]
    out, _ = model.generate([prompt], 5, temperature=0.7, eos_id=None, use_cache=False,
                            generator=torch.Generator().manual_seed(3))
    gen, seq = torch.Generator().manual_seed(3), list(prompt)
    with torch.no_grad():
        for _ in range(5):
            logits = model(torch.tensor([seq]))[:, -1]
            seq.append(int(torch.multinomial(torch.softmax(logits / 0.7, -1), 1, generator=gen)))
    assert out[0].tolist() == seq


# ----------------------------------------------------------------------------------- D2: max_grad_norm
CLIPPED_CONFIGS = [RLConfig, SFTConfig, PreferenceConfig, RewardConfig]


@pytest.mark.parametrize("cls", CLIPPED_CONFIGS)
@pytest.mark.parametrize("value", [-1.0, 0.0, 0, float("nan"), float("inf")])
def test_max_grad_norm_must_be_positive_and_finite(cls, value):
    """D2: a negative clip norm trains backwards (clip_grad_norm_ multiplies the gradient by a negative factor) and
    0 zeroes every gradient."""
    with pytest.raises(ValueError, match=rf"^{cls.__name__}\.max_grad_norm must be a finite number > 0, "
                                         rf"got {re.escape(repr(value))}$"):
        cls(max_grad_norm=value)


def test_the_issue_example_message_word_for_word():
    with pytest.raises(ValueError) as err:
        RLConfig(max_grad_norm=-1.0)
    assert str(err.value) == "RLConfig.max_grad_norm must be a finite number > 0, got -1.0"


# ----------------------------------------------------------------------------------- D3: the other knobs
NAN, INF = float("nan"), float("inf")
D3_CASES = [
    (cls, "min_lr_ratio", v) for cls in (SFTConfig, PreferenceConfig, RewardConfig) for v in (-1, -0.5, 1.5, NAN)
] + [
    (cls, "learning_rate", v) for cls in CLIPPED_CONFIGS for v in (NAN, INF, -INF)
] + [
    (RLConfig, "temperature", NAN), (RLConfig, "temperature", INF),
    (RLConfig, "beta", NAN), (RLConfig, "beta", INF), (PreferenceConfig, "beta", NAN), (PreferenceConfig, "beta", INF),
    (RLConfig, "epsilon", NAN), (RLConfig, "ptx_coef", INF), (RLConfig, "weight_decay", NAN),
    (PreferenceConfig, "alpha", NAN), (PreferenceConfig, "eta", INF),
    (RLConfig, "eval_every", -1), (SFTConfig, "eval_every", -1), (PreferenceConfig, "eval_every", -1),
    (RewardConfig, "eval_every", -1), (RLConfig, "log_samples", -1),
] + [
    (cls, "seed", 1.5) for cls in CLIPPED_CONFIGS + [PretrainConfig]
] + [
    (cls, "max_steps", 1.5) for cls in CLIPPED_CONFIGS
] + [
    (RLConfig, "seed", -1),  # numpy's default_rng([seed, 17]) refuses it, deep inside train
    (RLConfig, "num_generations", 2.0), (SFTConfig, "batch_size", True), (PretrainConfig, "gp_ten", -1),
]


@pytest.mark.parametrize("cls, field, value", D3_CASES,
                         ids=[f"{c.__name__}.{f}={v!r}" for c, f, v in D3_CASES])
def test_out_of_range_settings_are_refused_naming_field_and_value(cls, field, value):
    with pytest.raises(ValueError) as err:
        cls(**{field: value})
    msg = str(err.value)
    assert f"{cls.__name__}.{field} must be" in msg and msg.endswith(f"got {value!r}"), msg


def test_pretrain_config_refuses_a_wrong_sub_config():
    with pytest.raises(ValueError, match="PretrainConfig.sft must be an SFTConfig"):
        PretrainConfig(sft={"max_steps": 10})
    with pytest.raises(ValueError, match="PretrainConfig.model must be a GPTConfig"):
        PretrainConfig(model=None)


def test_valid_edges_are_accepted():
    """The ends of each closed range are allowed: they are meaningful settings."""
    for cls in (SFTConfig, PreferenceConfig, RewardConfig):
        assert cls(min_lr_ratio=0).min_lr_ratio == 0 and cls(min_lr_ratio=1.0).min_lr_ratio == 1.0
        assert cls(eval_every=0, warmup_steps=0, weight_decay=0.0).eval_every == 0
    assert RLConfig(beta=0, epsilon=0.0, ptx_coef=0, log_samples=0, eval_every=0, seed=0).beta == 0
    assert RLConfig(learning_rate=1, max_grad_norm=2).learning_rate == 1  # an int is a finite number
    assert RLConfig(kl_in="loss").kl_estimator == "k3"  # the default estimator is still resolved


# ----------------------------------------------------------------------------------- hypothesis: the ranges
# The allowed range of every field, from the issue (max_grad_norm > 0, 0 <= min_lr_ratio <= 1, every float finite,
# counts ints >= their minimum): ("int", minimum) or (lower bound kind ">" / ">=", bound, upper bound or None).
COMMON = {"max_steps": ("int", 1), "batch_size": ("int", 1), "learning_rate": (">", 0, None),
          "weight_decay": (">=", 0, None), "max_grad_norm": (">", 0, None), "eval_every": ("int", 0)}
SCHEDULED = {**COMMON, "warmup_steps": ("int", 0), "min_lr_ratio": (">=", 0, 1), "seed": ("int", None)}
RANGES = {
    RLConfig: {**{k: v for k, v in COMMON.items() if k != "batch_size"}, "num_prompts": ("int", 1),
               "num_generations": ("int", 2), "max_new_tokens": ("int", 1), "num_iterations": ("int", 1),
               "num_minibatches": ("int", 1), "ptx_batch_size": ("int", 1), "log_samples": ("int", 0),
               "seed": ("int", 0), "temperature": (">", 0, None), "beta": (">=", 0, None),
               "epsilon": (">=", 0, None), "ptx_coef": (">=", 0, None)},
    SFTConfig: SCHEDULED,
    RewardConfig: SCHEDULED,
    PreferenceConfig: {**SCHEDULED, "beta": (">", 0, None), "eta": (">", 0, None), "alpha": (">=", 0, None)},
    PretrainConfig: {"seed": ("int", None), "gp_ten": ("int", 0), "gp_ranked": ("int", 0),
                     "nav_absolute": ("int", 0), "nav_relative": ("int", 0)},
}
FIELDS = [(cls, name) for cls, spec in RANGES.items() for name in spec]


def _valid(spec, small=False):
    if spec[0] == "int":
        lo = spec[1] if spec[1] is not None else -(2**31)
        return st.integers(lo, lo + (3 if small else 2**20))
    kind, lo, hi = spec
    top = hi if hi is not None else (10.0 if small else 1e30)
    return st.floats(lo, top, exclude_min=kind == ">", allow_nan=False, allow_infinity=False) | st.just(top)


def _invalid(spec):
    bad = [st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")), st.booleans(), st.just("1")]
    if spec[0] == "int":
        bad.append(st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)))
        bad.append(st.integers(-(2**20), 2**20).map(float))  # 3.0 is a float, not a count
        if spec[1] is not None:
            bad.append(st.integers(spec[1] - 2**20, spec[1] - 1))
    else:
        kind, lo, hi = spec
        bad.append(st.floats(max_value=lo, exclude_max=kind == ">=", allow_nan=False))
        if hi is not None:
            bad.append(st.floats(min_value=hi, exclude_min=True, allow_nan=False))
    return st.one_of(bad)


def _just_outside(spec):
    """The invalid values nearest the range's ends: one below the minimum count, the bound itself where it is
    excluded, the float just below an included lower bound and just above an upper bound."""
    if spec[0] == "int":
        return [] if spec[1] is None else [spec[1] - 1]
    kind, lo, hi = spec
    out = [float(lo) if kind == ">" else math.nextafter(float(lo), -math.inf)]
    return out + ([] if hi is None else [math.nextafter(float(hi), math.inf)])


@pytest.mark.parametrize("cls, name, value", [(cls, name, v) for cls, name in FIELDS
                                              for v in _just_outside(RANGES[cls][name])],
                         ids=lambda x: getattr(x, "__name__", str(x)))
def test_the_nearest_value_outside_each_range_is_refused(cls, name, value):
    """Deterministic, field by field (the hypothesis test below draws only a few values per field)."""
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name}\b"):
        cls(**{name: value})


@settings(max_examples=60, deadline=None)
@given(data=st.data(), pick=st.sampled_from(FIELDS))
def test_any_value_outside_the_range_is_refused_with_the_field_name(data, pick):
    cls, name = pick
    value = data.draw(_invalid(RANGES[cls][name]), label=name)
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{name}\b"):
        cls(**{name: value})


@settings(max_examples=30, deadline=None)
@given(data=st.data(), cls=st.sampled_from(list(RANGES)))
def test_any_in_range_config_is_built_and_keeps_its_values(data, cls):
    kw = {name: data.draw(_valid(spec), label=name) for name, spec in RANGES[cls].items()}
    if cls is RLConfig:  # the one cross-field rule: a minibatch needs at least one rollout
        kw["num_minibatches"] = min(kw["num_minibatches"], kw["num_prompts"] * kw["num_generations"])
    cfg = cls(**kw)
    assert all(getattr(cfg, k) == v and type(getattr(cfg, k)) is type(v) for k, v in kw.items())  # no coercion


@settings(max_examples=10, deadline=None)
@given(data=st.data(), algorithm=st.sampled_from(rl.ALGORITHMS), kl_in=st.sampled_from(["reward", "loss"]))
def test_any_in_range_rl_config_trains_a_step(data, algorithm, kl_in):
    small = {name: data.draw(_valid(spec, small=True), label=name) for name, spec in RANGES[RLConfig].items()
             if name in ("num_prompts", "num_generations", "num_iterations", "log_samples", "seed")}
    cfg = RLConfig(algorithm=algorithm, kl_in=kl_in, max_steps=1, max_new_tokens=data.draw(st.integers(1, 4)),
                   num_minibatches=data.draw(st.integers(1, 2)),
                   learning_rate=data.draw(st.floats(1e-5, 1e-2)), temperature=data.draw(st.floats(0.5, 2.0)),
                   beta=data.draw(st.floats(0, 1)), epsilon=data.draw(st.floats(0, 0.5)),
                   max_grad_norm=data.draw(st.floats(0.1, 10)), weight_decay=data.draw(st.floats(0, 0.1)),
                   scale_rewards=data.draw(st.booleans()), **small)
    policy, ref = _gpt(), _gpt()
    h = rl.train(policy, _task(), cfg, TOK, ref=ref, progress=False)
    assert len(h["loss"]) == 1 and math.isfinite(h["loss"][0]) and math.isfinite(h["grad_norm"][0])
    assert _finite(policy)
    if h["grad_norm"][0] > 1e-4:  # a real gradient moved the weights
        assert any(not torch.equal(p, q) for p, q in zip(policy.parameters(), ref.parameters()))


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_any_in_range_sft_config_trains_a_step(data):
    kw = {name: data.draw(_valid(spec, small=True), label=name) for name, spec in RANGES[SFTConfig].items()
          if name not in ("learning_rate", "max_steps", "max_grad_norm")}
    # a clip norm of 5e-324 is in range but scales every gradient to 0: draw the learning settings from where a
    # step visibly moves the weights
    cfg = SFTConfig(**kw, max_steps=1, learning_rate=data.draw(st.floats(1e-5, 1e-1)),
                    max_grad_norm=data.draw(st.floats(1e-3, 10)),
                    completion_only_loss=data.draw(st.booleans()))
    model, before = _gpt(), _gpt()
    h = sft.train(model, reverse_dataset(8), cfg, TOK, progress=False)
    assert len(h["loss"]) == 1 and math.isfinite(h["loss"][0]) and math.isfinite(h["grad_norm"][0])
    assert _finite(model) and any(not torch.equal(p, q) for p, q in zip(model.parameters(), before.parameters()))


def test_a_non_finite_rl_loss_names_the_learning_rate():
    """A reference whose log-probs are NaN makes the KL term of the loss NaN at the first step: the run stops on the
    loss (before backward), naming the step and the learning rate."""
    ref = _gpt(1)
    with torch.no_grad():
        ref.lm_head.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"^RL loss became nan at step 0 \(learning_rate=0\.001\)"):
        _run_rl(_gpt(2), ref, beta=0.1, kl_in="loss", kl_estimator="k3")


def test_rl_minibatch_order_comes_from_the_run_seed_not_the_global_stream():
    """Two runs with the same config give the same history whatever the global torch RNG was set to before."""
    histories = []
    for global_seed in (1, 2):
        policy, ref = _gpt(2), _gpt(2)  # (seed_everything inside)
        torch.manual_seed(global_seed)  # the global stream, changed after the models are built
        histories.append(_run_rl(policy, ref, algorithm="ppo", num_minibatches=2, num_iterations=2, max_steps=2,
                                 beta=0.0))
    assert histories[0]["loss"] == histories[1]["loss"]
