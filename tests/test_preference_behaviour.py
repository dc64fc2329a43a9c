"""The preference trainers pinned by one update each: DPO, DPO + NLL, RPO (both divergences), REBEL, and the reward
model with and without Llama 2's margins.

The losses are checked against hand values in test_preference_losses.py; here the question is whether
the *trainers* build them from the right pieces: sequence log-probs summed over the completion and its EOS,
the reference's log-probs from the reference, the NLL divided by the chosen length, the rewards and margins of the
pairs. Each test swaps the optimizer for a recorder, runs one step, and compares the gradient with the one of the
paper's formula written out here, on log-probs (or scores) from running each sequence alone through the model.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from toyenv import GPT, GPTConfig, Tokenizer
from toyenv.pairs import PreferencePair
from toyenv.tokenizer import EOS_ID
from toyenv.trainers import dpo, reward_model
from toyenv.trainers.dpo import PreferenceConfig
from toyenv.trainers.reward_model import RewardConfig, RewardModel
from recording import RecordingSGD

TOK = Tokenizer()
TINY = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32)
# Chosen completions of 1, 7 and 2 characters: length normalization changes the NLL term's weights.
PAIRS = [
    PreferencePair("ab:", "b", "bab!", strength="significantly_better", reward_chosen=5.0, reward_rejected=-1.0),
    PreferencePair("xyz:", "zyx+zyx", "z", strength="slightly_better", reward_chosen=-1.0, reward_rejected=-2.0),
    PreferencePair("c:", "cc", "c c c", strength="better", reward_chosen=-1.0, reward_rejected=-3.0),
]


def _record(monkeypatch, module):
    opts = []
    monkeypatch.setattr(module, "adamw", lambda model, lr, wd: opts.append(RecordingSGD(model)) or opts[-1])
    return opts


def _policy_and_ref():
    torch.manual_seed(0)
    policy = GPT(TINY)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        policy.lm_head.weight.mul_(5)
        ref = copy.deepcopy(policy)
        for p in ref.parameters():  # a reference that differs: every log-ratio is far from 0
            p.add_(torch.randn(p.shape, generator=g) * p.std())
    return policy, ref


def _logp(model, prompt, completion):
    """(log π(completion + EOS | BOS + prompt), number of scored tokens), from the row run alone."""
    ids = TOK.encode(prompt, bos=True)
    n_prompt = len(ids)
    ids = ids + TOK.encode(completion, eos=True)
    logdist = torch.log_softmax(model(torch.tensor([ids]))[0].float(), -1)
    return sum(logdist[t - 1, ids[t]] for t in range(n_prompt, len(ids))), len(ids) - n_prompt


def _flat_grad(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def _close(got, want, rtol=1e-4):
    return (got - want).norm().item() <= rtol * want.norm().item()


def _far(a, b, rel=0.05):
    return (a - b).norm().item() > rel * b.norm().item()


def _hand_loss(policy, ref, cfg, normalize_nll=True):
    """The paper's loss on PAIRS, by hand: (loss, {"dpo", "nll"} parts where they exist)."""
    pc, pr, nc = [], [], []
    for p in PAIRS:
        lc, n = _logp(policy, p.prompt, p.chosen)
        pc.append(lc)
        nc.append(n)
        pr.append(_logp(policy, p.prompt, p.rejected)[0])
    with torch.no_grad():
        rc = [_logp(ref, p.prompt, p.chosen)[0] for p in PAIRS]
        rr = [_logp(ref, p.prompt, p.rejected)[0] for p in PAIRS]
    h = torch.stack([(a - b) - (c - d) for a, b, c, d in zip(pc, rc, pr, rr)])  # log-ratio gap per pair
    dr = torch.tensor([p.reward_chosen - p.reward_rejected for p in PAIRS])
    beta, eta = cfg.beta, cfg.eta
    if cfg.loss_type in ("dpo", "dpo_nll"):  # Rafailov et al.: −log σ(β h)
        loss = -F.logsigmoid(beta * h).mean()
        if cfg.loss_type == "dpo":
            return loss, {}
        # Pang et al.: + α · mean of −log π(y_c) / |y_c|, |y_c| counting the EOS
        nll = torch.stack([-lc / (n if normalize_nll else 1) for lc, n in zip(pc, nc)]).mean()
        return loss + cfg.alpha * nll, {"dpo": loss.item(), "nll": nll.item()}
    if cfg.loss_type == "rebel":  # Gao et al.: (h / η − (r_c − r_r))²
        return ((h / eta - dr) ** 2).mean(), {}
    g, t = beta * h, eta * dr  # Nemotron-4's RPO: the implicit gap β h against the target η (r_c − r_r)
    if cfg.rpo_divergence == "squared":
        return ((g - t) ** 2).mean(), {}
    p_t, p_g = torch.sigmoid(t), torch.sigmoid(g)  # KL(Bernoulli(σ(t)) ‖ Bernoulli(σ(g)))
    return (p_t * torch.log(p_t / p_g) + (1 - p_t) * torch.log((1 - p_t) / (1 - p_g))).mean(), {}


