"""toyenv.two_tasks, the classifier world of RL's Razor's own kind of toy: glyphs and data, the targets SFT imitates,
one exact update of each trainer, and the exact measures, each against a hand computation or an independent
implementation written here."""
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toyenv import two_tasks as T


class FixedLogits(torch.nn.Module):
    """A 'model' that returns the same given logits whatever the input (one row per input)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float32)

    def forward(self, x):
        return self.logits[: len(x)]


def _data(digits, labels=None, task=T.NEW):
    digits = torch.tensor(digits)
    labels = digits if labels is None else torch.tensor(labels)
    return T.Data(torch.zeros(len(digits), 65), labels, digits, task)


# ----------------------------------------------------------------------------------------------------------- data
def test_seven_segment_glyphs_and_the_segment_count_by_hand():
    # lit segments of 0..9 on a seven-segment display, counted by hand
    assert T.SEGMENT_COUNT.tolist() == [6, 2, 5, 5, 4, 5, 6, 3, 7, 6]
    # pixels per segment: a 4, b 2, c 3, d 4, e 3, f 2, g 4: "8" lights all 22, "1" (b, c) 5, "7" (a, b, c) 9
    clean = T.make_data(T.NEW, 300, seed=0, noise=0.0)
    lit = (clean.x[:, :64] != 0).sum(1)
    for digit, pixels in ((8, 22), (1, 5), (7, 9), (0, 18)):
        assert (lit[clean.digit == digit] == pixels).all()


def test_make_data_shapes_flags_labels_and_seeds():
    new = T.make_data(T.NEW, 50, seed=1)
    shapes = T.make_data(T.OLD_SHAPES, 50, seed=1)
    shared = T.make_data(T.OLD_SHARED, 50, seed=1)
    assert new.x.shape == (50, 65) and len(new) == 50
    assert (new.x[:, 64] == 1).all() and (shapes.x[:, 64] == -1).all() and (shared.x[:, 64] == -1).all()
    assert torch.equal(new.label, new.digit)                            # pretraining teaches the digit itself
    assert (shapes.digit == -1).all() and shapes.label.max() <= 9      # shapes are no digits
    assert torch.equal(shared.label, torch.tensor(T.SEGMENT_COUNT)[shared.digit])
    assert torch.equal(T.make_data(T.NEW, 50, seed=1).x, new.x)       # seeded ...
    assert not torch.equal(T.make_data(T.NEW, 50, seed=2).x, new.x)   # ... and the seed matters
    assert not torch.equal(shared.x[:, :64], new.x[:, :64])           # the two tasks' streams differ
    clean = T.make_data(T.NEW, 200, seed=0, noise=0.0)
    ink = clean.x[:, :64].max(1).values
    assert (ink >= 0.5).all() and (ink <= 1.5).all()
    with pytest.raises(ValueError, match="task must be one of"):
        T.make_data("fashion", 5, seed=0)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        T.make_data(T.NEW, 0, seed=0)


def test_correct_labels_share_the_digits_parity():
    ok = T.correct_mask(torch.tensor([3, 4]))
    assert ok[0].nonzero().flatten().tolist() == [1, 3, 5, 7, 9]
    assert ok[1].nonzero().flatten().tolist() == [0, 2, 4, 6, 8]


# -------------------------------------------------------------------------------------------------------- targets
def test_target_distributions_by_hand():
    data = _data([4, 7])
    uniform = FixedLogits(torch.zeros(2, 10))
    one = T.target_distribution("one label per parity", data, uniform)
    assert one[0].tolist() == [1.0] + [0.0] * 9 and one[1].tolist() == [0.0, 1.0] + [0.0] * 8
    two = T.target_distribution("two labels per parity", data, uniform)
    assert two[0].nonzero().flatten().tolist() == [0, 2] and two[1].nonzero().flatten().tolist() == [1, 3]
    assert two[0, 0] == two[0, 2] == 0.5
    anyone = T.target_distribution("any correct label", data, uniform)
    assert torch.allclose(anyone[1], torch.tensor([0.0, 0.2] * 5))
    digit = T.target_distribution("the digit itself", data, uniform)
    assert digit[0, 4] == 1 and digit[1, 7] == 1 and digit.sum() == 2
    # the oracle: π0 restricted to the right parity and renormalized, here π0 ∝ (1, 2, ..., 10) on both rows
    p0 = torch.arange(1.0, 11.0)
    oracle = T.target_distribution("oracle", data, FixedLogits(torch.log(p0).repeat(2, 1)))
    evens, odds = p0[0::2].sum(), p0[1::2].sum()   # 25 and 30
    assert oracle[0, 8] == pytest.approx(9 / evens) and oracle[0, 1] == 0
    assert oracle[1, 9] == pytest.approx(10 / odds) and oracle[1, 0] == 0
    for q in (one, two, anyone, digit, oracle):
        assert torch.allclose(q.sum(1), torch.ones(2)) and (q[~T.correct_mask(data.digit)] == 0).all()
    with pytest.raises(ValueError, match="target must be one of"):
        T.target_distribution("best", data, uniform)


def test_sft_labels_are_drawn_once_from_the_target():
    data = T.make_data(T.NEW, 400, seed=0)
    base = T.Classifier()
    labels = T.sft_labels("two labels per parity", data, base, seed=5)
    assert torch.equal(labels, T.sft_labels("two labels per parity", data, base, seed=5))
    assert set(labels[data.digit % 2 == 0].tolist()) == {0, 2} and set(labels[data.digit % 2 == 1].tolist()) == {1, 3}
    assert 0.4 < (labels == 0).float().sum() / (data.digit % 2 == 0).sum() < 0.6


# ------------------------------------------------------------------------------------------------------- training
def _adam_first_step(grads, lr):
    """Adam's first update, bias-corrected: m̂ = g and v̂ = g², so Δθ = −lr · g / (|g| + 1e-8)."""
    return [-lr * g / (g.abs() + 1e-8) for g in grads]


