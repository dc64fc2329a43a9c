"""toyenv.rl: advantages, the clipped objective, the KL controller, rollouts and short training runs."""
import copy
import math
import warnings
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from toyenv import GPT, GPTConfig, Tokenizer
from toyenv.trainers import rl
from toyenv.kl import k3, kl_regularized_optimum
from toyenv.trainers.rl import AdaptiveKLController, RLConfig, advantages, clipped_objective
from toyenv.tasks import Task, general_points_task, navigation_task


# ----------------------------------------------------------------------------------------- advantages
def test_reinforce_advantages_are_the_rewards():
    R = torch.tensor([1.0, -2.0, 3.0, 0.5])
    assert torch.equal(advantages(R, "reinforce"), R)
    assert torch.allclose(advantages(R, "reinforce_baseline"), R - 0.625)


def test_rloo_leave_one_out_by_hand():
    R = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])  # two groups of 3
    want = torch.tensor([1 - 4.0, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0.0])
    assert torch.allclose(advantages(R, "rloo", num_generations=3), want)


def test_grpo_group_normalized_by_hand():
    R = torch.tensor([1.0, 3.0, 5.0, 2.0, 2.0, 2.0])
    A = advantages(R, "grpo", num_generations=3)
    assert torch.allclose(A[:3], torch.tensor([-2.0, 0.0, 2.0]) / (2.0 + 1e-4))  # std (unbiased) of 1,3,5 is 2
    assert torch.equal(A[3:], torch.zeros(3))  # a group that all scored the same teaches nothing
    assert torch.allclose(advantages(R, "grpo", 3, scale_rewards=False)[:3], torch.tensor([-2.0, 0.0, 2.0]))


def test_ppo_advantages_are_whitened():
    R = torch.tensor([0.0, 1.0, 2.0, 5.0])
    A = advantages(R, "ppo")
    assert abs(A.mean().item()) < 1e-6 and abs(A.std(unbiased=False).item() - 1) < 1e-4


@pytest.mark.parametrize("bad", [dict(algorithm="sarsa"), dict(algorithm="rloo", num_generations=1)])
def test_advantage_errors(bad):
    with pytest.raises(ValueError):
        advantages(torch.zeros(4), bad["algorithm"], bad.get("num_generations", 1))
    with pytest.raises(ValueError, match=r"^grpo needs groups of num_generations >= 2 completions; got 5 rewards, k=2$"):
        advantages(torch.zeros(5), "grpo", 2)  # 5 rewards do not split into groups of 2


def test_a_group_algorithm_without_num_generations_is_refused():
    """The default, 1, is no group: rloo and grpo refuse it rather than guess a group size."""
    for algorithm in ("rloo", "grpo"):
        with pytest.raises(ValueError, match=rf"^{algorithm} needs groups of num_generations >= 2 completions; got 4 "
                                             r"rewards, k=1$"):
            advantages(torch.zeros(4), algorithm)


# ----------------------------------------------------------------------------------------- PPO clipping
@pytest.mark.parametrize("adv, ratio, has_grad", [
    (+1.0, 1.00, True), (+1.0, 1.10, True), (+1.0, 1.30, False), (+1.0, 0.70, True),
    (-1.0, 1.00, True), (-1.0, 0.90, True), (-1.0, 0.70, False), (-1.0, 1.30, True),
])
def test_clipping_table(adv, ratio, has_grad):
    """Which (advantage, ratio) cells still get a gradient with epsilon = 0.2."""
    r = torch.tensor(ratio, requires_grad=True)
    clipped_objective(r, torch.tensor(adv), 0.2).backward()
    assert (r.grad.abs().item() > 0) == has_grad
    if has_grad:
        assert r.grad.item() == pytest.approx(-adv)  # d/dρ of −ρA