def _hand_grad(policy, ref, cfg, **kw):
    m = copy.deepcopy(policy).train()
    loss, parts = _hand_loss(m, ref, cfg, **kw)
    loss.backward()
    return loss.item(), parts, _flat_grad(m)


@pytest.mark.parametrize("loss_type, extra", [
    ("dpo", {}), ("dpo_nll", {}), ("dpo_nll", {"alpha": 3.0}), ("rpo", {}), ("rpo", {"rpo_divergence": "squared"}),
    ("rebel", {}),
])
def test_one_preference_update_is_the_papers_gradient(monkeypatch, loss_type, extra):
    policy, ref = _policy_and_ref()
    start = copy.deepcopy(policy)
    opts = _record(monkeypatch, dpo)
    cfg = PreferenceConfig(loss_type=loss_type, beta=0.5, eta=0.25, max_steps=1, batch_size=len(PAIRS),
                           learning_rate=1e-3, warmup_steps=0, eval_every=0, max_grad_norm=1e6, **extra)
    h = dpo.train(policy, PAIRS, cfg, ref=ref, progress=False)
    loss, parts, want = _hand_grad(start, ref, cfg)
    assert h["loss"][0] == pytest.approx(loss, rel=1e-4)
    assert _close(opts[0].grads[0], want)
    if loss_type == "dpo_nll":
        assert h["dpo"][0] == pytest.approx(parts["dpo"], rel=1e-4)
        assert h["nll"][0] == pytest.approx(parts["nll"], rel=1e-4)
        _, unnormalized, wrong = _hand_grad(start, ref, cfg, normalize_nll=False)
        assert unnormalized["nll"] > 2 * parts["nll"] and _far(wrong, want)  # the test can tell them apart


def test_dpo_nll_is_dpo_plus_alpha_times_the_per_token_nll_of_the_chosen(monkeypatch):
    """The NLL part alone: the DPO+NLL gradient minus the DPO gradient is α ∇ mean_i(−log π(y_c,i) / |y_c,i|)."""
    grads = {}
    for loss_type in ("dpo", "dpo_nll"):
        policy, ref = _policy_and_ref()
        opts = _record(monkeypatch, dpo)
        cfg = PreferenceConfig(loss_type=loss_type, beta=0.5, alpha=2.0, max_steps=1, batch_size=len(PAIRS),
                               warmup_steps=0, eval_every=0, max_grad_norm=1e6)
        dpo.train(policy, PAIRS, cfg, ref=ref, progress=False)
        grads[loss_type] = opts[0].grads[0]
    m = copy.deepcopy(_policy_and_ref()[0]).train()
    nll = torch.stack([-lp / n for lp, n in (_logp(m, p.prompt, p.chosen) for p in PAIRS)]).mean()
    (2.0 * nll).backward()
    assert _close(grads["dpo_nll"] - grads["dpo"], _flat_grad(m), rtol=1e-3)


# --------------------------------------------------------------------------- the reward model
def _score(rm, prompt, completion):
    ids = TOK.encode(prompt, bos=True) + TOK.encode(completion) + [EOS_ID]  # BOS prompt completion EOS
    return rm(torch.tensor([ids]))[0]


@pytest.mark.parametrize("use_margin", [False, True])
def test_reward_model_update_is_the_margin_ranking_loss(monkeypatch, use_margin):
    """One step of the reward-model trainer: −log σ(r_c − r_r − m) (Touvron et al. 2023, eq. 2); m = 0 without
    margins."""
    pairs = [PreferencePair(p.prompt, p.chosen, p.rejected, margin=m) for p, m in zip(PAIRS, (3.0, 0.0, 1.0))]
    torch.manual_seed(0)
    rm = RewardModel(TINY)
    start = copy.deepcopy(rm)
    opts = _record(monkeypatch, reward_model)
    cfg = RewardConfig(max_steps=1, batch_size=len(pairs), warmup_steps=0, max_grad_norm=1e6, use_margin=use_margin)
    h = reward_model.train(rm, pairs, cfg, TOK, progress=False)

    def hand(margins):
        m = copy.deepcopy(start).train()
        diff = torch.stack([_score(m, p.prompt, p.chosen) - _score(m, p.prompt, p.rejected) for p in pairs])
        loss = -F.logsigmoid(diff - torch.tensor(margins)).mean()
        loss.backward()
        return loss.item(), _flat_grad(m)

    loss, want = hand([p.margin for p in pairs] if use_margin else [0.0] * 3)
    other_loss, other = hand([0.0] * 3 if use_margin else [p.margin for p in pairs])
    assert abs(other_loss - loss) > 0.1 and _far(other, want)  # margins matter on these pairs
    assert h["loss"][0] == pytest.approx(loss, rel=1e-5)
    assert _close(opts[0].grads[0], want)
    if use_margin:  # a margin only adds pressure: the loss is larger than without it
        assert loss > other_loss
    assert math.isfinite(h["grad_norm"][0])
