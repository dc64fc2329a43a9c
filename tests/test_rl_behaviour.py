"""toyenv.rl.train pinned step by step: what each update should be, computed here without the trainer.

Each test runs `rl.train` for a step or two on a 1-layer GPT, with the optimizer swapped for a recorder that keeps
the gradient of every update and the parameters it was taken at. The expected gradient is then rebuilt in this
file from the rollouts the trainer drew: log-probs by running each row's prompt and completion alone through the
model, the advantages, KL estimators, clipped ratio and token mean written out by hand from the papers' formulas,
and autograd on a copy of the model. A flipped sign, a swapped argument, a dropped clip or a minibatch that sees
the wrong samples changes that gradient, so these tests fail on such bugs where "the loss is finite" would pass.
"""
import copy
import math
import statistics
from dataclasses import replace

import pytest
import torch

from toyenv import GPT, GPTConfig, Tokenizer
from toyenv.trainers import rl
from toyenv.trainers.rl import AdaptiveKLController, RLConfig, advantages
from toyenv.tasks import Task
from recording import RecordingSGD

TOK = Tokenizer()
PROMPTS = ("ab:", "xyz:", "c:")  # different lengths, so the trainer's batches are left-padded


def _reward(prompts, completions, infos):
    """Any deterministic reward with a spread within each group (here: −3 .. 3 from the characters)."""
    return [float(sum(map(ord, c)) % 7) - 3.0 for c in completions]


TASK = Task(lambda rng, n: (list(PROMPTS[:n]), [{} for _ in range(n)]), _reward, name="hashed characters")

# The KL estimators as Schulman's note writes them, with log r = log π_ref − log π at the sampled token.
KL = {
    "k1": lambda logp, logq: logp - logq,
    "k2": lambda logp, logq: 0.5 * (logq - logp) ** 2,
    "k3": lambda logp, logq: torch.exp(logq - logp) - 1 - (logq - logp),
}


def _models():
    """A policy and a reference that differ clearly (a sequence KL of order 1), so every KL term matters."""
    torch.manual_seed(0)
    policy = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        policy.lm_head.weight.mul_(5)  # sharper than a fresh init: log-probs far from uniform
        ref = copy.deepcopy(policy)
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.std())
    return policy, ref


def _train(monkeypatch, sgd_lr=0.0, kl_controller=None, **overrides):
    """Run rl.train on the tiny models; return (history, rollouts, recorded updates, the policy as it started, ref)."""
    policy, ref = _models()
    start = copy.deepcopy(policy)
    rollouts, opts = [], []
    real_rollout = rl.rollout

    def recording_rollout(*args, **kwargs):
        rollouts.append(real_rollout(*args, **kwargs))
        return rollouts[-1]

    def recording_optimizer(model, learning_rate, weight_decay):
        opts.append(RecordingSGD(model, sgd_lr))
        return opts[-1]

    monkeypatch.setattr(rl, "rollout", recording_rollout)
    monkeypatch.setattr(rl, "adamw", recording_optimizer)
    kw = dict(max_steps=1, num_prompts=2, num_generations=3, max_new_tokens=4, max_grad_norm=1e6, seed=0)
    cfg = RLConfig(**{**kw, **overrides})
    history = rl.train(policy, TASK, cfg, TOK, ref=ref, kl_controller=kl_controller, progress=False)
    return history, rollouts, opts[0].steps, start, ref, cfg


# --------------------------------------------------------------------------- the update, written out
def _completion_logps(model, ro, temperature=1.0):
    """Per row: log π(y_t | prompt, y_<t) of each generated token, and the full log-distributions they were drawn
    from. Each row runs alone, as BOS + prompt + its generated tokens, with no padding and no mask."""
    logps, dists = [], []
    for b in range(len(ro.prompts)):
        prompt = TOK.encode(ro.prompts[b], bos=True)
        generated = ro.tokens[b][ro.mask[b].bool()].tolist()
        seq = torch.tensor([prompt + generated])
        logdist = torch.log_softmax(model(seq)[0].float() / temperature, -1)
        pos = torch.arange(len(prompt), seq.shape[1])  # token t is predicted at position t − 1
        logps.append(logdist[pos - 1, seq[0, pos]])
        dists.append(logdist[pos - 1])
    return logps, dists