def test_one_sft_step_is_adams_first_step_on_the_cross_entropy():
    data = T.make_data(T.NEW, 40, seed=0)
    torch.manual_seed(0)
    model = T.Classifier(hidden=8)
    before = [p.detach().clone() for p in model.parameters()]
    # the hand-written loss: cross-entropy on the parity labels (one label per parity: even -> 0, odd -> 1)
    loss = F.cross_entropy(model(data.x), data.digit % 2)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    T.sft(model, data, T.SFTConfig(target="one label per parity", learning_rate=0.01, epochs=1, batch_size=40))
    for p, b, d in zip(model.parameters(), before, _adam_first_step(grads, 0.01)):
        assert torch.allclose(p - b, d, atol=1e-6)


@pytest.mark.parametrize("beta, baseline", [(0.0, True), (0.0, False), (0.5, True)])
def test_one_rl_step_is_adams_first_step_on_the_policy_gradient_loss(beta, baseline):
    """The samples are drawn as the trainer draws them (prompt indices, then labels, from one seeded generator);
    the loss is written here: reward 1[right parity], advantage minus the group mean (or the raw reward without a
    baseline), −mean(A · log π(a)), plus beta times the exact KL(π ‖ π0) averaged over the images."""
    data = T.make_data(T.NEW, 30, seed=0)
    torch.manual_seed(0)
    model, ref = T.Classifier(hidden=8), T.Classifier(hidden=8)
    before = [p.detach().clone() for p in model.parameters()]
    gen = torch.Generator().manual_seed(7)
    idx = torch.randint(30, (6,), generator=gen)
    logp = F.log_softmax(model(data.x[idx]), -1)
    actions = torch.multinomial(logp.detach().exp(), 4, replacement=True, generator=gen)
    reward = ((actions % 2) == (data.digit[idx, None] % 2)).float()
    advantage = reward - reward.mean(1, keepdim=True) if baseline else reward
    loss = -(advantage * logp.gather(1, actions)).mean()
    ref_logp = F.log_softmax(ref(data.x[idx]), -1).detach()
    loss = loss + beta * (logp.exp() * (logp - ref_logp)).sum(-1).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    cfg = T.RLConfig(learning_rate=0.01, max_steps=1, num_prompts=6, num_generations=4, beta=beta,
                     baseline=baseline, seed=7)
    T.rl(model, data, cfg, base=ref)
    for p, b, d in zip(model.parameters(), before, _adam_first_step(grads, 0.01)):
        assert torch.allclose(p - b, d, atol=1e-6)


