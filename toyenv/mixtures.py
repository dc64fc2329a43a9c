"""1-D Gaussian mixtures: forward vs reverse KL, mode-covering vs mode-seeking, and the "retaining" experiment.

Notebook 07 runs on this file. Three parts:

1. `Mixture`: a 1-D Gaussian mixture (density, log-density, sampling) whose parameters may be tensors that
   require gradients, and `kl(p, q)`: the exact KL(p ‖ q) by quadrature on a fine grid.
2. `fit_gaussian`: fit ONE Gaussian to a target by minimizing the forward KL(target ‖ q) (what SFT / maximum
   likelihood does) or the reverse KL(q ‖ target) (what RL with a KL-shaped reward does), by gradient descent from
   several starts, reporting every distinct end point. Forward KL is moment matching (for modes at ±4 with σ = 1:
   μ = 0, σ = √17); reverse KL locks onto one mode.
3. `train_retaining`: the two-mode experiment after Chen et al. (2025), *Retaining by Doing*. The policy is a
   2-component mixture: an "old" component that already matches the old target mode (prior knowledge) and a "new"
   one that starts off-target. The ideal policy π* keeps the old mode and adds the new one. SFT is maximum
   likelihood on samples of the new task (forward KL; "sft_replay" mixes in replayed old data, i.e. samples π*);
   RL is on-policy REINFORCE with the reward log π* − log π (reverse KL to π*). `retained` and `gained` measure,
   per iteration, how much of the target's old and new modes the policy still / already covers.

Everything is float64 and small: a fit takes a fraction of a second on a laptop CPU, a training run about one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .kl import exact_categorical, k1
from .utils import progress_bar

DTYPE = torch.float64
DIRECTIONS = ("forward", "reverse")
METHODS = ("sft", "sft_replay", "rl")
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _tensor(v) -> torch.Tensor:
    """A float64 1-D tensor; keeps the autograd graph of tensors that already require gradients."""
    t = v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=DTYPE)
    return t.to(DTYPE).reshape(-1)


def normal_log_prob(x: torch.Tensor, mean, sigma) -> torch.Tensor:
    """log N(x; mean, sigma²), elementwise with broadcasting."""
    return -0.5 * ((x - mean) / sigma) ** 2 - torch.log(torch.as_tensor(sigma, dtype=DTYPE)) - _LOG_SQRT_2PI


# ----------------------------------------------------------------------------------------------- the mixture
@dataclass(frozen=True)
class Mixture:
    """p(x) = Σ_k weights[k] · N(x; means[k], sigmas[k]²), a 1-D Gaussian mixture.

    The three fields are 1-D float64 tensors of the same length K (lists and floats are converted). They may be
    functions of parameters that require gradients (see `from_params`), so that `log_prob` is differentiable in
    them. Raises ValueError for a non-positive sigma, a negative weight, weights that do not sum to 1, or fields
    of different lengths.
    """

    weights: torch.Tensor
    means: torch.Tensor
    sigmas: torch.Tensor

    def __post_init__(self):
        w, m, s = _tensor(self.weights), _tensor(self.means), _tensor(self.sigmas)
        if not (len(w) == len(m) == len(s)) or len(w) == 0:
            raise ValueError(f"weights, means and sigmas must have the same (non-zero) length, got {len(w)}, {len(m)}, {len(s)}")
        wd, md, sd = w.detach(), m.detach(), s.detach()
        if not (torch.isfinite(md).all() and torch.isfinite(sd).all() and torch.isfinite(wd).all()):
            raise ValueError(f"weights, means and sigmas must be finite, got {wd.tolist()}, {md.tolist()}, {sd.tolist()}")
        if (sd <= 0).any():
            raise ValueError(f"every sigma must be > 0, got {sd.tolist()}")
        if (wd < 0).any():
            raise ValueError(f"weights must be >= 0, got {wd.tolist()}")
        if abs(wd.sum().item() - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got {wd.tolist()} (sum {wd.sum().item():.6g})")
        # frozen dataclass: set the converted tensors through object.__setattr__
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "means", m)
        object.__setattr__(self, "sigmas", s)

    @classmethod
    def from_params(cls, logits: torch.Tensor, means: torch.Tensor, log_sigmas: torch.Tensor) -> "Mixture":
        """The mixture with weights softmax(logits) and sigmas exp(log_sigmas): unconstrained parameters, the way
        gradient descent wants them. `log_sigmas` of length 1 gives every component the same (shared) width."""
        logits, means, log_sigmas = _tensor(logits), _tensor(means), _tensor(log_sigmas)
        return cls(torch.softmax(logits, -1), means, log_sigmas.exp().expand(len(means)))

    def __len__(self) -> int:
        return len(self.means)

    def log_prob(self, x) -> torch.Tensor:
        """log p(x), elementwise over a tensor of points x (any shape)."""
        x = torch.as_tensor(x, dtype=DTYPE)
        # logsumexp over components: stays finite far in the tails, where the densities themselves underflow.
        comp = torch.log(self.weights) + normal_log_prob(x[..., None], self.means, self.sigmas)
        return torch.logsumexp(comp, dim=-1)

    def prob(self, x) -> torch.Tensor:
        """The density p(x), elementwise."""
        return self.log_prob(x).exp()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples (a float64 tensor, no gradient): pick a component by its weight, then draw from it."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        with torch.no_grad():
            k = torch.multinomial(self.weights.detach(), n, replacement=True, generator=generator)
            z = torch.randn(n, generator=generator, dtype=DTYPE)
            return self.means.detach()[k] + self.sigmas.detach()[k] * z

    def mean(self) -> float:
        """E[x] = Σ w_k μ_k."""
        w, m = self.weights.detach(), self.means.detach()
        return float((w * m).sum())

    def std(self) -> float:
        """sqrt(Var[x]), with Var[x] = Σ w_k (σ_k² + μ_k²) − E[x]² (the law of total variance)."""
        w, m, s = self.weights.detach(), self.means.detach(), self.sigmas.detach()
        return math.sqrt(float((w * (s**2 + m**2)).sum()) - self.mean() ** 2)

    def detach(self) -> "Mixture":
        return Mixture(self.weights.detach(), self.means.detach(), self.sigmas.detach())

    def describe(self) -> str:
        parts = [f"{w:.2f}·N({m:+.2f}, {s:.2f}²)" for w, m, s in
                 zip(self.weights.tolist(), self.means.tolist(), self.sigmas.tolist())]
        return " + ".join(parts)


def gaussian(mu: float, sigma: float) -> Mixture:
    """A single Gaussian N(mu, sigma²), as a one-component Mixture."""
    return Mixture([1.0], [mu], [sigma])


def bimodal(separation: float, weight: float = 0.5, sigma: float = 1.0, center: float = 0.0) -> Mixture:
    """weight·N(center − separation/2, σ²) + (1 − weight)·N(center + separation/2, σ²): two modes `separation` apart."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    return Mixture([weight, 1.0 - weight], [center - separation / 2, center + separation / 2], [sigma, sigma])


