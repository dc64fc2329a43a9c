"""toyenv.trainers.dpo: the preference trainer and the tabular DPO optimum."""
import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from toyenv.kl import kl_regularized_optimum
from toyenv.pairs import PreferencePair, general_points_pairs
from toyenv.trainers import dpo
from toyenv.trainers.dpo import LOSS_TYPES, PreferenceConfig, monitor, tabular_dpo

from mutmut_isolation import module_scope_unless_mutmut


@pytest.fixture(scope=module_scope_unless_mutmut)
def pairs():
    return general_points_pairs(24, seed=0)


def _cfg(loss_type, **kw):
    return PreferenceConfig(loss_type=loss_type, max_steps=kw.pop("max_steps", 3), batch_size=8,
                            learning_rate=kw.pop("learning_rate", 1e-3), warmup_steps=0, eval_every=0, **kw)


def test_config_rejects_bad_values():
    for kw in ({"loss_type": "ipo"}, {"beta": 0.0}, {"eta": -1.0}, {"alpha": -0.1}, {"max_steps": 0},
               {"rpo_divergence": "kl"}, {"learning_rate": 0.0}):
        with pytest.raises(ValueError):
            PreferenceConfig(**kw)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_loss_trains_and_is_deterministic(small_model, pairs, loss_type):
    runs = []
    for _ in range(2):
        policy = copy.deepcopy(small_model)
        runs.append(dpo.train(policy, pairs, _cfg(loss_type), monitor_pairs=pairs[:8], progress=False))
    a, b = runs
    assert a["loss"] == b["loss"] and a["eval"] == b["eval"]
    assert len(a["loss"]) == 3 and all(torch.isfinite(torch.tensor(a["loss"])))
    # before training the policy is its own reference: every log-ratio is 0, ties count half
    assert a["eval"][0][1]["margin"] == 0 and a["eval"][0][1]["accuracy"] == 0.5
    assert a["accuracy"][0] == 0.5  # the first step's batch is scored before its update: all ties
    assert [s for s, _ in a["eval"]] == [0, 3]


def test_dpo_widens_the_margin_and_nll_holds_the_chosen_completion_up(small_model, pairs):
    out = {}
    for loss_type, alpha in (("dpo", 0.0), ("dpo_nll", 5.0)):
        policy = copy.deepcopy(small_model)
        h = dpo.train(policy, pairs, _cfg(loss_type, alpha=alpha, max_steps=30, beta=0.5), progress=False,
                             monitor_pairs=pairs)
        out[loss_type] = h["eval"][-1][1]
    assert out["dpo"]["margin"] > 1.0 and out["dpo"]["accuracy"] > 0.8
    # the NLL term is an SFT loss on the chosen answers: they end up likelier than under DPO alone
    assert out["dpo_nll"]["chosen_delta"] > out["dpo"]["chosen_delta"] + 1.0


def test_rpo_and_rebel_need_rewards(small_model):
    plain = [PreferencePair("Cards: 1 2 3 4.\nAnswer: ", "1*2*3*4=24", "1+2=3")]
    for loss_type in ("rpo", "rebel"):
        with pytest.raises(ValueError, match="reward"):
            dpo.train(copy.deepcopy(small_model), plain, _cfg(loss_type), progress=False)
    # DPO only needs the order
    dpo.train(copy.deepcopy(small_model), plain, _cfg("dpo", max_steps=1), progress=False)
    # one missing reward is enough to refuse, and the message names the pair; a pair type without the attribute
    # at all is refused the same way (not with an AttributeError)
    from types import SimpleNamespace
    half = [PreferencePair("c:", "a", "b", strength="better", reward_chosen=5.0, reward_rejected=-1.0),
            SimpleNamespace(prompt="c:", chosen="a", rejected="b", reward_chosen=5.0, reward_rejected=None)]
    no_attr = [SimpleNamespace(prompt="c:", chosen="a", rejected="b", reward_chosen=5.0)]
    no_chosen = [SimpleNamespace(prompt="c:", chosen="a", rejected="b", reward_rejected=1.0)]
    for bad in (half, no_attr, no_chosen):
        with pytest.raises(ValueError, match=r"^pairs\[%d\] has no reward_chosen / reward_rejected: RPO and REBEL "
                           r"regress on reward gaps, so they need graded pairs \(toyenv.pairs.general_points_pairs\)$"
                           % (len(bad) - 1)):
            dpo.train(copy.deepcopy(small_model), bad, _cfg("rpo"), progress=False)