def test_fine_tuning_does_what_it_is_told():
    base = T.pretrain([T.make_data(T.NEW, 200, seed=0), T.make_data(T.OLD_SHAPES, 300, seed=0)])
    new, held = T.make_data(T.NEW, 500, seed=2), T.make_data(T.NEW, 500, seed=1)  # images pretraining never saw
    start = T.accuracy(base, held)
    sft = T.sft(_copy(base), new, T.SFTConfig(target="one label per parity", learning_rate=3e-3, epochs=5))
    answers = sft(held.x).argmax(-1)
    assert (answers <= 1).float().mean() > 0.95                         # it answers 0 or 1, as taught
    rl = T.rl(_copy(base), new, T.RLConfig(learning_rate=3e-3, max_steps=200))
    assert T.accuracy(rl, held) > start + 0.03                           # RL raises the reward it is given
    assert not base.training and not rl.training


def _copy(model):
    import copy
    return copy.deepcopy(model)


def test_trainers_refuse_bad_settings_and_stop_on_divergence():
    data = T.make_data(T.NEW, 20, seed=0)
    with pytest.raises(ValueError, match="SFTConfig.learning_rate must be a finite number > 0"):
        T.SFTConfig(learning_rate=-1)
    with pytest.raises(ValueError, match="SFTConfig.target must be one of"):
        T.SFTConfig(target="mine")
    with pytest.raises(ValueError, match="RLConfig.beta must be a finite number >= 0"):
        T.RLConfig(beta=float("nan"))
    with pytest.raises(ValueError, match="RLConfig.num_generations must be an integer >= 1"):
        T.RLConfig(num_generations=0)
    with pytest.raises(ValueError, match="PretrainConfig.new_examples"):
        T.PretrainConfig(new_examples=1.5)
    with pytest.raises(ValueError, match="needs base"):
        T.sft(T.Classifier(), data, T.SFTConfig(target="oracle"))
    with pytest.raises(ValueError, match="needs base"):
        T.rl(T.Classifier(), data, T.RLConfig(beta=0.1))
    with pytest.raises(FloatingPointError, match="learning rate"):
        T.sft(T.Classifier(), data, T.SFTConfig(learning_rate=1e200, epochs=20, batch_size=5))


# ------------------------------------------------------------------------------------------------------- measures
def test_accuracy_counts_parity_on_the_new_task_and_the_label_on_the_old():
    logits = torch.full((4, 10), -5.0)
    logits[[0, 1, 2, 3], [2, 3, 5, 4]] = 5.0        # answers 2, 3, 5, 4
    model = FixedLogits(logits)
    # digits 0, 1, 2, 4: 2 has 0's parity, 3 has 1's, 5 not 2's, 4 has 4's
    assert T.accuracy(model, _data([0, 1, 2, 4])) == 0.75
    # the old task wants the exact label: 2 and 3 right, 5 and 4 wrong
    assert T.accuracy(model, _data([0, 1, 2, 4], labels=[2, 3, 0, 0], task=T.OLD_SHARED)) == 0.5


def test_divergences_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 10)), 2 * rng.normal(size=(3, 10))
    p0 = np.exp(a) / np.exp(a).sum(1, keepdims=True)
    p = np.exp(b) / np.exp(b).sum(1, keepdims=True)
    got = T.divergences(FixedLogits(a), FixedLogits(b), torch.zeros(3, 65))
    assert got["forward_kl"] == pytest.approx(np.mean((p0 * np.log(p0 / p)).sum(1)), rel=1e-5)
    assert got["reverse_kl"] == pytest.approx(np.mean((p * np.log(p / p0)).sum(1)), rel=1e-5)
    assert got["total_variation"] == pytest.approx(np.mean(0.5 * np.abs(p - p0).sum(1)), rel=1e-5)
    assert got["forward_kl"] != pytest.approx(got["reverse_kl"], rel=1e-2)   # the two directions differ here
    same = T.divergences(FixedLogits(a), FixedLogits(a), torch.zeros(3, 65))
    assert all(v == pytest.approx(0, abs=1e-6) for v in same.values())