def test_clipped_value_is_the_pessimistic_one():
    out = clipped_objective(torch.tensor([1.5, 0.5]), torch.tensor([1.0, -1.0]), 0.2)
    assert torch.allclose(out, torch.tensor([-1.2, 0.8]))


# ----------------------------------------------------------------------------------------- KL controller
def test_adaptive_kl_controller_rule():
    c = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10_000)
    # KL 3x the target: the error is clipped to +0.2; beta *= 1 + 0.2 * 64 / 10000
    assert c.update(18.0, 64) == pytest.approx(0.1 * (1 + 0.2 * 64 / 10_000))
    c = AdaptiveKLController(0.1, 6.0, 10_000)
    assert c.update(5.4, 100) == pytest.approx(0.1 * (1 - 0.1 * 100 / 10_000))   # 10% below target
    c = AdaptiveKLController(0.1, 6.0, 10_000)
    assert c.update(0.0, 100) == pytest.approx(0.1 * (1 - 0.2 * 100 / 10_000))   # clipped at -0.2
    c = AdaptiveKLController(0.1, 6.0, 1_000)
    for _ in range(200):
        c.update(12.0, 100)
    assert c.value > 0.1 * 1.01 ** 199  # keeps growing while KL stays above target
    with pytest.raises(ValueError):
        AdaptiveKLController(0.0, 6.0, 1000)


# ----------------------------------------------------------------------------------------- config
def test_config_defaults_and_errors():
    assert RLConfig(kl_in="reward").kl_estimator == "k1"
    assert RLConfig(kl_in="loss").kl_estimator == "k3"
    assert RLConfig(num_prompts=4, num_generations=16).batch_size == 64
    for bad in (dict(algorithm="dqn"), dict(kl_in="both"), dict(kl_estimator="k4"), dict(num_generations=1),
                dict(max_steps=0), dict(learning_rate=0.0), dict(beta=-1.0), dict(num_minibatches=1000)):
        with pytest.raises(ValueError):
            RLConfig(**bad)


# ----------------------------------------------------------------------------------------- rollouts and runs
def _letter_task(letter: str = "1") -> Task:
    """GeneralPoints prompts; reward 1 when the completion starts with `letter` (trivially learnable)."""
    gp_task = general_points_task("ten")

    def reward_fn(prompts, completions, infos):
        return [1.0 if c.startswith(letter) else 0.0 for c in completions]

    return gp_task.with_reward(reward_fn, name=f"starts with {letter}")


def test_navigation_task_scores_against_the_oracle():
    from toyenv.envs import navigation as nav

    task = navigation_task("relative")
    prompts, infos = task.sample_prompts(np.random.default_rng(3), 6)
    assert (prompts, infos) == task.sample_prompts(np.random.default_rng(3), 6)  # seeded by the rng
    assert all(p.startswith("Turns: relative") for p in prompts)
    expected = [i["expected"] for i in infos]
    assert all(nav.parse_action(e, "relative")[0] == e for e in expected)
    garbage = ["", "turn_direction(north)", None, "x" * 10_000, "forward()\nstop()", "stop"]
    assert task.reward_fn(prompts, expected, infos) == [1.0] * 6
    scores = task.reward_fn(prompts, garbage, infos)
    assert all(s in (1.0, -1.0) for s in scores) and scores[0] == scores[1] == scores[2] == -1.0
    with pytest.raises(ValueError):
        navigation_task("diagonal")