def test_train_preference_rejects_empty_data(small_model):
    with pytest.raises(ValueError, match="at least one"):
        dpo.train(small_model, [], progress=False)


def test_monitor_is_zero_against_itself(small_model, pairs):
    from toyenv.trainers.dpo import _all_logprobs

    ref = _all_logprobs(small_model, pairs, None)
    m = monitor(small_model, ref, pairs)
    assert m["chosen_delta"] == 0 and m["rejected_delta"] == 0 and m["margin"] == 0
    assert m["chosen_logp"] < 0 and m["rejected_logp"] < 0


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_tabular_dpo_reaches_the_kl_regularized_optimum(beta):
    ref = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    r = torch.tensor([0.0, 1.0, 0.5, 2.0, -1.0])
    got = tabular_dpo(ref, r, beta, steps=2000).exp()
    want = kl_regularized_optimum(ref, r, beta).exp()
    assert torch.allclose(got, want, atol=2e-3), (got, want)
    assert not torch.allclose(got, torch.softmax(ref, -1), atol=0.05)  # it moved


def test_tabular_dpo_rejects_bad_input():
    with pytest.raises(ValueError, match="^beta must be > 0, got 0.0$"):
        tabular_dpo(torch.zeros(3), torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"^ref_logits and rewards must both be \(K,\), got \(3,\) and \(4,\)$"):
        tabular_dpo(torch.zeros(3), torch.zeros(4), 1.0)


def test_graded_pairs_carry_rewards_for_rpo(pairs):
    assert all(isinstance(p, PreferencePair) and p.reward_chosen >= p.reward_rejected for p in pairs)