def test_the_oracle_is_finite_in_one_direction_only():
    """Row 1: π0 uniform, so π0(correct) = 1/2 and KL(q ‖ π0) = log 2. Row 2 (an odd digit): π0 gives the odd
    labels 0.16 each, 0.8 in all, so KL(q ‖ π0) = −log 0.8. KL(π0 ‖ q) is infinite: π0 gives wrong labels mass."""
    p = torch.tensor([[0.04, 0.16] * 5])
    base = FixedLogits(torch.cat([torch.zeros(1, 10), torch.log(p)]))
    got = T.oracle_kl(base, _data([2, 5]))
    assert got["kl_oracle_base"] == pytest.approx((math.log(2) - math.log(0.8)) / 2, rel=1e-5)
    assert got["kl_base_oracle"] == math.inf
    # a base model that never errs is its own oracle: both directions 0
    sure = torch.full((1, 10), -1e4)
    sure[0, 4] = 0.0
    assert T.oracle_kl(FixedLogits(sure), _data([8])) == {"kl_oracle_base": 0.0, "kl_base_oracle": 0.0}


def test_fisher_diagonal_against_a_loop_over_examples_and_labels():
    """E_x Σ_y π0(y|x) (∂ log π0(y|x)/∂θ)², here with one backward pass per (image, label)."""
    torch.manual_seed(0)
    model = T.Classifier(hidden=4)
    x = T.make_data(T.NEW, 3, seed=0).x
    want = [torch.zeros_like(p) for p in model.parameters()]
    for xi in x:
        logp = F.log_softmax(model(xi[None])[0], -1)
        for y in range(10):
            grads = torch.autograd.grad(logp[y], list(model.parameters()), retain_graph=True)
            for w, g in zip(want, grads):
                w += logp[y].exp().detach() * g ** 2 / len(x)
    got = T.fisher_diagonal(model, x, chunk=2)   # two chunks: 2 images, then 1
    assert all(torch.allclose(g, w, rtol=1e-5, atol=1e-9) for g, w in zip(got, want))


def test_activation_change_by_hand():
    torch.manual_seed(0)
    base = T.Classifier(hidden=4)
    with torch.no_grad():
        base.body[2].bias += 100.0          # every last-layer unit on for these images: the ReLU is the identity
    moved = _copy(base)
    with torch.no_grad():
        moved.body[2].bias += torch.tensor([30.0, 40.0, 0.0, 0.0])
    x = T.make_data(T.NEW, 5, seed=0).x
    assert (base.features(x) > 0).all()
    # each image's last-layer activations move by exactly (30, 40, 0, 0): 50
    assert T.activation_change(moved, base, x) == pytest.approx(50.0, rel=1e-5)
    assert T.activation_change(base, base, x) == 0.0