def _hand_advantages(R, algorithm, k, scale_rewards=True):
    """The advantage formulas of the REINFORCE, RLOO, GRPO and PPO papers, in plain Python."""
    if algorithm == "reinforce":
        return list(R)
    if algorithm == "reinforce_baseline":
        return [r - statistics.mean(R) for r in R]
    if algorithm == "ppo":  # whitened over the batch (population std)
        return [(r - statistics.mean(R)) / (statistics.pstdev(R) + 1e-8) for r in R]
    out = []
    for g in range(0, len(R), k):
        group = R[g : g + k]
        for r in group:
            if algorithm == "rloo":  # the mean of the *other* k − 1 completions of the prompt
                out.append(r - (sum(group) - r) / (k - 1))
            else:  # grpo: group mean, and the group's sample std unless scale_rewards is off
                out.append((r - statistics.mean(group)) / ((statistics.stdev(group) + 1e-4) if scale_rewards else 1))
    return out


def _model_at(template, params):
    m = copy.deepcopy(template).train()
    with torch.no_grad():
        for p, v in zip(m.parameters(), params):
            p.copy_(v)
    return m


def _expected(template, params, ro, rows, old, ref_lp, cfg, beta, reward_sign=-1.0, swap_kl=False, clip=True,
              kl_ratio=False):
    """(loss, flat gradient) of one update on `rows` of rollout `ro`, at `params`, by hand.

    R = r − β Σ_t k(π_old, π_ref) when the KL is in the reward; A from R; per token −ρA (REINFORCE family) or
    −min(ρA, clip(ρ, 1 ± ε)A) (grpo, ppo) with ρ = π/π_old; the mean over every generated token of `rows`, plus
    β · mean_t k(π, π_ref) when the KL is in the loss, each k times its token's ρ if `kl_ratio` (TRL's
    use_bias_correction_kl). `reward_sign`, `swap_kl` and `clip` build the gradients of the bugs the tests must
    tell apart from the real one."""
    est = KL[cfg.kl_estimator]
    R = ro.scores.double().tolist()
    if cfg.kl_in == "reward":
        R = [r + reward_sign * beta * est(old[b], ref_lp[b]).sum().item() for b, r in enumerate(R)]
    A = _hand_advantages(R, cfg.algorithm, cfg.num_generations, cfg.scale_rewards)
    model = _model_at(template, params)
    new, _ = _completion_logps(model, ro, cfg.temperature)
    terms, kls = [], []
    for b in rows:
        ratio = torch.exp(new[b] - old[b])
        if cfg.algorithm in ("grpo", "ppo") and clip:
            terms.append(-torch.minimum(ratio * A[b], ratio.clamp(1 - cfg.epsilon, 1 + cfg.epsilon) * A[b]))
        else:
            terms.append(-ratio * A[b])
        kls.append((ratio if kl_ratio else 1.0) * (est(ref_lp[b], new[b]) if swap_kl else est(new[b], ref_lp[b])))
    loss = torch.cat(terms).mean()
    if cfg.kl_in == "loss" and beta > 0:
        loss = loss + beta * torch.cat(kls).mean()
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])


def _old_and_ref(start, ref, ro, temperature=1.0):
    with torch.no_grad():
        return _completion_logps(start, ro, temperature)[0], _completion_logps(ref, ro, temperature)[0]


def _close(got, want, rtol=1e-4):
    return (got - want).norm().item() <= rtol * want.norm().item()


def _far(a, b, rel=0.05):
    """The bug's gradient differs from the right one by more than `rel`: the comparison can see it."""
    return (a - b).norm().item() > rel * b.norm().item()