def test_the_reference_is_left_as_it_was(small_model, pairs):
    ref = copy.deepcopy(small_model)
    before = [p.detach().clone() for p in ref.parameters()]
    policy = copy.deepcopy(small_model)
    dpo.train(policy, pairs, _cfg("dpo"), ref=ref, progress=False)
    assert all(p.requires_grad for p in ref.parameters())  # a copy of it can still be trained afterwards
    assert all(torch.equal(a, b) for a, b in zip(before, ref.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_logratio_gaps_is_zero_for_the_reference_and_matches_monitor(small_model, pairs):
    from toyenv.trainers.dpo import _all_logprobs, logratio_gaps

    assert torch.equal(logratio_gaps(small_model, small_model, pairs), torch.zeros(len(pairs)))
    policy = copy.deepcopy(small_model)
    dpo.train(policy, pairs, _cfg("dpo"), progress=False)
    h = logratio_gaps(policy, small_model, pairs)
    m = monitor(policy, _all_logprobs(small_model, pairs, None), pairs)
    assert abs(float(h.mean()) - m["margin"]) < 1e-5


def _hand_logp(model, tok, prompt, completion):
    """log π(completion | prompt) by hand: BOS prompt completion EOS, the log-softmax of each position's logits at
    the token that follows, summed over the completion and its EOS."""
    ids_p = tok.encode(prompt, bos=True)
    ids = ids_p + tok.encode(completion, eos=True)
    with torch.no_grad():
        logdist = torch.log_softmax(model(torch.tensor([ids]))[0], -1)
    return sum(logdist[t - 1, ids[t]].item() for t in range(len(ids_p), len(ids)))


def test_dpo_nll_logs_the_length_normalized_nll_of_the_chosen(small_model):
    """history["nll"] of the first step is mean_i −log π(y_c,i) / |y_c,i| (|y_c| counts the EOS), by hand; chosen
    answers of 1 and 9 characters, so a sum instead of a per-token mean is far off."""
    from toyenv import Tokenizer

    tok = Tokenizer()
    few = [PreferencePair("ab:", "b", "bb"), PreferencePair("abcd:", "dcba+dcba", "x")]
    nll = [-_hand_logp(small_model, tok, p.prompt, p.chosen) / len(tok.encode(p.chosen, eos=True)) for p in few]
    h = dpo.train(copy.deepcopy(small_model), few, _cfg("dpo_nll", max_steps=1), progress=False)
    assert h["nll"][0] == pytest.approx(sum(nll) / 2, rel=1e-4)
    assert h["dpo"][0] == pytest.approx(math.log(2), rel=1e-6)  # the policy starts as its own reference: h = 0
    assert h["loss"][0] == pytest.approx(math.log(2) + sum(nll) / 2, rel=1e-4)  # alpha = 1


def test_the_logged_accuracy_is_the_share_of_pairs_whose_implicit_reward_margin_is_positive(small_model):
    """history["accuracy"] of the first step, by hand: a pair is ranked right when
    (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r)) > 0, with log-probs summed over each completion
    here from the models' logits. The policy is the reference with its weights nudged, so the margins are not 0."""
    from toyenv import Tokenizer

    tok = Tokenizer()
    three = [PreferencePair("ab:", "b", "bb"), PreferencePair("abcd:", "dcba", "x"), PreferencePair("c:", "1+2", "3*4")]
    policy = copy.deepcopy(small_model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))

    gap = {m: [] for m in ("right", "summed")}
    for p in three:
        c = _hand_logp(policy, tok, p.prompt, p.chosen) - _hand_logp(small_model, tok, p.prompt, p.chosen)
        r = _hand_logp(policy, tok, p.prompt, p.rejected) - _hand_logp(small_model, tok, p.prompt, p.rejected)
        gap["right"].append(c - r)
        gap["summed"].append(c + r)  # a sign slip this test must tell apart
    share = {m: sum(g > 0 for g in gaps) / 3 for m, gaps in gap.items()}
    assert share["right"] != share["summed"], (share, gap)
    cfg = PreferenceConfig(loss_type="dpo", max_steps=1, batch_size=3, warmup_steps=0, eval_every=0)
    h = dpo.train(copy.deepcopy(policy), three, cfg, ref=small_model, progress=False)
    assert h["accuracy"][0] == share["right"]


def test_history_keeps_the_config_the_eval_and_the_schedule_the_optimizer_used(small_model, pairs, monkeypatch):
    """history["config"] is the config as a dict; eval_fn sees the policy being trained and its numbers land in
    history["eval"]; and the learning rate on the optimizer at each step is the scheduled one the history logs
    (warmup: it changes from step to step, so a schedule that never reached the optimizer would show)."""
    from dataclasses import asdict

    from recording import RecordingSGD

    opts = []
    monkeypatch.setattr(dpo, "adamw", lambda model, lr, wd: opts.append(RecordingSGD(model)) or opts[-1])
    policy = copy.deepcopy(small_model)
    seen = []
    cfg = PreferenceConfig(loss_type="dpo", max_steps=3, batch_size=4, learning_rate=1e-3, warmup_steps=3,
                           eval_every=0)
    h = dpo.train(policy, pairs, cfg, eval_fn=lambda m: seen.append(m) or {"probe": 7.0}, progress=False)
    assert h["config"] == asdict(cfg)
    assert seen and all(m is policy for m in seen) and all(row["probe"] == 7.0 for _, row in h["eval"])
    assert opts[0].lrs == h["lr"] and len(set(h["lr"])) == 3


def test_each_epoch_visits_every_pair_once(small_model, monkeypatch):
    """batch_size 1 and 4 pairs with different chosen answers, over 3 epochs, with an optimizer that moves nothing:
    each step's logged chosen log-prob is one pair's (scored independently), and each epoch of 4 steps logs every
    pair exactly once."""
    from recording import RecordingSGD
    from toyenv.trainers.dpo import pair_logprobs

    monkeypatch.setattr(dpo, "adamw", lambda model, lr, wd: RecordingSGD(model))
    four = [PreferencePair("c:", chosen, "x") for chosen in ("1+2", "3*4", "56-7", "8/9+10")]
    policy = copy.deepcopy(small_model)
    want = pair_logprobs(policy, four)[0].tolist()
    assert len({round(w, 4) for w in want}) == 4
    cfg = PreferenceConfig(loss_type="dpo", max_steps=12, batch_size=1, warmup_steps=0, eval_every=0, seed=5)
    got = dpo.train(policy, four, cfg, progress=False)["chosen_logp"]
    for epoch in range(3):
        seen = sorted(round(g, 4) for g in got[4 * epoch: 4 * epoch + 4])
        assert seen == sorted(round(w, 4) for w in want), epoch


def test_tabular_dpo_takes_integer_rewards_and_logits():
    ref = torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64)
    want = tabular_dpo(ref, torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), 1.0, steps=50)
    assert torch.equal(tabular_dpo(ref, [0, 1, 2], 1.0, steps=50), want)
    assert torch.equal(tabular_dpo([1, 0, -1], [0, 1, 2], 1.0, steps=50),
                       tabular_dpo(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64), [0, 1, 2], 1.0, steps=50))