@pytest.mark.parametrize("config, field, refused, accepted", [
    (T.PretrainConfig, "new_examples", [0, 1.5, True], [1]),
    (T.PretrainConfig, "old_examples", [0, 2.0], [1]),
    (T.PretrainConfig, "epochs", [0], [1]),
    (T.PretrainConfig, "batch_size", [0], [1]),
    (T.PretrainConfig, "hidden", [0], [1]),
    (T.PretrainConfig, "seed", [1.5, "0", None], [0, -3]),
    (T.PretrainConfig, "learning_rate", [0, -1e-3, float("inf"), float("nan")], [0.5, 1e-9]),
    (T.SFTConfig, "epochs", [0], [1]),
    (T.SFTConfig, "batch_size", [0], [1]),
    (T.SFTConfig, "seed", [1.5], [0, -3]),
    (T.SFTConfig, "learning_rate", [0, float("nan")], [0.5]),
    (T.RLConfig, "max_steps", [0], [1]),
    (T.RLConfig, "num_prompts", [0], [1]),
    (T.RLConfig, "num_generations", [0], [1]),
    (T.RLConfig, "seed", [1.5], [0]),
    (T.RLConfig, "learning_rate", [0, float("inf")], [0.5]),
    (T.RLConfig, "beta", [-0.1, float("nan")], [0, 0.0, 2.5]),
    (T.RLConfig, "baseline", ["no", 1, None], [True, False]),
])
def test_every_setting_is_refused_outside_its_range_with_its_name(config, field, refused, accepted):
    for value in refused:
        with pytest.raises(ValueError, match=rf"^{config.__name__}\.{field} must be .*, got {re.escape(repr(value))}"):
            config(**{field: value})
    for value in accepted:
        assert getattr(config(**{field: value}), field) == value


def test_pretraining_is_minibatch_adam_in_an_order_drawn_from_its_own_seed():
    """pretrain written out here: the model initialised under torch.manual_seed(seed), the union of the tasks, and
    each epoch's order a permutation from a torch.Generator seeded with the same seed; Adam at the config's rate."""
    tasks = [T.make_data(T.NEW, 9, seed=0), T.make_data(T.OLD_SHAPES, 8, seed=0)]
    cfg = T.PretrainConfig(epochs=2, batch_size=5, learning_rate=0.03, hidden=8, seed=4)
    got = T.pretrain(tasks, cfg)
    torch.manual_seed(4)
    want = T.Classifier(8)
    x, y = torch.cat([t.x for t in tasks]), torch.cat([t.label for t in tasks])
    opt = torch.optim.Adam(want.parameters(), lr=0.03)
    gen = torch.Generator().manual_seed(4)
    for _ in range(2):
        order = torch.randperm(17, generator=gen)
        for start in range(0, 17, 5):  # batches of 5, 5, 5 and 2
            idx = order[start:start + 5]
            opt.zero_grad()
            F.cross_entropy(want(x[idx]), y[idx]).backward()
            opt.step()
    for p, q in zip(got.parameters(), want.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12)
    assert not got.training


def test_diverging_pretraining_names_its_step_and_learning_rate():
    tasks = [T.make_data(T.NEW, 20, seed=0)]
    with pytest.raises(FloatingPointError) as err:
        T.pretrain(tasks, T.PretrainConfig(epochs=5, batch_size=5, learning_rate=1e200, hidden=8))
    message = str(err.value)
    step = int(re.search(r"at step (\d+)", message).group(1))
    assert message.startswith("pretraining ") and "learning_rate=1e+200" in message
    # the first step starts from finite weights, so it cannot be the one that diverges; count the steps again here
    assert 2 <= step <= 5 * 4
    cfg = T.PretrainConfig(epochs=5, batch_size=5, learning_rate=1e200, hidden=8)
    torch.manual_seed(cfg.seed)
    model = T.Classifier(8)
    opt = torch.optim.Adam(model.parameters(), lr=1e200)
    gen, n = torch.Generator().manual_seed(cfg.seed), 0
    finite = True
    while finite:
        order = torch.randperm(20, generator=gen)
        for start in range(0, 20, 5):
            n += 1
            loss = F.cross_entropy(model(tasks[0].x[order[start:start + 5]]), tasks[0].label[order[start:start + 5]])
            opt.zero_grad()
            loss.backward()
            grad = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
            if not (torch.isfinite(loss) and torch.isfinite(grad)):
                finite = False
                break
            opt.step()
    assert step == n