# --------------------------------------------------------------------------- each algorithm, one step
@pytest.mark.parametrize("algorithm, extra", [
    ("reinforce", {}), ("reinforce_baseline", {}), ("rloo", {}), ("grpo", {}), ("grpo", {"scale_rewards": False}),
    ("ppo", {}), ("rloo", {"temperature": 0.5}),
])
def test_one_update_is_the_policy_gradient_of_the_algorithm(monkeypatch, algorithm, extra):
    h, (ro,), steps, start, ref, cfg = _train(monkeypatch, algorithm=algorithm, **extra)
    assert ro.scores.tolist() == _reward(ro.prompts, ro.completions, ro.infos)
    assert len(set(ro.scores.tolist())) > 2  # rewards with a spread: the advantages are not all zero
    old, ref_lp = _old_and_ref(start, ref, ro, cfg.temperature)
    loss, want = _expected(start, steps[0][0], ro, range(len(ro.prompts)), old, ref_lp, cfg, beta=0.0)
    assert want.norm() > 1e-3
    assert _close(steps[0][1], want), (steps[0][1].norm(), want.norm(), (steps[0][1] - want).norm())
    assert h["loss"][0] == pytest.approx(loss, rel=1e-4, abs=1e-6)


def test_ppo_advantages_are_whitened_by_hand_and_keep_their_sign():
    R = torch.tensor([0.0, 1.0, 2.0, 5.0])  # mean 2, population std sqrt(14 / 4)
    want = torch.tensor([-2.0, -1.0, 0.0, 3.0]) / math.sqrt(3.5)
    assert torch.allclose(advantages(R, "ppo"), want, atol=1e-6)  # the best sample gets the largest advantage
    assert advantages(torch.tensor([3.0]), "ppo").tolist() == [0.0]  # one sample: no baseline, no signal


