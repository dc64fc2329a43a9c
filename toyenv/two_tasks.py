"""Two classification tasks that share one small network: the kind of toy RL's Razor measures its law on.

Shenfeld et al. (2025) pretrain a small MLP on two image tasks at once, ParityMNIST (say whether a handwritten digit
is even or odd, by naming *any* digit of the right parity) and FashionMNIST (ten kinds of clothing), with an input
flag that says which task an image belongs to. They then fine-tune on ParityMNIST alone, in many ways, and measure
how much of FashionMNIST each run forgot. This module is that setting in miniature, generated, with nothing to
download:

* **images** are 8×8 glyphs with noise: a digit drawn as a seven-segment figure, or one of ten simple shapes (bars,
  rings, crosses, ...), each shifted by up to a pixel, with random ink strength and Gaussian pixel noise;
* **the new task** (`NEW`) stands in for ParityMNIST: a digit image, flag +1; an answer (one of 10 labels) is
  correct when its parity is the digit's. Five answers are correct for every image, so fine-tuning can land on
  many different solutions, which is what makes the razor's question askable;
* **the old task** stands in for FashionMNIST: flag −1, and either the ten shapes (`OLD_SHAPES`: inputs the new task
  never shows, as in the paper) or the same kind of digit images with another question, how many of the seven
  segments are lit (`OLD_SHARED`, labels 2 to 7: inputs the new task shares, as a language model's old skills share
  its inputs with any new task);
* **pretraining** teaches both at once: digits by their own label (the base model learns to read digits; parity
  is then a by-product), the old task by its label.

Everything here is exact: the policy over 10 labels is a softmax, so KLs, total variation and the Fisher information
are sums, not estimates. `Classifier` is the network, `pretrain`, `sft` and `rl` the three ways of training it, each
with a dataclass config; `divergences`, `fisher_diagonal` (for `toyenv.drift.weight_changes`) and
`activation_change` are what the razor study compares.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .trainers.common import ensure_finite
from .validation import check_bool, check_choice, check_int, check_number

__all__ = ["NUM_LABELS", "NEW", "OLD_SHAPES", "OLD_SHARED", "OLD_TASKS", "TARGETS", "Data", "make_data",
           "Classifier", "PretrainConfig", "SFTConfig", "RLConfig", "pretrain", "sft", "rl", "sft_labels",
           "correct_mask", "accuracy", "policy", "divergences", "oracle_kl", "fisher_diagonal",
           "activation_change"]

NUM_LABELS = 10
SIDE = 8
NEW, OLD_SHAPES, OLD_SHARED = "new: digit parity", "old: shapes", "old: digits' segment count"
OLD_TASKS = (OLD_SHAPES, OLD_SHARED)

# Seven-segment digits on an 8×8 canvas: segment -> pixels (row, col).
_SEGMENTS = {
    "a": [(0, c) for c in range(2, 6)], "b": [(r, 6) for r in range(1, 3)], "c": [(r, 6) for r in range(4, 7)],
    "d": [(7, c) for c in range(2, 6)], "e": [(r, 1) for r in range(4, 7)], "f": [(r, 1) for r in range(1, 3)],
    "g": [(3, c) for c in range(2, 6)],
}
_DIGITS = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"]
SEGMENT_COUNT = np.array([len(s) for s in _DIGITS])  # the shared old task's label: 2..7 lit segments


def _glyph(pixels) -> np.ndarray:
    img = np.zeros((SIDE, SIDE))
    for r, c in pixels:
        img[r, c] = 1.0
    return img


def _digit_glyphs() -> np.ndarray:
    return np.stack([_glyph(p for s in segs for p in _SEGMENTS[s]) for segs in _DIGITS])


def _shape_glyphs() -> np.ndarray:
    """Ten shapes that are not digits: solid and hollow squares, plus, X, stripes both ways, checkerboard,
    triangle, ring, diagonal."""
    r, c = np.mgrid[0:SIDE, 0:SIDE]
    shapes = [
        (r >= 2) & (r <= 5) & (c >= 2) & (c <= 5),
        ((r == 1) | (r == 6)) & (c >= 1) & (c <= 6) | ((c == 1) | (c == 6)) & (r >= 1) & (r <= 6),
        (r == 3) | (c == 3),
        (r == c) | (r == SIDE - 1 - c),
        r % 3 == 0,
        c % 3 == 0,
        (r + c) % 2 == 0,
        (c >= 3 - r // 2) & (c <= 4 + r // 2) & (r >= 1),
        np.abs(np.hypot(r - 3.5, c - 3.5) - 2.5) < 0.8,
        (r == c),
    ]
    return np.stack([s.astype(float) for s in shapes])


@dataclass
class Data:
    """Images `x` (N, 65: 64 pixels and the task flag), `label` (N,) the pretraining label, `digit` (N,) the digit
    drawn (−1 for shapes): one task's examples."""

    x: torch.Tensor
    label: torch.Tensor
    digit: torch.Tensor
    task: str

    def __len__(self) -> int:
        return len(self.label)