def test_the_old_tasks_shapes_by_hand():
    """Ink per clean shape, counted by hand on the 8x8 grid: solid square rows/cols 2..5 (16), hollow square on
    rows/cols 1 and 6 between 1 and 6 (4 * 6 - 4 = 20), plus on row and column 3 (15), X on both diagonals (16),
    stripes every third row or column (3 * 8 = 24 each), checkerboard (32), the main diagonal (8)."""
    clean = T.make_data(T.OLD_SHAPES, 400, seed=0, noise=0.0)
    ink = (clean.x[:, :64] != 0).sum(1)
    for label, pixels in {0: 16, 1: 20, 2: 15, 3: 16, 4: 24, 5: 24, 6: 32, 9: 8}.items():
        assert (clean.label == label).any() and (ink[clean.label == label] == pixels).all(), label


_SHAPES_BY_HAND = """
........ ........ ...#.... #......# ######## #..#..#. #.#.#.#. ........ ........ #.......
........ .######. ...#.... .#....#. ........ #..#..#. .#.#.#.# ...##... ..####.. .#......
..####.. .#....#. ...#.... ..#..#.. ........ #..#..#. #.#.#.#. ..####.. .##..##. ..#.....
..####.. .#....#. ######## ...##... ######## #..#..#. .#.#.#.# ..####.. .#....#. ...#....
..####.. .#....#. ...#.... ...##... ........ #..#..#. #.#.#.#. .######. .#....#. ....#...
..####.. .#....#. ...#.... ..#..#.. ........ #..#..#. .#.#.#.# .######. .##..##. .....#..
........ .######. ...#.... .#....#. ######## #..#..#. #.#.#.#. ######## ..####.. ......#.
........ ........ ...#.... #......# ........ #..#..#. .#.#.#.# ######## ........ .......#
"""


def test_the_old_tasks_glyphs_drawn_by_hand():
    """The ten shapes pixel by pixel, drawn here from their description (solid square, hollow square, plus, X,
    stripes across, stripes down, checkerboard, triangle, ring, diagonal): the ink counts above cannot see a plus
    moved one row down or a checkerboard inverted."""
    rows = [line.split() for line in _SHAPES_BY_HAND.strip().splitlines()]
    want = np.array([[[ch == "#" for ch in row[k]] for row in rows] for k in range(10)], dtype=float)
    got = T._shape_glyphs()
    assert got.shape == (10, 8, 8)
    for k in range(10):
        assert np.array_equal(got[k], want[k]), f"shape {k}"


def test_diverging_fine_tuning_names_the_trainer_and_the_quantity():
    data = T.make_data(T.NEW, 20, seed=0)
    with pytest.raises(FloatingPointError) as err:
        T.sft(T.Classifier(hidden=8), data, T.SFTConfig(learning_rate=1e200, epochs=20, batch_size=5))
    message = str(err.value)
    assert re.match(r"SFT (loss|gradient norm) became (nan|inf) at step \d+ \(learning_rate=1e\+200\)", message), message
    with pytest.raises(FloatingPointError) as err:
        T.rl(T.Classifier(hidden=8), data, T.RLConfig(learning_rate=1e200, max_steps=20, num_prompts=5))
    # the diverged weights give NaN log-probs before any loss: named here, not by torch.multinomial's complaint
    assert re.match(r"RL log-probabilities became nan at step \d+ \(learning_rate=1e\+200\)", str(err.value)), str(err.value)
    # finite log-probs but a NaN loss (a broken reference): the loss check names it, with its step
    nan_base = FixedLogits(torch.full((5, 10), float("nan")))
    with pytest.raises(FloatingPointError, match=r"^RL loss became nan at step 1 \(learning_rate=0\.001\)"):
        T.rl(T.Classifier(hidden=8), data, T.RLConfig(beta=0.1, max_steps=3, num_prompts=5), base=nan_base)
    # a finite loss whose gradient is not: sqrt at 0 has an infinite slope
    w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    model = torch.nn.Module()
    model.w = w
    with pytest.raises(FloatingPointError, match=r"^SFT gradient norm became inf at step 4 \(learning_rate=0\.1\)"):
        T._step(model, torch.optim.Adam([w], lr=0.1), w.sqrt().sum(), 4, 0.1, "SFT")