def test_a_real_adamw_step_moves_every_weight_against_the_hand_gradient(monkeypatch):
    """Without the recorder: AdamW's first step is −lr · g / (|g| + eps) per weight (m̂ = g, v̂ = g²)."""
    policy, ref = _models()
    start = copy.deepcopy(policy)
    rollouts, real_rollout = [], rl.rollout
    monkeypatch.setattr(rl, "rollout", lambda *a, **k: rollouts.append(real_rollout(*a, **k)) or rollouts[-1])
    cfg = RLConfig(algorithm="reinforce_baseline", max_steps=1, num_prompts=2, num_generations=3, max_new_tokens=4,
                   learning_rate=1e-3, max_grad_norm=1e6)
    rl.train(policy, TASK, cfg, TOK, ref=ref, progress=False)
    old, ref_lp = _old_and_ref(start, ref, rollouts[0])
    _, g = _expected(start, list(start.parameters()), rollouts[0], range(6), old, ref_lp, cfg, beta=0.0)
    moved = torch.cat([(p - q).flatten() for p, q in zip(policy.parameters(), start.parameters())]).detach()
    big = g.abs() > 1e-5  # where eps = 1e-8 and float noise in g cannot matter
    assert big.sum() > 100
    torch.testing.assert_close(moved[big], -1e-3 * torch.sign(g[big]), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- the KL penalty
@pytest.mark.parametrize("algorithm", ["reinforce", "rloo"])
@pytest.mark.parametrize("kl_estimator", ["k1", "k2", "k3"])
def test_kl_in_the_reward_is_subtracted(monkeypatch, algorithm, kl_estimator):
    beta = 1.0
    h, (ro,), steps, start, ref, cfg = _train(monkeypatch, algorithm=algorithm, beta=beta, kl_in="reward",
                                             kl_estimator=kl_estimator)
    old, ref_lp = _old_and_ref(start, ref, ro)
    rows = range(len(ro.prompts))
    penalties = [KL[kl_estimator](old[b], ref_lp[b]).sum().item() for b in rows]
    assert max(map(abs, penalties)) > 0.3  # the policy is far enough from the reference for the penalty to count
    assert h["kl_penalty"][0] == pytest.approx(statistics.mean(penalties), rel=1e-4)
    _, want = _expected(start, steps[0][0], ro, rows, old, ref_lp, cfg, beta)
    _, added = _expected(start, steps[0][0], ro, rows, old, ref_lp, cfg, beta, reward_sign=+1.0)
    _, in_loss = _expected(start, steps[0][0], ro, rows, old, ref_lp, replace(cfg, kl_in="loss"), beta)
    assert _far(added, want) and _far(in_loss, want)
    assert _close(steps[0][1], want)


def test_the_reference_is_scored_at_the_sampling_temperature(monkeypatch):
    """At temperature 2 both π and π_ref are the softmax of logits / 2: the penalty compares the distributions the
    samples came from. A reference scored at temperature 1 gives another penalty, far from this one."""
    h, (ro,), steps, start, ref, cfg = _train(monkeypatch, algorithm="rloo", beta=1.0, kl_in="reward",
                                             kl_estimator="k1", temperature=2.0)
    old, ref_lp = _old_and_ref(start, ref, ro, 2.0)
    ref_at_1 = _old_and_ref(start, ref, ro, 1.0)[1]
    rows = range(len(ro.prompts))
    right = statistics.mean(KL["k1"](old[b], ref_lp[b]).sum().item() for b in rows)
    wrong = statistics.mean(KL["k1"](old[b], ref_at_1[b]).sum().item() for b in rows)
    assert abs(right - wrong) > 0.1, (right, wrong)
    assert h["kl_penalty"][0] == pytest.approx(right, rel=1e-4)
    assert _close(steps[0][1], _expected(start, steps[0][0], ro, rows, old, ref_lp, cfg, 1.0)[1])


@pytest.mark.parametrize("kl_estimator", ["k1", "k2", "k3"])
def test_kl_in_the_loss_is_the_estimator_of_policy_against_reference(monkeypatch, kl_estimator):
    beta = 1.0
    h, (ro,), steps, start, ref, cfg = _train(monkeypatch, algorithm="grpo", beta=beta, kl_in="loss",
                                             kl_estimator=kl_estimator)
    old, ref_lp = _old_and_ref(start, ref, ro)
    rows = range(len(ro.prompts))
    loss, want = _expected(start, steps[0][0], ro, rows, old, ref_lp, cfg, beta)
    _, no_kl = _expected(start, steps[0][0], ro, rows, old, ref_lp, cfg, beta=0.0)
    assert _far(no_kl, want)  # the KL term carries real weight in this update
    if kl_estimator != "k2":  # k2 = ½ (log r)² is symmetric in its arguments: swapping them changes nothing
        _, swapped = _expected(start, steps[0][0], ro, rows, old, ref_lp, cfg, beta, swap_kl=True)
        assert _far(swapped, want)
    assert _close(steps[0][1], want)
    assert h["loss"][0] == pytest.approx(loss, rel=1e-4)


@pytest.mark.parametrize("num_iterations", [1, 2])
def test_the_bias_corrected_kl_is_k3_times_the_differentiable_ratio(monkeypatch, num_iterations):
    """TRL's use_bias_correction_kl (DeepSeek-V3.2): β · mean_t ρ_t k3_t with ρ = π/π_old kept in the graph. In the
    first pass ρ = 1 but its gradient is not zero; in the second the policy has moved (SGD, lr 0.1) and ρ ≠ 1 too."""
    beta = 1.0
    h, (ro,), steps, start, ref, cfg = _train(monkeypatch, sgd_lr=0.1, algorithm="grpo", beta=beta, kl_in="loss",
                                             use_bias_correction_kl=True, num_iterations=num_iterations)
    assert cfg.kl_estimator == "k3" and len(steps) == num_iterations
    old, ref_lp = _old_and_ref(start, ref, ro)
    rows = range(len(ro.prompts))
    for params, got in steps:
        loss, want = _expected(start, params, ro, rows, old, ref_lp, cfg, beta, kl_ratio=True)
        _, plain = _expected(start, params, ro, rows, old, ref_lp, cfg, beta)  # k3 alone, GRPO's default
        assert _far(plain, want)
        assert _close(got, want)
    assert h["loss"][0] == pytest.approx(statistics.mean(
        [_expected(start, p, ro, rows, old, ref_lp, cfg, beta, kl_ratio=True)[0] for p, _ in steps]), rel=1e-4)


def test_the_bias_correction_needs_the_kl_in_the_loss():
    with pytest.raises(ValueError, match=r"^RLConfig\.use_bias_correction_kl corrects the KL term of the loss: it needs "
                                         r"kl_in='loss', got kl_in='reward'$"):
        RLConfig(use_bias_correction_kl=True, beta=0.1)
    with pytest.raises(ValueError, match="use_bias_correction_kl must be True or False"):
        RLConfig(use_bias_correction_kl="yes", kl_in="loss")


# --------------------------------------------------------------------------- the clip, minibatches and epochs
@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_the_second_epoch_is_clipped(monkeypatch, algorithm):
    """After the first epoch's (large) step the ratios leave [1 − ε, 1 + ε]: the second epoch's gradient is the
    clipped objective's, where tokens already pushed far enough in their advantage's direction give nothing."""
    h, (ro,), steps, start, ref, cfg = _train(monkeypatch, sgd_lr=0.1, algorithm=algorithm, num_iterations=2,
                                             epsilon=0.1)
    assert len(steps) == 2
    old, ref_lp = _old_and_ref(start, ref, ro)
    rows = range(len(ro.prompts))
    _, first = _expected(start, steps[0][0], ro, rows, old, ref_lp, cfg, 0.0)
    assert _close(steps[0][1], first)
    with torch.no_grad():
        moved, _ = _completion_logps(_model_at(start, steps[1][0]), ro)
    ratio = torch.cat([torch.exp(moved[b] - old[b]) for b in rows])
    frac = ((ratio - 1).abs() > cfg.epsilon).float().mean().item()
    assert 0.2 < frac < 1.0, frac
    _, want = _expected(start, steps[1][0], ro, rows, old, ref_lp, cfg, 0.0)
    _, unclipped = _expected(start, steps[1][0], ro, rows, old, ref_lp, cfg, 0.0, clip=False)
    assert _far(unclipped, want)
    assert _close(steps[1][1], want)
    assert h["clip_frac"][0] == pytest.approx((0.0 + frac) / 2, abs=1e-6)  # the first epoch has ρ = 1 everywhere


def test_minibatches_and_epochs_use_every_sample_once_per_epoch(monkeypatch):
    """num_minibatches = 2, num_iterations = 2, 2 steps of 4 rollouts: 8 updates. Each update's gradient is matched
    against every possible minibatch of 2 rollouts: exactly one fits, the two minibatches of an epoch split the
    batch, and every update's ratio divides by the log-probs of the policy as it was when the step's rollouts
    were drawn."""
    # ε large: no clipping here (a fully clipped minibatch has no gradient, and would fit any other such one)
    h, rollouts, steps, start, ref, cfg = _train(monkeypatch, sgd_lr=0.05, algorithm="ppo", max_steps=2,
                                                 num_prompts=2, num_generations=2, num_minibatches=2,
                                                 num_iterations=2, epsilon=10.0)
    assert len(rollouts) == 2 and len(steps) == 2 * 2 * 2 == len(h["grad_norm"]) * 4
    candidates = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    epochs = []
    for s, ro in enumerate(rollouts):
        at_step_start = _model_at(start, steps[4 * s][0])  # the policy that drew these rollouts
        old, ref_lp = _old_and_ref(at_step_start, ref, ro)
        used = []
        for params, grad in steps[4 * s : 4 * s + 4]:
            fits = [rows for rows in candidates
                    if _close(grad, _expected(start, params, ro, rows, old, ref_lp, cfg, 0.0)[1], rtol=1e-3)]
            assert len(fits) == 1, (s, fits)
            used.append(set(fits[0]))
        for epoch in (used[:2], used[2:]):
            assert epoch[0] | epoch[1] == {0, 1, 2, 3}  # each rollout once per epoch
        epochs.extend((used[:2], used[2:]))
    # and in a shuffled order: rows 0-1 then 2-3 in all four epochs would mean no shuffling (odds 1 in 6**4)
    assert any(epoch != [{0, 1}, {2, 3}] for epoch in epochs), epochs


# --------------------------------------------------------------------------- the adaptive KL controller
def _ziegler(beta, kl, target, horizon, n):
    """Ziegler et al. (2019), eq. 2: e = clip(KL / target − 1, −0.2, 0.2); β ← β (1 + e · n / horizon)."""
    e = min(max(kl / target - 1, -0.2), 0.2)
    return beta * (1 + e * n / horizon)


@pytest.mark.parametrize("kl, direction", [(9.0, +1), (6.3, +1), (6.0, 0), (5.7, -1), (0.0, -1)])
def test_adaptive_controller_direction(kl, direction):
    c = AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=500)
    new = c.update(kl, 50)
    assert new == pytest.approx(_ziegler(0.2, kl, 6.0, 500, 50), rel=1e-12)
    assert (new > 0.2) - (new < 0.2) == direction  # KL above target: a stronger pull back (β up); below: β down
    assert c.value == new