def make_data(task: str, n: int, seed: int, noise: float = 0.5) -> Data:
    """`n` examples of `task` (NEW, OLD_SHAPES or OLD_SHARED), from the generator seeded with `seed`: a glyph,
    shifted by −1, 0 or 1 pixel each way, ink strength uniform in [0.5, 1.5], plus N(0, noise²) on every pixel."""
    if task not in (NEW,) + OLD_TASKS:
        raise ValueError(f"task must be one of {(NEW,) + OLD_TASKS}, got {task!r}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rng = np.random.default_rng([seed, ((NEW,) + OLD_TASKS).index(task)])
    kind = rng.integers(0, NUM_LABELS, n)
    glyphs = _shape_glyphs() if task == OLD_SHAPES else _digit_glyphs()
    imgs = glyphs[kind]
    shift = rng.integers(-1, 2, (n, 2))
    imgs = np.stack([np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(imgs, shift)])
    imgs = imgs * rng.uniform(0.5, 1.5, (n, 1, 1)) + rng.normal(0.0, noise, imgs.shape)
    flag = np.full((n, 1), 1.0 if task == NEW else -1.0)
    x = torch.tensor(np.concatenate([imgs.reshape(n, -1), flag], axis=1), dtype=torch.float64)
    digit = torch.tensor(kind if task != OLD_SHAPES else np.full(n, -1))
    label = torch.tensor(SEGMENT_COUNT[kind] if task == OLD_SHARED else kind)
    return Data(x, label, digit, task)


class Classifier(nn.Module):
    """A two-hidden-layer ReLU MLP: 65 inputs (64 pixels and the task flag) -> `hidden` -> `hidden` -> 10 logits.

    In float64: the network is small enough that it costs little, and fine-tuning amplifies rounding differences
    (another CPU, another thread count) far less than in float32, so the study's runs agree across machines."""

    def __init__(self, hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(SIDE * SIDE + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, NUM_LABELS)
        self.double()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations, (N, hidden)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# ----------------------------------------------------------------------------------------------------- training
@dataclass
class PretrainConfig:
    """Joint pretraining: `new_examples` images of the new task and `old_examples` of the old one, `epochs` passes in
    minibatches of `batch_size`. Few new-task images leave the base model room to learn the new task."""

    new_examples: int = 200
    old_examples: int = 500
    epochs: int = 40
    batch_size: int = 50
    learning_rate: float = 1e-3
    hidden: int = 128
    seed: int = 0

    def __post_init__(self):
        check_int(self, ("new_examples", "old_examples", "epochs", "batch_size", "hidden"), minimum=1)
        check_int(self, "seed")
        check_number(self, "learning_rate", above=0)


@dataclass
class SFTConfig:
    """Cross-entropy on labels drawn once from `target` (one of TARGETS), `epochs` passes over the fine-tuning set."""

    target: str = "one label per parity"
    learning_rate: float = 1e-3
    epochs: int = 1
    batch_size: int = 50
    seed: int = 0

    def __post_init__(self):
        check_choice(self, "target", TARGETS)
        check_int(self, ("epochs", "batch_size"), minimum=1)
        check_int(self, "seed")
        check_number(self, "learning_rate", above=0)


@dataclass
class RLConfig:
    """On-policy policy gradient on the 0/1 reward "right parity": per step `num_prompts` images, `num_generations`
    sampled labels each; the advantage is the reward minus its group's mean (GRPO without the std division, which
    is RLOO up to a factor), or the raw reward when `baseline` is False (positive-only REINFORCE). `beta` weights
    the exact KL(π ‖ π0) per image, added to the loss (the action space is small enough to sum it exactly)."""

    learning_rate: float = 1e-3
    max_steps: int = 100
    num_prompts: int = 50
    num_generations: int = 8
    beta: float = 0.0
    baseline: bool = True
    seed: int = 0

    def __post_init__(self):
        check_int(self, ("max_steps", "num_prompts", "num_generations"), minimum=1)
        check_int(self, "seed")
        check_number(self, "learning_rate", above=0)
        check_number(self, "beta", at_least=0)
        check_bool(self, "baseline")


def _step(model: nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, step: int, lr: float, what: str):
    ensure_finite(loss, f"{what} loss", step, lr)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None))
    ensure_finite(grad_norm, f"{what} gradient norm", step, lr)
    opt.step()