def test_sft_numbers_its_steps_from_one_across_epochs(monkeypatch):
    # 20 examples in batches of 5 for 2 epochs: 8 steps, numbered 1 to 8 in the messages a divergence would print
    data, steps = T.make_data(T.NEW, 20, seed=0), []
    real = T._step
    monkeypatch.setattr(T, "_step", lambda model, opt, loss, step, lr, what: steps.append((step, what)) or
                        real(model, opt, loss, step, lr, what))
    T.sft(T.Classifier(hidden=8), data, T.SFTConfig(epochs=2, batch_size=5))
    assert steps == [(k, "SFT") for k in range(1, 9)]


def test_sft_draws_the_oracles_labels_from_base_not_from_the_model_it_trains(monkeypatch):
    data = T.make_data(T.NEW, 10, seed=0)
    seen = []
    real = T.sft_labels
    monkeypatch.setattr(T, "sft_labels", lambda target, d, base, seed: seen.append(base) or real(target, d, base, seed))
    model, base = T.Classifier(hidden=8), T.Classifier(hidden=8)
    T.sft(model, data, T.SFTConfig(target="oracle", epochs=1, batch_size=10), base=base)
    T.sft(model, data, T.SFTConfig(target="any correct label", epochs=1, batch_size=10))
    assert seen[0] is base and seen[1] is model


def test_each_clean_image_is_its_glyph_moved_at_most_one_pixel_and_scaled():
    """noise=0 leaves glyph · ink, moved by (dr, dc) in {−1, 0, 1}² with wrap-around: find the move by trying all
    nine, pixel by pixel; every move occurs, and the ink strength differs from image to image within [0.5, 1.5]."""
    data = T.make_data(T.OLD_SHAPES, 300, seed=3, noise=0.0)
    glyphs, moves, inks = T._shape_glyphs(), set(), []
    for img, label in zip(data.x[:, :64].reshape(-1, 8, 8).numpy(), data.label.tolist()):
        ink = img.max()
        found = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                 if all(np.isclose(img[(r + dr) % 8, (c + dc) % 8], ink * glyphs[label][r, c])
                        for r in range(8) for c in range(8))]
        assert found, "an image that is no glyph moved by at most one pixel"
        moves.update(found)
        inks.append(ink)
    assert moves == {(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)}
    assert 0.5 <= min(inks) and max(inks) <= 1.5 and max(inks) - min(inks) > 0.5
    assert len(T.make_data(T.NEW, 1, seed=0)) == 1                    # one example is a valid request


def test_sft_shuffles_from_its_own_seed_not_the_global_generator():
    """The same config gives the same model whatever the global RNG did before (the batch order comes from a
    generator seeded with config.seed)."""
    data = T.make_data(T.NEW, 40, seed=0)
    models = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        model = T.Classifier(hidden=8)
        torch.manual_seed(global_seed)
        models.append(T.sft(model, data, T.SFTConfig(target="one label per parity", epochs=2, batch_size=8)))
    for p, q in zip(*(m.parameters() for m in models)):
        assert torch.equal(p, q)


def test_the_features_are_the_last_relu_layer():
    """Classifier: Linear, ReLU, Linear, ReLU, then the head; `features` is the output of the second ReLU."""
    torch.manual_seed(0)
    model = T.Classifier(hidden=6)
    x = torch.randn(50, 65, dtype=torch.float64)
    with torch.no_grad():
        h1 = torch.relu(model.body[0](x))
        want = torch.relu(model.body[2](h1))
        assert torch.equal(model.features(x), want) and (want == 0).any()
        assert torch.allclose(model(x), model.head(want))


def test_the_default_pixel_noise_is_gaussian_with_standard_deviation_one_half():
    """make_data's documented default, N(0, 0.5²) on every pixel: the same seed without noise draws the same glyphs,
    shifts and ink, so the difference is the noise alone (32,000 pixels: its std is 0.5 within 0.01)."""
    noisy, clean = T.make_data(T.NEW, 500, seed=0), T.make_data(T.NEW, 500, seed=0, noise=0.0)
    d = noisy.x - clean.x
    assert abs(float(d[:, :64].std()) - 0.5) < 0.01 and torch.equal(d[:, 64:], torch.zeros(500, 1))