# ------------------------------------------------------------------------------------------- quadrature KL
def grid(*mixtures: Mixture, width: float = 10.0, points_per_sigma: int = 6, min_points: int = 601,
         max_points: int = 40001) -> torch.Tensor:
    """A uniform grid covering every component of every mixture to ±`width` sigmas, `points_per_sigma` points per
    standard deviation of the narrowest component.

    Gaussian tails beyond 10σ hold less than 1e-22 of the mass, and for smooth densities like these a uniform
    Riemann sum converges faster than any power of the spacing: at 6 points per σ, KL integrals on this grid match
    the Gaussian closed form to ~1e-13 (tests/test_mixtures.py checks it).
    """
    if not mixtures:
        raise ValueError("grid() needs at least one mixture")
    means = torch.cat([m.means.detach() for m in mixtures])
    sigmas = torch.cat([m.sigmas.detach() for m in mixtures])
    lo, hi = float((means - width * sigmas).min()), float((means + width * sigmas).max())
    n = int(min(max_points, max(min_points, math.ceil((hi - lo) / float(sigmas.min()) * points_per_sigma) + 1)))
    return torch.linspace(lo, hi, n, dtype=DTYPE)


def kl(p: Mixture, q: Mixture, x: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p ‖ q) = ∫ p (log p − log q) dx, by quadrature (a scalar tensor, differentiable in p's and q's parameters).

    On a uniform grid the integral is a Riemann sum, and Σ_i p(x_i)Δx (log p(x_i) − log q(x_i)) is exactly the KL
    between the two *discretized* distributions with logits log p(x_i) and log q(x_i): `toyenv.kl.exact_categorical`
    computes it (the softmax's normalization cancels Δx). For smooth, fast-decaying densities the Riemann sum
    converges faster than any power of Δx; on the default `grid` it matches the Gaussian closed form to ~1e-13.
    """
    x = grid(p, q) if x is None else x
    return exact_categorical(p.log_prob(x), q.log_prob(x))


def divergence(direction: str, target: Mixture, model: Mixture, x: torch.Tensor | None = None) -> torch.Tensor:
    """The objective a fit minimizes: "forward" = KL(target ‖ model) (SFT), "reverse" = KL(model ‖ target) (RL)."""
    if direction == "forward":
        return kl(target, model, x)
    if direction == "reverse":
        return kl(model, target, x)
    raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def gaussian_kl(mu1: float, sigma1: float, mu2: float, sigma2: float) -> float:
    """Closed form KL(N(mu1, sigma1²) ‖ N(mu2, sigma2²)) (notebook 01, section 4), to check the quadrature against."""
    return math.log(sigma2 / sigma1) + (sigma1**2 + (mu1 - mu2) ** 2) / (2 * sigma2**2) - 0.5


# --------------------------------------------------------------------------------- one Gaussian, two directions
@dataclass
class GaussianFit:
    """One end point of gradient descent: the fitted N(mu, sigma²), its KL, and the starting means that led to it."""

    mu: float
    sigma: float
    kl: float
    starts: list = field(default_factory=list)

    def mixture(self) -> Mixture:
        return gaussian(self.mu, self.sigma)


def default_starts(target: Mixture, n: int = 5) -> list[float]:
    """n starting means spread over the target (± 1.5 standard deviations around its mean).

    The middle start is nudged off the center on purpose: for a symmetric target the exact center is a stationary
    point of the reverse KL by symmetry (a saddle once the modes are apart), and gradient descent started exactly
    there would never leave it.
    """
    c, s = target.mean(), target.std()
    return [round(float(c + s * f), 3) for f in np.linspace(-1.5, 1.5, n) + 0.05]


def fit_gaussian(target: Mixture, direction: str, starts=None, sigma0: float = 1.0, steps: int = 300,
                 lr: float = 0.1, tol: float = 0.02) -> list[GaussianFit]:
    """Fit one Gaussian N(μ, σ²) to `target` by minimizing the forward or reverse KL, from several starting means.

    Adam on (μ, log σ) (log σ keeps σ positive), `steps` steps from every start in `starts` (default:
    `default_starts(target)`) with σ₀ = `sigma0`; all starts run at once as a batch, each on its own KL. Two
    choices make 300 steps enough: β₂ = 0.9 (the default 0.999 remembers the huge gradients of the first steps
    and then crawls through the flat final approach) and a cosine decay of the step size to 0 (large steps to
    travel, tiny ones to settle). End points closer than `tol` × target std in both μ and σ count as the same
    optimum. Returns every distinct optimum found, best (lowest KL) first, with the starts that reached it. The
    KL is exact (quadrature, `kl`), not sampled.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if sigma0 <= 0:
        raise ValueError(f"sigma0 must be > 0, got {sigma0}")
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    starts = default_starts(target) if starts is None else [float(s) for s in starts]
    mu = torch.tensor(starts, dtype=DTYPE, requires_grad=True)
    log_sigma = torch.full_like(mu, math.log(sigma0)).requires_grad_(True)
    opt = torch.optim.Adam([mu, log_sigma], lr=lr, betas=(0.9, 0.9))
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))
    for _ in range(steps):
        opt.zero_grad()
        losses = _batched_gaussian_kl(target, mu, log_sigma.exp(), direction)
        losses.sum().backward()  # the starts are independent: the gradient of the sum is each one's own gradient
        opt.step()
        schedule.step()
    with torch.no_grad():
        losses = _batched_gaussian_kl(target, mu, log_sigma.exp(), direction)
    scale = tol * target.std()
    optima: list[GaussianFit] = []
    for s0, m, s, l in zip(starts, mu.tolist(), log_sigma.exp().tolist(), losses.tolist()):
        for o in optima:
            if abs(o.mu - m) < scale and abs(o.sigma - s) < scale:
                o.starts.append(s0)
                break
        else:
            optima.append(GaussianFit(m, s, l, [s0]))
    # Symmetric optima have the same KL up to rounding noise: break ties by μ, so the order is reproducible.
    return sorted(optima, key=lambda o: (round(o.kl, 8), o.mu))