def test_rollout_groups_and_masks(base):
    model, tok = base
    cfg = RLConfig(num_prompts=3, num_generations=4, max_new_tokens=12)
    ro = rl.rollout(model, general_points_task("ten"), tok, cfg, np.random.default_rng(0),
                    torch.Generator().manual_seed(0))
    assert len(ro.prompts) == 12 and all(ro.prompts[i] == ro.prompts[i // 4 * 4] for i in range(12))
    assert len(set(ro.prompts)) == 3
    assert ro.tokens.shape == ro.mask.shape == ro.attention_mask.shape
    assert bool((ro.attention_mask | ~ro.mask.bool()).all())  # every generated token is attended
    assert ro.scores.shape == (12,) and set(ro.scores.tolist()) <= {5.0, -1.0, -2.0, -3.0}
    # the mask marks exactly the decoded completion
    assert tok.decode_batch(ro.tokens, mask=ro.mask.bool()) == ro.completions


def test_rl_improves_a_trivial_reward_and_is_deterministic(base):
    model, tok = base
    cfg = RLConfig(algorithm="rloo", max_steps=12, num_prompts=4, num_generations=4, max_new_tokens=4,
                   learning_rate=1e-3, seed=0)
    runs = []
    for _ in range(2):
        policy = copy.deepcopy(model)
        runs.append(rl.train(policy, _letter_task("1"), cfg, tok, ref=model, progress=False))
    h = runs[0]
    assert h["reward"] == runs[1]["reward"] and h["kl"] == runs[1]["kl"]  # same seed, same numbers
    first, last = np.mean(h["reward"][:3]), np.mean(h["reward"][-3:])
    assert last > first + 0.3, (first, last)
    assert h["kl"][0] == pytest.approx(0.0, abs=1e-6) and h["kl"][-1] > 0.01  # it moved away from the reference
    assert len(h["samples"]) == 12 * cfg.log_samples


def test_initial_eval_replaces_the_step_0_evaluation_and_changes_nothing_else(base):
    model, tok = base
    cfg = RLConfig(algorithm="rloo", max_steps=3, num_prompts=2, num_generations=2, max_new_tokens=4, seed=0,
                   eval_every=2)
    calls, known = [], {"x": 0}
    h1 = rl.train(copy.deepcopy(model), _letter_task(), cfg, tok, ref=model, progress=False,
                  eval_fn=lambda m: calls.append(1) or {"x": len(calls)})
    h2 = rl.train(copy.deepcopy(model), _letter_task(), cfg, tok, ref=model, progress=False,
                  eval_fn=lambda m: {"x": 1}, initial_eval=known)
    assert len(calls) == 3 and h2["eval"][0] == (0, known) and [s for s, _ in h2["eval"]] == [0, 2, 3]
    assert h1["reward"] == h2["reward"] and h1["loss"] == h2["loss"]


@pytest.mark.parametrize("algorithm", ["reinforce", "reinforce_baseline", "grpo", "ppo"])
def test_every_algorithm_runs_a_step(base, algorithm):
    model, tok = base
    policy = copy.deepcopy(model)
    cfg = RLConfig(algorithm=algorithm, max_steps=2, num_prompts=2, num_generations=3, max_new_tokens=4,
                   num_iterations=2 if algorithm == "ppo" else 1, num_minibatches=2 if algorithm == "ppo" else 1,
                   beta=0.1, kl_in="loss" if algorithm == "grpo" else "reward")
    length = lambda p, c, i: [len(x) for x in c]  # noqa: E731  (logged, not optimized)
    h = rl.train(policy, _letter_task(), cfg, tok, ref=model, progress=False, extra_rewards={"chars": length})
    assert len(h["reward"]) == 2 and all(math.isfinite(x) for x in h["loss"] + h["kl"] + h["entropy"])
    assert len(h["chars"]) == 2 and all(0 <= x <= 4 for x in h["chars"])
    assert any(not torch.equal(p, q) for p, q in zip(policy.parameters(), model.parameters()))


def test_kl_in_loss_is_zero_and_gradient_free_at_the_reference():
    """k3 in the loss at policy == reference: value 0 and no gradient (its expected gradient is the forward KL's)."""
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    ref = copy.deepcopy(m)
    tokens = torch.randint(3, 99, (4, 10))
    attn = torch.ones_like(tokens, dtype=torch.bool)
    logp, _ = rl.per_token_logprobs(m, tokens, attn)
    with torch.no_grad():
        ref_logp, _ = rl.per_token_logprobs(ref, tokens, attn)
    loss = k3(logp, ref_logp).mean()
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is None or p.grad.abs().max().item() < 1e-7 for p in m.parameters())


def test_the_logged_kl_sums_generated_tokens_only(base):
    """history["kl"] is the exact KL(π ‖ π_ref) summed over each completion's own tokens, averaged over the rollouts:
    recomputed here from the first step's rollouts over whole rows, with the KL written out by hand. Rows end at
    different lengths, so the columns after an EOS hold pads whose distributions must not count."""
    model, tok = base
    ref = copy.deepcopy(model)
    with torch.no_grad():
        ref.lm_head.weight.mul_(0.8)  # a reference that differs from the policy
    cfg = RLConfig(algorithm="grpo", max_steps=1, num_prompts=3, num_generations=2, max_new_tokens=24, seed=0,
                   temperature=1.5)
    task = general_points_task("ten")
    h = rl.train(copy.deepcopy(model), task, cfg, tok, ref=ref, progress=False)
    # the first step's rollouts, drawn as train draws them (its seeding: numpy [seed, 17], torch seed)
    ro = rl.rollout(model, task, tok, cfg, np.random.default_rng([cfg.seed, 17]),
                    torch.Generator().manual_seed(cfg.seed))
    lengths = ro.mask.sum(1)
    assert lengths.min() < lengths.max()  # some completions ended early: pads follow them
    with torch.no_grad():
        _, p = rl.per_token_logprobs(model, ro.tokens, ro.attention_mask, temperature=1.5)
        _, q = rl.per_token_logprobs(ref, ro.tokens, ro.attention_mask, temperature=1.5)
    by_hand = ((p.exp() * (p - q)).sum(-1) * ro.mask).sum(1).mean().item()
    assert by_hand > 0.01
    assert h["kl"][0] == pytest.approx(by_hand, rel=1e-4)
    assert h["length"][0] == pytest.approx(lengths.float().mean().item())


def test_reference_required_for_a_penalty(base):
    model, tok = base
    with pytest.raises(ValueError, match="reference"):
        rl.train(copy.deepcopy(model), _letter_task(), RLConfig(beta=0.1, max_steps=1), tok, ref=None, progress=False)


def test_ptx_term_lowers_the_pretraining_loss(base):
    """With a constant reward every advantage is 0, so only the PPO-ptx term moves the policy. The data is a task
    the base model never saw (reversing words), so its NLL has room to fall."""
    model, tok = base
    from toyenv.tasks import reverse_dataset
    from toyenv.tokenizer import collate, encode_pairs
    from toyenv.trainers.common import completion_loss

    ptx = reverse_dataset(32, seed=0)
    tokens, loss_mask = collate(encode_pairs(ptx, tok))

    def nll(m):
        with torch.no_grad():
            return completion_loss(m, tokens, loss_mask).item()

    task = _letter_task().with_reward(lambda p, c, i: [1.0] * len(c))
    cfg = RLConfig(algorithm="rloo", max_steps=8, num_prompts=2, num_generations=2, max_new_tokens=2,
                   learning_rate=3e-4, ptx_coef=1.0, ptx_batch_size=16)
    policy = copy.deepcopy(model)
    h = rl.train(policy, task, cfg, tok, ref=model, progress=False, ptx_data=ptx)
    assert nll(policy) < 0.5 * nll(model), (nll(model), nll(policy))
    assert len(h["ptx_loss"]) == 8 and all(math.isfinite(x) for x in h["ptx_loss"])
    with pytest.raises(ValueError, match="ptx_data"):
        rl.train(copy.deepcopy(model), task, cfg, tok, ref=model, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" from averaging the ptx losses that were never taken
        no_ptx = rl.train(copy.deepcopy(model), task, replace(cfg, ptx_coef=0.0), tok, ref=model, progress=False)
    assert all(math.isnan(x) for x in no_ptx["ptx_loss"])


def test_ptx_batches_come_from_the_configs_seed_not_the_global_rng(base):
    """Two runs with the same config give the same ptx losses whatever the global RNG did before them."""
    model, tok = base
    from toyenv.tasks import reverse_dataset

    task = _letter_task().with_reward(lambda p, c, i: [1.0] * len(c))
    cfg = RLConfig(algorithm="rloo", max_steps=2, num_prompts=2, num_generations=2, max_new_tokens=2,
                   ptx_coef=1.0, ptx_batch_size=2)
    ptx, losses = reverse_dataset(32, seed=0), []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        h = rl.train(copy.deepcopy(model), task, cfg, tok, ref=model, progress=False, ptx_data=ptx)
        losses.append(h["ptx_loss"])
    assert losses[0] == losses[1]


@pytest.mark.parametrize("name", ["kl", "reward", "step", "ptx_loss", "samples", "eval", "config"])
def test_extra_reward_names_must_not_clash(base, name):
    """Every key the history already has is refused as an extra reward's name (it would be overwritten)."""
    model, tok = base
    with pytest.raises(ValueError, match=rf"^extra_rewards names \['{name}'\] clash with the history's own keys$"):
        rl.train(copy.deepcopy(model), _letter_task(), RLConfig(max_steps=1), tok, ref=model, progress=False,
                 extra_rewards={name: lambda p, c, i: [0.0] * len(c)})


def test_the_history_keeps_the_config_it_ran_with(base):
    model, tok = base
    cfg = RLConfig(max_steps=1, num_prompts=2, num_generations=2, max_new_tokens=4, eval_every=0)
    h = rl.train(copy.deepcopy(model), _letter_task(), cfg, tok, ref=model, progress=False)
    assert h["config"] == {f.name: getattr(cfg, f.name) for f in fields(cfg)}


def test_bad_reward_fn_is_reported(base):
    model, tok = base
    task = _letter_task().with_reward(lambda p, c, i: [float("nan")] * len(c))
    with pytest.raises(ValueError, match="NaN"):
        rl.train(copy.deepcopy(model), task, RLConfig(num_prompts=1, num_generations=2, max_steps=1, max_new_tokens=2),
                 Tokenizer(), ref=model, progress=False)


def test_kl_regularized_optimum_maximizes_the_objective():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(6, generator=g, dtype=torch.float64)
    r = torch.randn(6, generator=g, dtype=torch.float64)
    from toyenv.kl import exact_categorical

    def objective(logits, beta):
        return (logits.softmax(-1) * r).sum() - beta * exact_categorical(logits, ref)

    for beta in (0.1, 1.0, 10.0):
        best = kl_regularized_optimum(ref, r, beta)
        assert torch.allclose(best.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
        for _ in range(20):  # no random perturbation does better
            other = best + 0.3 * torch.randn(6, generator=g, dtype=torch.float64)
            assert objective(best, beta) >= objective(other, beta) - 1e-12
    assert kl_regularized_optimum(ref, r, 1e-4).exp().argmax() == r.argmax()  # beta -> 0: the best action
    assert torch.allclose(kl_regularized_optimum(ref, r, 1e6), ref.log_softmax(-1), atol=1e-4)  # -> reference
    with pytest.raises(ValueError, match="beta must be > 0"):
        kl_regularized_optimum(ref, r, 0.0)


def test_adaptive_controller_refuses_each_non_positive_setting():
    AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=1)  # the smallest horizon is fine
    for bad in (dict(init_kl_coef=0.0), dict(target=0.0), dict(horizon=0), dict(target=-1.0),
                dict(init_kl_coef=float("nan")), dict(target=float("inf")), dict(horizon=float("nan")),
                dict(horizon=True), dict(target="6")):
        kw = {**dict(init_kl_coef=0.1, target=6.0, horizon=100), **bad}
        with pytest.raises(ValueError, match=r"^AdaptiveKLController needs init_kl_coef, target and horizon finite "
                                             r"numbers > 0 \(got "):
            AdaptiveKLController(**kw)


def test_ppo_normalises_a_batch_of_two_and_unknown_algorithms_are_named():
    # two rewards 1 and 3: mean 2, population std 1, so the advantages are -1 and +1 (up to the 1e-8)
    assert advantages(torch.tensor([1.0, 3.0]), "ppo").tolist() == pytest.approx([-1.0, 1.0], abs=1e-7)
    assert advantages(torch.tensor([5.0]), "ppo").tolist() == [0.0]  # one completion: nothing to compare with
    # near-equal rewards: mean 1e-8, population std 1e-8, so (R - mean) / (std + 1e-8) = -1e-8 / 2e-8 and +1e-8 / 2e-8.
    # The 1e-8 is added (a subtracted one would divide by zero here).
    assert advantages(torch.tensor([0.0, 2e-8]), "ppo").tolist() == pytest.approx([-0.5, 0.5], rel=1e-4)
    with pytest.raises(ValueError, match=r"^algorithm must be one of \('reinforce', 'reinforce_baseline', 'rloo', "
                                         r"'grpo', 'ppo'\), got 'a2c'$"):
        advantages(torch.zeros(4), "a2c", 2)


def test_a_frozen_policy_is_refused_before_any_sampling():
    from toyenv import GPT, GPTConfig
    from toyenv.tasks import general_points_task

    policy = GPT(GPTConfig(block_size=96, n_layer=1, n_head=2, n_embd=16)).requires_grad_(False)
    with pytest.raises(ValueError, match=r"^the policy has no trainable parameters \(was it copied from a frozen "
                                         r"model\?\)$"):
        rl.train(policy, general_points_task("ten"), RLConfig(max_steps=1, num_prompts=2, num_generations=2),
                 progress=False)


def test_group_baselines_need_two_generations_and_minibatches_at_most_one_rollout_each():
    for algorithm in ("rloo", "grpo"):
        with pytest.raises(ValueError, match=rf"^RLConfig.num_generations must be >= 2 for {algorithm}, which"):
            RLConfig(algorithm=algorithm, num_generations=1)
    assert RLConfig(algorithm="ppo", num_generations=1).num_generations == 1
    assert RLConfig(num_prompts=2, num_generations=2, num_minibatches=4).num_minibatches == 4  # one rollout each
    with pytest.raises(ValueError, match=r"^RLConfig.num_minibatches must be <= num_prompts \* num_generations = 4 "
                                         r"rollouts per step, got 5$"):
        RLConfig(num_prompts=2, num_generations=2, num_minibatches=5)


def test_per_token_logprobs_by_hand_at_temperature_one_by_default(small_model):
    """Column t is log softmax(logits at t − 1)[token t], at temperature 1 unless told; column 0 is 0 and its
    distribution row is zeros."""
    tokens = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 10, 11, 12]])
    mask = torch.ones_like(tokens, dtype=torch.bool)
    with torch.no_grad():
        picked, logdist = rl.per_token_logprobs(small_model, tokens, mask)
        logits = small_model(tokens)
        hot = rl.per_token_logprobs(small_model, tokens, mask, temperature=2.0)[0]
    for b in range(2):
        for t in range(1, 5):
            by_hand = logits[b, t - 1] - torch.logsumexp(logits[b, t - 1], -1)
            assert torch.allclose(logdist[b, t], by_hand, atol=1e-5)
            assert picked[b, t] == pytest.approx(float(by_hand[tokens[b, t]]), abs=1e-5)
            half = logits[b, t - 1] / 2
            assert hot[b, t] == pytest.approx(float((half - torch.logsumexp(half, -1))[tokens[b, t]]), abs=1e-5)
    assert (picked[:, 0] == 0).all() and (logdist[:, 0] == 0).all()
    assert picked.shape == tokens.shape and logdist.shape == (*tokens.shape, small_model.config.vocab_size)
    # Left padding, as rollouts have it: the real tokens keep their log-probs (the pads are neither attended nor
    # counted as positions), at the same columns from the right.
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.long), tokens], 1)
    with torch.no_grad():
        p_picked, p_logdist = rl.per_token_logprobs(small_model, padded, padded != 0)
    assert p_picked.shape == padded.shape and p_logdist.shape == (2, 8, small_model.config.vocab_size)
    assert torch.allclose(p_picked[:, 4:], picked[:, 1:], atol=1e-5)
    assert torch.allclose(p_logdist[:, 4:], logdist[:, 1:], atol=1e-5)