def test_the_default_reference_is_a_frozen_copy_of_the_starting_policy(small_model, pairs):
    """ref=None trains, and monitors, exactly as an explicit copy of the policy made before training would."""
    implicit = copy.deepcopy(small_model)
    explicit = copy.deepcopy(small_model)
    h1 = dpo.train(implicit, pairs, _cfg("dpo", learning_rate=1e-2), monitor_pairs=pairs[:4], progress=False)
    h2 = dpo.train(explicit, pairs, _cfg("dpo", learning_rate=1e-2), ref=copy.deepcopy(small_model),
                   monitor_pairs=pairs[:4], progress=False)
    assert h1["loss"] == h2["loss"] and h1["loss"][-1] != h1["loss"][0]
    assert h1["eval"] == h2["eval"] and h1["eval"][-1][1]["chosen_delta"] != 0  # measured against the start
    assert all(torch.equal(a, b) for a, b in zip(implicit.parameters(), explicit.parameters()))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_the_history_has_one_number_per_step_in_every_list(small_model, pairs, loss_type):
    history = dpo.train(copy.deepcopy(small_model), pairs, _cfg(loss_type, max_steps=2), progress=False)
    assert history["step"] == [0, 1]
    for key in ("loss", "accuracy", "chosen_logp", "rejected_logp", "lr", "grad_norm", "dpo", "nll"):
        assert len(history[key]) == 2 and all(isinstance(v, float) for v in history[key]), key
    assert all(v < 0 for v in history["chosen_logp"] + history["rejected_logp"])  # log-probs of whole sequences
    split = loss_type == "dpo_nll"  # only DPO+NLL logs its two parts; the others log NaN there
    assert all(math.isnan(v) != split for v in history["dpo"] + history["nll"])


def test_the_monitor_runs_before_training_every_eval_every_steps_and_after_the_last(small_model, pairs):
    cfg = PreferenceConfig(loss_type="dpo", max_steps=7, batch_size=4, learning_rate=1e-3, warmup_steps=0,
                           eval_every=3)
    h = dpo.train(copy.deepcopy(small_model), pairs, cfg, eval_fn=lambda m: {"probe": 1.0}, progress=False)
    assert [s for s, _ in h["eval"]] == [0, 3, 6, 7]


def test_tabular_dpo_follows_adam_on_the_expected_loss_step_by_step():
    """Before convergence the path depends on how often each pair is drawn (π_ref(i) π_ref(j), i ≠ j) and on the
    labels' probabilities σ(r_i − r_j): 30 Adam steps on the expected loss of the docstring, written out here with
    loops over the pairs, land where tabular_dpo does. (At convergence any positive pair weights give the same π*.)"""
    ref = torch.tensor([1.0, 0.0, -0.5, 0.3], dtype=torch.float64)
    r = torch.tensor([0.0, 1.0, 2.0, -1.0], dtype=torch.float64)
    beta, lr, steps = 0.7, 0.05, 30
    ref_logp = torch.log_softmax(ref, -1)
    logits = ref_logp.clone().requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        logp = torch.log_softmax(logits, -1)
        loss = 0.0
        for i, j in itertools.permutations(range(4), 2):
            h = (logp[i] - ref_logp[i]) - (logp[j] - ref_logp[j])
            p_ij = 1 / (1 + math.exp(-(r[i] - r[j]).item()))
            w = math.exp(ref_logp[i].item() + ref_logp[j].item())
            loss = loss - w * (p_ij * F.logsigmoid(beta * h) + (1 - p_ij) * F.logsigmoid(-beta * h))
        opt.zero_grad()
        loss.backward()
        opt.step()
    want = torch.log_softmax(logits.detach(), -1).float()
    assert torch.allclose(tabular_dpo(ref, r, beta, steps=steps, lr=lr), want, atol=1e-6)