def _batched_gaussian_kl(target: Mixture, mu: torch.Tensor, sigma: torch.Tensor, direction: str) -> torch.Tensor:
    """KL between `target` and each of the Gaussians N(mu[i], sigma[i]²), (S,), on one grid covering them all."""
    x = grid(target, Mixture(torch.full_like(mu, 1 / len(mu)).detach(), mu.detach(), sigma.detach()))
    log_t = target.log_prob(x)                                        # (n,)
    log_q = normal_log_prob(x[None, :], mu[:, None], sigma[:, None])  # (S, n)
    if direction == "forward":
        return exact_categorical(log_t.expand_as(log_q), log_q)
    return exact_categorical(log_q, log_t.expand_as(log_q))


# ------------------------------------------------------------------------------- the retaining experiment
@dataclass
class RetainConfig:
    """The two-mode experiment: where the modes are, where the policy starts, and how it is trained.

    Target (the ideal policy, which keeps old knowledge):
        π* = target_old_weight · N(old_mean, σ²) + (1 − target_old_weight) · N(new_mean, σ²).
    Initial policy: π₀ = policy_old_weight · N(old_mean, σ²) + (1 − policy_old_weight) · N(new_init, σ²), i.e. its
    old component already matches the old mode, its new component starts off-target at `new_init`. With
    `shared_sigma` the two components share one width parameter, the simplest form of the parameter sharing
    that makes behaviours of a real network interact; otherwise each has its own.

    Methods (`train_retaining(cfg, method)`):
        "sft"         maximum likelihood on samples of the new task N(new_mean, σ²) (forward KL to the new mode);
        "sft_replay"  maximum likelihood on samples of π* (new-task data mixed with replayed old data: forward KL to π*);
        "rl"          on-policy REINFORCE with reward log π*(x) − log π(x) on the policy's own samples (reverse KL to π*).
    """

    old_mean: float = -4.0
    new_mean: float = 4.0
    sigma: float = 1.0
    target_old_weight: float = 0.5
    policy_old_weight: float = 0.5
    new_init: float = 1.0
    shared_sigma: bool = True
    steps: int = 1500
    batch_size: int = 128
    lr: float = 0.02
    optimizer: str = "adam"  # "adam" or "sgd"
    eval_every: int = 2
    stop_at_gain: float | None = None  # stop once `gained` reaches this (a sweep only needs the crossing)
    seed: int = 0

    def __post_init__(self):
        if self.sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        for name in ("target_old_weight", "policy_old_weight"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be strictly between 0 and 1, got {getattr(self, name)}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr <= 0 or self.steps < 1 or self.batch_size < 2 or self.eval_every < 1:
            raise ValueError("lr must be > 0, steps >= 1, batch_size >= 2 and eval_every >= 1")

    def target(self) -> Mixture:
        a = self.target_old_weight
        return Mixture([a, 1 - a], [self.old_mean, self.new_mean], [self.sigma, self.sigma])

    def new_task(self) -> Mixture:
        """The new task's own distribution N(new_mean, σ²): what SFT demonstrations of the new task look like."""
        return gaussian(self.new_mean, self.sigma)

    def initial_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, means, log_sigmas) of π₀, as fresh leaf tensors that require gradients."""
        w = self.policy_old_weight
        logits = torch.tensor([math.log(w), math.log(1 - w)], dtype=DTYPE)
        means = torch.tensor([self.old_mean, self.new_init], dtype=DTYPE)
        log_sigmas = torch.full((1 if self.shared_sigma else 2,), math.log(self.sigma), dtype=DTYPE)
        return tuple(t.requires_grad_(True) for t in (logits, means, log_sigmas))


def coverage(policy: Mixture, weight: float, mean: float, sigma: float, x: torch.Tensor | None = None) -> float:
    """How much of the target's mode weight·N(mean, sigma²) the policy covers: ∫ min(π(x), weight·N(x)) dx / weight.

    An overlap coefficient, in [0, 1]: 1 when the policy puts at least the target's density everywhere on that
    mode, 0 when it puts none there. It drops when the policy's mass there shrinks, shifts or spreads out. Extra
    mass beyond the target's (the min) is not rewarded, so keeping *more* than the target's weight on an old mode
    does not count as extra retention.
    """
    x = grid(policy, gaussian(mean, sigma)) if x is None else x
    with torch.no_grad():
        part = math.log(weight) + normal_log_prob(x, mean, sigma)
        inside = torch.minimum(policy.log_prob(x), part).exp()
        # The exact overlap is at most 1; the trapezoid rule can land a rounding error above it (1.0000000000000002
        # on some CPUs), so clip to the quantity's range.
        return min(1.0, float(torch.trapezoid(inside, x) / weight))


def retained(policy: Mixture, cfg: RetainConfig, x: torch.Tensor | None = None) -> float:
    """Coverage of the target's OLD mode, target_old_weight·N(old_mean, σ²): 1 = prior knowledge intact."""
    return coverage(policy, cfg.target_old_weight, cfg.old_mean, cfg.sigma, x)