def _batches(n: int, batch_size: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def pretrain(tasks: list[Data], config: PretrainConfig = PretrainConfig()) -> Classifier:
    """The base model π0: one network trained on the union of `tasks`, each example with its own label."""
    torch.manual_seed(config.seed)
    model = Classifier(config.hidden)
    x = torch.cat([d.x for d in tasks])
    y = torch.cat([d.label for d in tasks])
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    gen = torch.Generator().manual_seed(config.seed)
    step = 0
    for _ in range(config.epochs):
        for idx in _batches(len(y), config.batch_size, gen):
            step += 1
            _step(model, opt, F.cross_entropy(model(x[idx]), y[idx]), step, config.learning_rate, "pretraining")
    return model.eval()


def correct_mask(digit: torch.Tensor) -> torch.Tensor:
    """(N, 10) bool: label k is a correct answer for digit d when k and d have the same parity."""
    return (torch.arange(NUM_LABELS)[None, :] % 2) == (digit[:, None] % 2)


# SFT's label distributions over the five correct labels of each image. The names say what the annotator writes.
TARGETS = ("one label per parity", "two labels per parity", "any correct label", "the digit itself", "oracle")


def target_distribution(target: str, data: Data, base: nn.Module) -> torch.Tensor:
    """(N, 10) the distribution SFT's labels are drawn from, for each new-task image:

    * "one label per parity": even -> 0, odd -> 1 (the paper's deterministic SFT);
    * "two labels per parity": even -> 0 or 2, odd -> 1 or 3, half each;
    * "any correct label": uniform over the five labels of the right parity;
    * "the digit itself": the digit's own label, what pretraining taught;
    * "oracle": π0(· | x, correct), the base model's own distribution restricted to the correct labels and
      renormalized: of all distributions that always answer correctly, the one closest to π0 in KL(q ‖ π0).
    """
    ok = correct_mask(data.digit).float()
    n, parity = len(data), data.digit % 2
    q = torch.zeros(n, NUM_LABELS)
    if target == "one label per parity":
        q[torch.arange(n), parity] = 1.0
    elif target == "two labels per parity":
        q[torch.arange(n), parity] = 0.5
        q[torch.arange(n), parity + 2] = 0.5
    elif target == "any correct label":
        q = ok / ok.sum(1, keepdim=True)
    elif target == "the digit itself":
        q[torch.arange(n), data.digit] = 1.0
    elif target == "oracle":
        with torch.no_grad():
            p = policy(base, data.x) * ok
        q = p / p.sum(1, keepdim=True)
    else:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    return q


def sft_labels(target: str, data: Data, base: nn.Module, seed: int) -> torch.Tensor:
    """One label per image, drawn once from `target_distribution` (an annotated data set, fixed before training)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.multinomial(target_distribution(target, data, base), 1, generator=gen).squeeze(1)


def sft(model: Classifier, data: Data, config: SFTConfig, base: nn.Module | None = None) -> Classifier:
    """Fine-tune `model` in place by cross-entropy on labels drawn from `config.target` (the oracle needs `base`)."""
    if config.target == "oracle" and base is None:
        raise ValueError("SFTConfig.target='oracle' needs base, the model whose distribution the oracle restricts")
    labels = sft_labels(config.target, data, base if base is not None else model, config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    gen = torch.Generator().manual_seed(config.seed + 1)
    model.train()
    step = 0
    for _ in range(config.epochs):
        for idx in _batches(len(data), config.batch_size, gen):
            step += 1
            _step(model, opt, F.cross_entropy(model(data.x[idx]), labels[idx]), step, config.learning_rate, "SFT")
    return model.eval()


def rl(model: Classifier, data: Data, config: RLConfig, base: nn.Module | None = None) -> Classifier:
    """Fine-tune `model` in place by on-policy policy gradient on the reward 1[right parity] (`base` is π0, needed
    when beta > 0). The whole update is here: sample, score, advantage, loss, step."""
    if config.beta > 0 and base is None:
        raise ValueError("RLConfig.beta > 0 needs base, the reference policy of the KL penalty")
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    gen = torch.Generator().manual_seed(config.seed)
    model.train()
    for step in range(1, config.max_steps + 1):
        idx = torch.randint(len(data), (config.num_prompts,), generator=gen)
        logp = F.log_softmax(model(data.x[idx]), -1)                          # (P, 10)
        # a diverged step leaves infinite weights and NaN log-probs: say so here, not in multinomial's words
        ensure_finite(logp.detach().sum(), "RL log-probabilities", step, config.learning_rate)
        with torch.no_grad():
            actions = torch.multinomial(logp.exp(), config.num_generations, replacement=True, generator=gen)
            reward = correct_mask(data.digit[idx]).gather(1, actions).float()  # (P, G)
            advantage = reward - reward.mean(1, keepdim=True) if config.baseline else reward
        loss = -(advantage * logp.gather(1, actions)).mean()
        if config.beta > 0:
            with torch.no_grad():
                ref = F.log_softmax(base(data.x[idx]), -1)
            loss = loss + config.beta * (logp.exp() * (logp - ref)).sum(-1).mean()
        _step(model, opt, loss, step, config.learning_rate, "RL")
    return model.eval()


# ----------------------------------------------------------------------------------------------------- measures
@torch.no_grad()
def policy(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, 10) the model's answer probabilities."""
    return F.softmax(model(x), -1)


@torch.no_grad()
def accuracy(model: nn.Module, data: Data) -> float:
    """Greedy accuracy: the new task counts an answer of the right parity, an old task its exact label."""
    answer = model(data.x).argmax(-1)
    right = (answer % 2) == (data.digit % 2) if data.task == NEW else answer == data.label
    return int(right.sum()) / len(data)  # an exact fraction: 1800 of 2000 is 0.9, not float32's 0.89999998


@torch.no_grad()
def divergences(base: nn.Module, model: nn.Module, x: torch.Tensor) -> dict:
    """Exact, averaged over the images x: "forward_kl" E KL(π0 ‖ π) (the paper's predictor), "reverse_kl"
    E KL(π ‖ π0), "total_variation" E ½ Σ |π − π0|."""
    lp0, lp = F.log_softmax(base(x), -1), F.log_softmax(model(x), -1)
    p0, p = lp0.exp(), lp.exp()
    return {"forward_kl": float((p0 * (lp0 - lp)).sum(-1).mean()),
            "reverse_kl": float((p * (lp - lp0)).sum(-1).mean()),
            "total_variation": float(0.5 * (p - p0).abs().sum(-1).mean())}


@torch.no_grad()
def oracle_kl(base: nn.Module, data: Data) -> dict:
    """The two directions of KL between π0 and the oracle q = π0(· | x, correct), averaged over `data`'s images.

    KL(q ‖ π0) = −log π0(correct | x): finite, and the smallest KL(q ‖ π0) of any q that always answers correctly.
    KL(π0 ‖ q) is infinite wherever π0 gives a wrong label any probability, which a softmax always does: every q that
    never errs puts zero on labels π0 does not, so in that direction no perfect solution is closer than another."""
    p0 = policy(base, data.x)
    p_correct = (p0 * correct_mask(data.digit)).sum(-1)
    q_to_base = float((-torch.log(p_correct)).mean())
    base_to_q = float("inf") if bool((p_correct < 1).any()) else 0.0
    return {"kl_oracle_base": q_to_base, "kl_base_oracle": base_to_q}


def fisher_diagonal(base: nn.Module, x: torch.Tensor, chunk: int = 100) -> list[torch.Tensor]:
    """The diagonal of π0's Fisher information on the images x, exactly: E_x Σ_y π0(y|x) (∂ log π0(y|x) / ∂θ)²,
    one tensor per parameter (per-example gradients with torch.func)."""
    from torch.func import functional_call, jacrev, vmap
    params = {k: v.detach() for k, v in base.named_parameters()}

    def logp(p, xi):
        return F.log_softmax(functional_call(base, p, (xi[None],))[0], -1)

    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for i in range(0, len(x), chunk):
        xs = x[i:i + chunk]
        jac = vmap(jacrev(logp), in_dims=(None, 0))(params, xs)  # each (n, 10, *shape)
        with torch.no_grad():
            p0 = policy(base, xs)                                   # (n, 10)
        for k, j in jac.items():
            w = p0.reshape(p0.shape + (1,) * (j.dim() - 2))
            total[k] += (w * j ** 2).sum((0, 1))
    return [total[k] / len(x) for k, _ in base.named_parameters()]


@torch.no_grad()
def activation_change(model: Classifier, base: Classifier, x: torch.Tensor) -> float:
    """E_x ‖h(x) − h0(x)‖₂ of the last hidden layer, over the images x."""
    return float((model.features(x) - base.features(x)).norm(dim=-1).mean())