def test_adaptive_controller_steers_beta_inside_rl_train(monkeypatch):
    """The logged KL is the exact one; β moves by Ziegler's rule with n = the batch size, in the right direction,
    and the next step's reward is penalized with the new β."""
    kl0 = None
    for target in (1e-3, 1e3, "near"):  # KL far above target, far below, and 10% above (the unclipped branch)
        if target == "near":
            target = kl0 / 1.1
        ctl = AdaptiveKLController(init_kl_coef=0.5, target=target, horizon=6)
        h, rollouts, steps, start, ref, cfg = _train(monkeypatch, sgd_lr=0.5, kl_controller=ctl, max_steps=2,
                                                     algorithm="reinforce", kl_in="reward")
        with torch.no_grad():
            _, p = _completion_logps(start, rollouts[0])
            _, q = _completion_logps(ref, rollouts[0])
        exact = statistics.mean((pb.exp() * (pb - qb)).sum().item() for pb, qb in zip(p, q))  # Σ_t KL(π ‖ π_ref)
        assert h["kl"][0] == pytest.approx(exact, rel=1e-4)
        kl0 = h["kl"][0]
        beta1 = _ziegler(0.5, kl0, target, 6, cfg.batch_size)
        assert h["beta"] == pytest.approx([0.5, beta1], rel=1e-9)
        assert (beta1 > 0.5) == (kl0 > target)
        ro = rollouts[1]
        old, ref_lp = _old_and_ref(_model_at(start, steps[1][0]), ref, ro)
        _, want = _expected(start, steps[1][0], ro, range(6), old, ref_lp, cfg, beta1)
        assert _close(steps[1][1], want)