def gained(policy: Mixture, cfg: RetainConfig, x: torch.Tensor | None = None) -> float:
    """Coverage of the target's NEW mode, (1 − target_old_weight)·N(new_mean, σ²): 1 = new task learned."""
    return coverage(policy, 1 - cfg.target_old_weight, cfg.new_mean, cfg.sigma, x)


def sft_loss(policy: Mixture, x: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of data samples x: its gradient is the sample estimate of ∇ KL(data ‖ π)."""
    return -policy.log_prob(x).mean()


def forward_kl_estimate(target: Mixture, policy: Mixture, x: torch.Tensor) -> torch.Tensor:
    """Monte-Carlo KL(target ‖ π) from samples x ~ target: mean of k1 = log target(x) − log π(x).

    The log target(x) term does not depend on the policy, so the gradient equals `sft_loss`'s: SFT is forward KL.
    """
    return k1(target.log_prob(x), policy.log_prob(x)).mean()


def reinforce_loss(target: Mixture, policy: Mixture, x: torch.Tensor) -> torch.Tensor:
    """Surrogate loss whose gradient is the REINFORCE estimate of ∇ KL(π ‖ target) from samples x ~ π.

    ∇ KL(π ‖ π*) = E_{x~π}[(log π(x) − log π*(x)) ∇ log π(x)] (the "+1" from differentiating log π has mean 0).
    The weight log π − log π* (k1 = minus the reward) is *detached*: the samples came from π, and the score
    function ∇ log π(x) is what accounts for that. Its batch mean is subtracted as a baseline: unbiased, and far
    less noisy.
    """
    logp = policy.log_prob(x)
    weight = k1(logp, target.log_prob(x)).detach()
    return ((weight - weight.mean()) * logp).mean()


def train_retaining(cfg: RetainConfig, method: str, progress: bool = False) -> dict:
    """Train the two-component policy with `method` ("sft", "sft_replay" or "rl"); returns the history.

    Every step uses a fresh batch: samples of the new task ("sft"), of π* ("sft_replay"), or of the policy itself
    ("rl", on-policy). Every `eval_every` steps the history records the policy's parameters and the exact
    `retained`, `gained`, forward KL(π* ‖ π) and reverse KL(π ‖ π*) (quadrature, not samples).

    History keys: "step", "retained", "gained", "forward_kl", "reverse_kl" (lists), "weights", "means",
    "sigmas" (lists of per-component lists), "method", "config" (asdict(cfg)).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    g = torch.Generator().manual_seed(cfg.seed)
    target, new_task = cfg.target(), cfg.new_task()
    logits, means, log_sigmas = params = cfg.initial_params()
    opt = torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam" else torch.optim.SGD(params, lr=cfg.lr)
    # One evaluation grid for the whole run, wide enough for anything the policy plausibly does; the target's
    # log-density and its two modes on it are computed once.
    lo, hi = min(cfg.old_mean, cfg.new_mean, cfg.new_init), max(cfg.old_mean, cfg.new_mean, cfg.new_init)
    x_eval = torch.linspace(lo - 15 * cfg.sigma, hi + 15 * cfg.sigma, 1201, dtype=DTYPE)
    a = cfg.target_old_weight
    log_target = target.log_prob(x_eval)
    old_part = math.log(a) + normal_log_prob(x_eval, cfg.old_mean, cfg.sigma)
    new_part = math.log(1 - a) + normal_log_prob(x_eval, cfg.new_mean, cfg.sigma)
    hist = {k: [] for k in ("step", "retained", "gained", "forward_kl", "reverse_kl", "weights", "means", "sigmas")}
    hist.update(method=method, config=asdict(cfg))
    for step in progress_bar(range(cfg.steps + 1), method, enabled=progress):
        policy = Mixture.from_params(logits, means, log_sigmas)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with torch.no_grad():
                p = policy.detach()
                logp = p.log_prob(x_eval)  # once, for all four measures (same formulas as `coverage` and `kl`)
                hist["step"].append(step)
                hist["retained"].append(float(torch.trapezoid(torch.minimum(logp, old_part).exp(), x_eval) / a))
                hist["gained"].append(float(torch.trapezoid(torch.minimum(logp, new_part).exp(), x_eval) / (1 - a)))
                hist["forward_kl"].append(exact_categorical(log_target, logp).item())
                hist["reverse_kl"].append(exact_categorical(logp, log_target).item())
                hist["weights"].append(p.weights.tolist())
                hist["means"].append(p.means.tolist())
                hist["sigmas"].append(p.sigmas.tolist())
            if cfg.stop_at_gain is not None and hist["gained"][-1] >= cfg.stop_at_gain:
                break
        if step == cfg.steps:
            break
        if method == "sft":
            loss = sft_loss(policy, new_task.sample(cfg.batch_size, g))
        elif method == "sft_replay":
            loss = sft_loss(policy, target.sample(cfg.batch_size, g))
        else:  # "rl": the policy's own samples, scored by the target
            loss = reinforce_loss(target, policy, policy.sample(cfg.batch_size, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return hist


def policy_at(history: dict, i: int) -> Mixture:
    """The policy recorded at the i-th evaluation of a `train_retaining` history (i = -1: the last one)."""
    return Mixture(history["weights"][i], history["means"][i], history["sigmas"][i])


def at_gain(history: dict, level: float = 0.9) -> dict | None:
    """Where a run first reaches `gained` >= level: {"step", "retained", "gained"}, interpolated linearly between
    the two evaluations that bracket the crossing. None if the run never gets there."""
    steps, ret, gain = history["step"], history["retained"], history["gained"]
    for i, gv in enumerate(gain):
        if gv >= level:
            if i == 0:
                return {"step": float(steps[0]), "retained": ret[0], "gained": gv}
            f = (level - gain[i - 1]) / (gv - gain[i - 1])  # in (0, 1]: gain[i-1] < level <= gain[i]
            return {"step": steps[i - 1] + f * (steps[i] - steps[i - 1]),
                    "retained": ret[i - 1] + f * (ret[i] - ret[i - 1]), "gained": level}
    return None
