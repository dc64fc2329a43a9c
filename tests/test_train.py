import pytest
import torch

from toyenv import GPT, GPTConfig, seed_everything
from toyenv.tasks import reverse_accuracy, reverse_dataset
from toyenv.tokenizer import collate, encode_pairs
from toyenv.trainers import sft
from toyenv.trainers.common import adamw, lr_at, scheduled_lr
from toyenv.trainers.sft import SFTConfig


def _model(seed=0):
    seed_everything(seed)
    return GPT(GPTConfig(block_size=48, n_layer=2, n_head=2, n_embd=32))


def test_prompt_tokens_are_masked(tok):
    examples = encode_pairs([("abc:", "cba"), ("x:", "x")], tok)
    tokens, mask = collate(examples)
    assert tokens.shape == (2, 1 + 4 + 3 + 1)
    # Row 0: BOS a b c : | c b a EOS -> targets are the completion and EOS only.
    assert mask[0].tolist() == [False] * 5 + [True] * 4
    assert mask[1].tolist() == [False] * 3 + [True] * 2 + [False] * 4
    _, full = collate(examples, completion_only=False)
    assert full[0].tolist() == [False] + [True] * 8


def test_completion_loss_scores_only_completion_tokens(tok):
    from toyenv.trainers.common import completion_loss

    model = _model()
    t1, m1 = collate(encode_pairs([("abc:", "cba")], tok))
    full = completion_loss(model, t1, m1)
    # The loss is the mean over the 4 targets (c, b, a, EOS), predicted from positions 4..7.
    logits = model(t1[:, :-1])
    manual = torch.nn.functional.cross_entropy(logits[0, 4:], t1[0, 5:])
    assert torch.allclose(full, manual)