def test_masked_mean_divides_by_the_count_of_marked_entries():
    x = torch.tensor([5.0, 7.0, 9.0])
    assert rl._masked_mean(x, torch.tensor([0.0, 1.0, 0.0])) == 7.0
    assert rl._masked_mean(x, torch.tensor([1.0, 0.0, 1.0])) == 7.0
    assert rl._masked_mean(x, torch.zeros(3)) == 0.0  # nothing marked: 0, not NaN


def test_ppo_scores_the_old_policy_at_the_sampling_temperature(base):
    """Before the policy moves, π_θ/π_old is exactly 1 at every token, whatever the temperature: with a learning
    rate too small to move the weights, no ratio leaves [1 − ε, 1 + ε]. (π_old scored at temperature 1 instead
    put 71% of them outside when this test was written; at 0.5 the base model is too sure of itself for that.)"""
    model, tok = base
    cfg = RLConfig(algorithm="ppo", max_steps=1, num_prompts=2, num_generations=3, max_new_tokens=4,
                   num_iterations=2, num_minibatches=2, temperature=2.0, learning_rate=1e-30)
    h = rl.train(copy.deepcopy(model), _letter_task(), cfg, tok, progress=False)
    assert h["clip_frac"] == [0.0]


def test_ptx_loss_is_the_completion_nll_of_the_pretraining_data_before_the_first_update(base):
    """history["ptx_loss"] of step 0 is the mean NLL of the ptx completions (EOS included) under the policy before
    its first update, computed here from the model's logits token by token: the prompt is context, not a target,
    as in the base model's pretraining. One (prompt, completion) pair, so every ptx batch is that pair."""
    model, tok = base
    prompt, completion = "reverse: abc", "cba"
    context = tok.encode(prompt, bos=True)
    ids = context + tok.encode(completion, eos=True)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0].double(), -1)
    expected = -sum(logp[t - 1, ids[t]].item() for t in range(len(context), len(ids))) / (len(ids) - len(context))
    task = _letter_task().with_reward(lambda p, c, i: [1.0] * len(c))
    cfg = RLConfig(algorithm="rloo", max_steps=1, num_prompts=2, num_generations=2, max_new_tokens=2,
                   ptx_coef=1.0, ptx_batch_size=3)
    h = rl.train(copy.deepcopy(model), task, cfg, tok, ref=model, progress=False, ptx_data=[(prompt, completion)])
    assert h["ptx_loss"][0] == pytest.approx(expected, rel=1e-5)


def test_clip_fraction_counts_ratios_strictly_outside_the_band(base):
    """clip_frac is the share of tokens with |ρ − 1| > ε, strictly: at ε = 0 the only pass over the batch,
    where ρ = 1 exactly (the policy has not moved yet), counts none."""
    model, tok = base
    cfg = RLConfig(algorithm="ppo", max_steps=1, num_prompts=2, num_generations=2, max_new_tokens=3, epsilon=0.0)
    h = rl.train(copy.deepcopy(model), _letter_task(), cfg, tok, progress=False)
    assert h["clip_frac"] == [0.0]