# --------------------------------------------------------------------------- what the history records
def test_the_history_records_each_step_as_it_happened(monkeypatch):
    """Four steps with a frozen policy (the recorder takes no step): every logged number is rebuilt from the
    rollouts the trainer drew, by running each completion alone through the policy and the reference."""
    policy, ref = _models()
    rollouts, seen_by_eval, seen_by_extra = [], [], []
    real_rollout = rl.rollout
    monkeypatch.setattr(rl, "rollout", lambda *a, **k: rollouts.append(real_rollout(*a, **k)) or rollouts[-1])
    monkeypatch.setattr(rl, "adamw", lambda model, lr, wd: RecordingSGD(model))

    def eval_fn(model):
        seen_by_eval.append((model, model.training))
        return {"probe": len(seen_by_eval)}

    def echo(prompts, completions, infos):  # logged, not optimized
        seen_by_extra.append((prompts, completions, infos))
        return [len(c) for c in completions]

    cfg = RLConfig(max_steps=4, num_prompts=2, num_generations=3, max_new_tokens=4, beta=0.1, eval_every=3,
                   log_samples=2, seed=0)
    h = rl.train(policy, TASK, cfg, TOK, ref=ref, eval_fn=eval_fn, extra_rewards={"echo": echo}, progress=False)

    assert h["step"] == [0, 1, 2, 3] and h["beta"] == [0.1] * 4 and len(rollouts) == 4
    # before training, every eval_every steps, and after the last
    assert [s for s, _ in h["eval"]] == [0, 3, 4] and [row["probe"] for _, row in h["eval"]] == [1, 2, 3]
    assert all(m is policy and not training for m, training in seen_by_eval)  # the policy itself, in eval mode
    assert all(0 < s < 60 for s in h["seconds"]) and all(math.isnan(x) for x in h["ptx_loss"])
    for t, ro in enumerate(rollouts):
        with torch.no_grad():
            logps, dists = _completion_logps(policy, ro)
            _, ref_dists = _completion_logps(ref, ro)
        entropies = torch.cat([-(d.exp() * d).sum(-1) for d in dists])
        kls = [float((d.exp() * (d - r)).sum()) for d, r in zip(dists, ref_dists)]
        assert h["reward"][t] == pytest.approx(float(ro.scores.mean()))
        assert h["length"][t] == pytest.approx(statistics.mean(len(lp) for lp in logps))
        assert h["entropy"][t] == pytest.approx(float(entropies.mean()), rel=1e-4)
        assert h["kl"][t] == pytest.approx(statistics.mean(kls), rel=1e-4)
        assert seen_by_extra[t] == (ro.prompts, ro.completions, ro.infos)
        assert h["echo"][t] == pytest.approx(statistics.mean(len(c) for c in ro.completions))
        # log_samples = 2: the first completion of each of the two prompts (rows 0 and num_generations)
        assert h["samples"][2 * t : 2 * t + 2] == [(t, ro.prompts[j], ro.completions[j], float(ro.scores[j]))
                                                  for j in (0, 3)]
    # beta = 0 needs no reference (the logged KL is then 0)
    h0 = rl.train(copy.deepcopy(policy), TASK, replace(cfg, beta=0.0, max_steps=1, eval_every=0), TOK,
                  progress=False)
    assert h0["kl"] == [0.0]


def test_logged_samples_take_one_completion_per_prompt_before_any_second(monkeypatch):
    """Rollouts are grouped by prompt (rows p·G .. p·G + G − 1), and history["samples"] goes round the prompts:
    each prompt's first completion, then each one's second, and so on; asking for every rollout logs each once."""
    policy, ref = _models()
    rollouts = []
    real_rollout = rl.rollout
    monkeypatch.setattr(rl, "rollout", lambda *a, **k: rollouts.append(real_rollout(*a, **k)) or rollouts[-1])
    for log_samples, rows in ((4, (0, 3, 1, 4)), (6, (0, 3, 1, 4, 2, 5)), (9, (0, 3, 1, 4, 2, 5))):
        rollouts.clear()
        cfg = RLConfig(max_steps=1, num_prompts=2, num_generations=3, max_new_tokens=3, log_samples=log_samples)
        h = rl.train(copy.deepcopy(policy), TASK, cfg, TOK, ref=ref, progress=False)
        ro = rollouts[0]
        assert h["samples"] == [(0, ro.prompts[j], ro.completions[j], float(ro.scores[j])) for j in rows]