def test_adamw_decays_matrices_only():
    """With zero gradients AdamW's first step is its decoupled decay alone, p <- p (1 - lr wd): 0.95 for lr 0.1 and
    wd 0.5 on the matrix, nothing on the bias and the norm's parameters (GPT-style groups)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    before = [p.detach().clone() for p in model.parameters()]
    opt = adamw(model, 0.1, 0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    (w, b, ln_w, ln_b), (w0, b0, ln_w0, ln_b0) = list(model.parameters()), before
    torch.testing.assert_close(w.detach(), 0.95 * w0)
    for p, p0 in ((b, b0), (ln_w, ln_w0), (ln_b, ln_b0)):
        assert torch.equal(p.detach(), p0)


def test_lr_schedule():
    cfg = SFTConfig(max_steps=100, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert scheduled_lr(0, cfg) == pytest.approx(0.1) and scheduled_lr(9, cfg) == pytest.approx(1.0)
    assert scheduled_lr(10, cfg) == pytest.approx(1.0) and scheduled_lr(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert scheduled_lr(55, cfg) == pytest.approx(0.55)


def test_history_logs_each_steps_learning_rate():
    cfg = SFTConfig(max_steps=4, batch_size=4, warmup_steps=2, learning_rate=0.5, min_lr_ratio=0.2)
    h = sft.train(_model(), reverse_dataset(20), cfg, progress=False)
    # warmup 0.5 * 1/2, 0.5 * 2/2; then the cosine over 2 steps from 0.5 to the floor 0.1: 0.5 at its start, and
    # halfway 0.1 + 0.4 * (1 + cos(π/2)) / 2 = 0.3
    assert h["lr"] == pytest.approx([0.25, 0.5, 0.5, 0.3])


def test_same_seed_same_losses():
    data = reverse_dataset(200, seed=0)
    h1 = sft.train(_model(0), data, SFTConfig(max_steps=8, batch_size=8, seed=3), progress=False)
    h2 = sft.train(_model(0), data, SFTConfig(max_steps=8, batch_size=8, seed=3), progress=False)
    h3 = sft.train(_model(0), data, SFTConfig(max_steps=8, batch_size=8, seed=4), progress=False)
    assert h1["loss"] == h2["loss"]
    assert h1["loss"] != h3["loss"]


def test_sft_learns_reversal(tok):
    seed_everything(0)
    model = GPT(GPTConfig(block_size=48, n_layer=2, n_head=4, n_embd=64))
    data = reverse_dataset(3000, seed=0, max_len=4)
    before = reverse_accuracy(model, tok, reverse_dataset(100, seed=1, max_len=4))
    hist = sft.train(model, data, SFTConfig(max_steps=300, batch_size=32, learning_rate=3e-3), progress=False,
               eval_fn=lambda m: {"acc": reverse_accuracy(m, tok, reverse_dataset(50, seed=1, max_len=4))})
    after = reverse_accuracy(model, tok, reverse_dataset(100, seed=1, max_len=4))
    assert before == 0.0 and after >= 0.5, (before, after)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert hist["step"] == list(range(300)) and hist["tokens"] > 0 and hist["eval"] == []


def test_eval_fn_called_on_schedule():
    calls = []
    sft.train(_model(), reverse_dataset(50), SFTConfig(max_steps=5, batch_size=4, eval_every=2), progress=False,
        eval_fn=lambda m: calls.append(m.training) or {"x": 1})
    assert len(calls) == 4 and not any(calls)  # steps 0, 2, 4, 5 and always in eval mode


def test_initial_eval_replaces_the_step_0_evaluation_and_changes_nothing_else():
    data, cfg = reverse_dataset(50), SFTConfig(max_steps=5, batch_size=4, eval_every=2)
    calls, known = [], {"x": 0}
    h1 = sft.train(_model(), data, cfg, progress=False, eval_fn=lambda m: calls.append(1) or {"x": len(calls)})
    h2 = sft.train(_model(), data, cfg, progress=False, eval_fn=lambda m: {"x": 1}, initial_eval=known)
    assert len(calls) == 4 and h2["eval"][0] == (0, known) and [s for s, _ in h2["eval"]] == [0, 2, 4, 5]
    assert [s for s, _ in h1["eval"]] == [0, 2, 4, 5] and h1["eval"][0] == (0, {"x": 1})
    h3 = sft.train(_model(), data, SFTConfig(max_steps=5, batch_size=4, eval_every=3), progress=False,
                   eval_fn=lambda m: {"x": 1})
    assert [s for s, _ in h3["eval"]] == [0, 3, 5]  # after every eval_every-th step, and after the last
    assert h1["loss"] == h2["loss"]


def test_nan_loss_stops_with_clear_message():
    model = _model()
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="SFT loss became nan at step 0"):
        sft.train(model, reverse_dataset(20), SFTConfig(max_steps=3, batch_size=4), progress=False)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one"):
        sft.train(_model(), [], SFTConfig(max_steps=1), progress=False)
    with pytest.raises(ValueError, match="exceed block_size"):
        sft.train(_model(), [("a" * 60, "b")], SFTConfig(max_steps=1), progress=False)
    with pytest.raises(ValueError, match="learning_rate"):
        SFTConfig(learning_rate=0)


# --------------------------------------------------------------------------- every trainer's progress bar
def _one_step_of(trainer: str, **kwargs):
    """One step of `trainer` on a tiny GPT, with `kwargs` (progress=..., desc=...) passed to its train()."""
    from toyenv.pairs import PreferencePair
    from toyenv.tasks import general_points_task
    from toyenv.trainers import dpo, reward_model, rl

    model = _model()
    if trainer == "sft":
        return sft.train(model, reverse_dataset(4, seed=0), SFTConfig(max_steps=1, batch_size=2, warmup_steps=0),
                         **kwargs)
    pairs = [PreferencePair("a:", "b", "c", reward_chosen=1.0, reward_rejected=0.0),
             PreferencePair("d:", "e", "f", reward_chosen=2.0, reward_rejected=-1.0)]
    if trainer == "reward_model":
        rm = reward_model.RewardModel.from_gpt(model)
        return reward_model.train(rm, pairs, reward_model.RewardConfig(max_steps=1, batch_size=2), **kwargs)
    if trainer.startswith("dpo"):
        cfg = dpo.PreferenceConfig(loss_type=trainer.split(":")[1], max_steps=1, batch_size=2, warmup_steps=0,
                                   eval_every=0)
        return dpo.train(model, pairs, cfg, **kwargs)
    cfg = rl.RLConfig(algorithm=trainer.split(":")[1], max_steps=1, num_prompts=2, num_generations=2,
                      max_new_tokens=2, eval_every=0)
    seed_everything(0)
    policy = GPT(GPTConfig(block_size=96, n_layer=1, n_head=2, n_embd=32))  # room for a GeneralPoints prompt
    return rl.train(policy, general_points_task("ten"), cfg, **kwargs)


@pytest.mark.parametrize("trainer, name", [("sft", "SFT"), ("reward_model", "reward model"), ("dpo:dpo", "dpo"),
                                           ("dpo:rebel", "rebel"), ("rl:rloo", "RL (rloo)"), ("rl:grpo", "RL (grpo)")])
def test_every_trainer_shows_a_named_bar_unless_told_not_to(trainer, name, capsys):
    _one_step_of(trainer)                        # the default: a bar, named for the trainer
    assert f"{name}:" in capsys.readouterr().err
    _one_step_of(trainer, desc="my run")         # a name of the caller's
    err = capsys.readouterr().err
    assert "my run:" in err and f"{name}:" not in err
    _one_step_of(trainer, progress=False)        # none at all
    assert capsys.readouterr().err == ""


def test_epoch_batches_draw_every_epoch_from_the_given_generator():
    """Each epoch's permutation comes from `generator`, not the global stream: re-seeding torch between epochs
    changes nothing, and each epoch visits every index once."""
    from toyenv.trainers.common import epoch_batches

    runs = []
    for global_seed in (1, 2):
        batches = epoch_batches(6, 3, torch.Generator().manual_seed(0))
        run = []
        for _ in range(6):  # three epochs of two batches
            torch.manual_seed(global_seed)
            run.append(list(map(int, next(batches))))
        runs.append(run)
    assert runs[0] == runs[1]
    for epoch in range(3):
        assert sorted(runs[0][2 * epoch] + runs[0][2 * epoch + 1]) == list(range(6))


def test_block_size_counts_the_tokens_the_model_reads():
    """An example of n tokens feeds n − 1 of them to the model: block_size + 1 tokens fit, one more does not.
    BOS + prompt + completion + EOS: 1 + 46 + 1 + 1 = 49 = 48 + 1 tokens."""
    sft.train(_model(), [("a" * 46, "b")], SFTConfig(max_steps=1, batch_size=1), progress=False)
    with pytest.raises(ValueError, match=r"1 example\(s\) exceed block_size 48 \(longest 50 tokens\)"):
        sft.train(_model(), [("a" * 47, "b")], SFTConfig(max_steps=1, batch_size=1), progress=False)


@pytest.mark.parametrize("completion_only_loss, targets", [(True, 3), (False, 6)])
def test_completion_only_loss_chooses_the_targets(completion_only_loss, targets):
    """("abc", "de"): BOS a b c d e EOS. The completion's targets are d, e and EOS (3); without completion_only_loss
    every token after BOS is one (6). history["tokens"] adds them up over the steps: two steps, twice as many."""
    history = sft.train(_model(), [("abc", "de")], SFTConfig(max_steps=2, batch_size=1,
                        completion_only_loss=completion_only_loss), progress=False)
    assert history["tokens"] == 2 * targets
    assert history["config"]["completion_only_loss"] is completion_only_loss  # the config it ran with, kept


def test_the_cosine_reaches_its_floor_at_max_steps_even_with_one_step_after_the_warmup():
    kw = dict(learning_rate=1.0, warmup_steps=4, min_lr_ratio=0.1)
    assert [lr_at(s, max_steps=5, **kw) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 0.1])
    # 4 steps of cosine after the warmup: 1, (1 + cos(π/4))/2, 1/2, (1 − cos(π/4))/2 of the way down to the floor
    c = (1 + 2 ** -0.5) / 2
    assert [lr_at(s, max_steps=8, **kw) for s in range(4, 9)] == pytest.approx(
        [1.0, 0.1 + 0.9 * c, 0.55, 0.1 + 0.9 * (1 - c), 0.1])
    # and stays there past max_steps (a cosine that kept going would climb back up: 0.55 at step 10, 1.0 at 12)
    assert [lr_at(s, max_steps=8, **kw) for s in (9, 12, 100)] == pytest.approx([0.1, 0.1, 0.1])
