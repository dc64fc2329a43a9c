"""Policy-gradient RL for the tiny GPT, with a KL penalty to a frozen reference model.

One step of `train`, all in one place (CleanRL style):

1. **Rollouts.** Draw `num_prompts` prompts, sample `num_generations` completions for each with the KV-cache
   sampler (the group of a prompt is contiguous in the batch), and score every completion with the task's
   reward function (a verifier or a reward model).
2. **Log-probs.** Score the sampled tokens under the policy (no gradient: these are the "old" log-probs
   π_old that PPO's ratio divides by) and under the reference π_ref. Each prompt is read once for its k
   completions (`toyenv.model.completion_logprobs`), as the sampler reads it. The prompts are most of each row
   (GeneralPoints: about 75 of 90 columns), so reading them once instead of k times removes most of the step's
   arithmetic (`python -m benchmarks.rl_step` measures the step before and after).
3. **KL penalty**, in one of two places:
   - ``kl_in="reward"`` (PPO, RLOO): the sequence reward becomes  R = r − β Σ_t kl_t,  with kl_t a
     per-token estimate (``kl_estimator``, "k1" by default) computed from the samples and *treated as a
     reward*: no gradient flows through it;
   - ``kl_in="loss"`` (GRPO): R = r, and β · mean_t kl_t (default "k3") is added to the loss, where autograd
     differentiates it (notebook 02: through k3 that is the gradient of the *forward* KL). With
     ``use_bias_correction_kl`` (TRL's name; DeepSeek-V3.2's unbiased KL) each kl_t is first multiplied by the
     token's ratio π/π_old, differentiated too: with k3 the expected gradient becomes the *reverse* KL's, and
     after the first pass of several (``num_iterations`` > 1) the ratio is also the importance weight that
     corrects for sampling from π_old.
4. **Advantages** from R, one number per completion, broadcast over its tokens:
   - ``"reinforce"``:          A = R (no baseline: unbiased, high variance);
   - ``"reinforce_baseline"``: A = R − mean of the batch;
   - ``"rloo"``:               A_i = R_i − mean of the *other* completions of the same prompt;
   - ``"grpo"``:               A_i = (R_i − group mean) / (group std + 1e-4)  (``scale_rewards=False``: no std);
   - ``"ppo"``:                A = (R − batch mean) / batch std. A documented simplification: no learned value
     head; the critic is the batch mean (a constant), and PPO keeps its clipped ratio and several epochs.
5. **Update.** Per token, ratio ρ = π/π_old. "grpo" and "ppo" minimize −min(ρA, clip(ρ, 1−ε, 1+ε)A); the
   REINFORCE family minimizes −ρA, whose gradient at ρ = 1 is −A ∇log π. Losses are averaged over all
   generated tokens of the (mini)batch. ``num_iterations`` passes over the batch in ``num_minibatches``
   minibatches (PPO epochs); with one pass and one minibatch ρ = 1 and the clip never acts.

`ptx_coef` = γ > 0 adds InstructGPT's pretraining term to every update: γ times the NLL of a batch of `ptx_data`.

Every step logs the task reward, the KL to the reference (``kl``: the *exact* per-token KL over the vocabulary
summed along each sampled completion, an unbiased and low-variance estimate of the sequence KL, whatever the
penalty uses), the policy's entropy, β, and a few samples.

`AdaptiveKLController` is the rule of Ziegler et al. (2019): β ← β · (1 + clip(KL/target − 1, ±0.2) · n/horizon).
"""
from __future__ import annotations

import numbers
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..kl import KL_ESTIMATORS, estimator, exact_categorical
from ..model import GPT, completion_logprobs, next_token_logprobs
from ..tasks import Task
from ..tokenizer import EOS_ID, PAD_ID, Tokenizer, collate, encode_pairs
from ..utils import eval_mode, progress_bar
from ..validation import check_bool, check_choice, check_int, check_number
from .common import adamw, completion_loss, ensure_finite

ALGORITHMS = ("reinforce", "reinforce_baseline", "rloo", "grpo", "ppo")
KL_PLACES = ("reward", "loss")
CLIPPED = ("grpo", "ppo")

__all__ = [
    "RLConfig", "AdaptiveKLController", "FixedKLController", "train", "rollout", "advantages", "clipped_objective",
    "per_token_logprobs", "ALGORITHMS",
]


# --------------------------------------------------------------------------- configuration
@dataclass
class RLConfig:
    """Hyperparameters, named as TRL names them where it has the knob."""

    algorithm: str = "grpo"          # "reinforce" | "reinforce_baseline" | "rloo" | "grpo" | "ppo"
    max_steps: int = 100
    num_prompts: int = 8             # prompts per step; num_prompts * num_generations rollouts
    num_generations: int = 8         # completions per prompt (the group of RLOO and GRPO)
    max_new_tokens: int = 24
    temperature: float = 1.0         # sampling temperature (log-probs are scored at the same temperature)
    learning_rate: float = 2e-5
    beta: float = 0.0                # KL coefficient λ of the chapter (TRL: GRPO's `beta`; PPO/RLOO call it `kl_coef`)
    kl_estimator: str | None = None  # "k1" | "k2" | "k3"; None: "k1" in the reward, "k3" in the loss
    kl_in: str = "reward"            # where the penalty goes: "reward" (PPO, RLOO) or "loss" (GRPO)
    use_bias_correction_kl: bool = False  # kl_in="loss" only: the per-token KL times π/π_old (TRL, DeepSeek-V3.2)
    num_iterations: int = 1          # passes over each batch (PPO epochs)
    num_minibatches: int = 1
    epsilon: float = 0.2             # clip range of the ratio ("grpo", "ppo")
    scale_rewards: bool = True       # GRPO: divide by the group's std
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 0
    ptx_coef: float = 0.0            # γ of InstructGPT's PPO-ptx: + γ · NLL of pretraining-style text in the loss
    ptx_batch_size: int = 32         # sequences of `ptx_data` per update
    log_samples: int = 2             # completions kept per step in history["samples"]
    eval_every: int = 0              # call eval_fn every this many steps (0: never)

    def __post_init__(self) -> None:
        check_choice(self, "algorithm", ALGORITHMS)
        check_choice(self, "kl_in", KL_PLACES)
        if self.kl_estimator is None:
            self.kl_estimator = "k1" if self.kl_in == "reward" else "k3"
        check_choice(self, "kl_estimator", KL_ESTIMATORS)
        check_int(self, ("max_steps", "num_prompts", "num_generations", "max_new_tokens", "num_iterations",
                         "num_minibatches", "ptx_batch_size"), minimum=1)
        check_int(self, ("log_samples", "eval_every"), minimum=0)
        check_int(self, "seed", minimum=0)  # numpy's default_rng refuses a negative seed
        check_bool(self, ("scale_rewards", "use_bias_correction_kl"))
        if self.use_bias_correction_kl and self.kl_in != "loss":
            raise ValueError("RLConfig.use_bias_correction_kl corrects the KL term of the loss: it needs "
                             f"kl_in='loss', got kl_in={self.kl_in!r}")
        if self.algorithm in ("rloo", "grpo") and self.num_generations < 2:
            raise ValueError(f"RLConfig.num_generations must be >= 2 for {self.algorithm}, which compares "
                             f"completions of the same prompt, got {self.num_generations!r}")
        if self.num_minibatches > self.num_prompts * self.num_generations:
            raise ValueError(f"RLConfig.num_minibatches must be <= num_prompts * num_generations = "
                             f"{self.num_prompts * self.num_generations} rollouts per step, got {self.num_minibatches!r}")
        check_number(self, ("learning_rate", "temperature", "max_grad_norm"), above=0)
        check_number(self, ("beta", "epsilon", "ptx_coef", "weight_decay"), at_least=0)

    @property
    def batch_size(self) -> int:
        return self.num_prompts * self.num_generations


class FixedKLController:
    """β that never changes."""

    def __init__(self, beta: float) -> None:
        self.value = float(beta)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


class AdaptiveKLController:
    """Ziegler et al. (2019): steer β so that the measured KL approaches `target`.

    error = clip(KL / target − 1, −0.2, 0.2);  β ← β · (1 + error · n_steps / horizon).
    KL above target raises β (a stronger pull back to the reference), below lowers it; the clip bounds the change
    per update, and `horizon` (in samples, or steps if n_steps counts steps) sets how fast β reacts.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        # `x > 0` is False for NaN, so NaN is refused with the non-positive values; isfinite refuses infinities.
        if not all(isinstance(x, numbers.Real) and not isinstance(x, bool) and x > 0 and np.isfinite(x)
                   for x in (init_kl_coef, target, horizon)):
            raise ValueError("AdaptiveKLController needs init_kl_coef, target and horizon finite numbers > 0 "
                             f"(got {init_kl_coef!r}, {target!r}, {horizon!r})")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


# --------------------------------------------------------------------------- pieces of the update
def per_token_logprobs(model: GPT, tokens: torch.Tensor, attention_mask: torch.Tensor, temperature: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs of `tokens` (B, T, aligned: column 0 is 0) and the full next-token log-distributions
    (B, T, V) that produced them (row t is the distribution that token t was drawn from)."""
    picked, logdist = next_token_logprobs(model, tokens, attention_mask, temperature)
    return F.pad(picked, (1, 0)), F.pad(logdist, (0, 0, 1, 0))  # column 0: nothing predicts the first token


def advantages(rewards: torch.Tensor, algorithm: str, num_generations: int = 1, scale_rewards: bool = True
               ) -> torch.Tensor:
    """One advantage per completion from sequence rewards (B,), groups of `num_generations` contiguous."""
    R = rewards.float()
    if algorithm == "reinforce":
        return R.clone()
    if algorithm == "reinforce_baseline":
        return R - R.mean()
    if algorithm == "ppo":
        return (R - R.mean()) / (R.std(unbiased=False) + 1e-8) if R.numel() > 1 else torch.zeros_like(R)
    if algorithm not in ("rloo", "grpo"):
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    k = num_generations
    if k < 2 or R.numel() % k:
        raise ValueError(f"{algorithm} needs groups of num_generations >= 2 completions; got {R.numel()} rewards, k={k}")
    G = R.view(-1, k)
    if algorithm == "rloo":
        # Leave-one-out: the mean of the other k−1 completions, so the baseline is independent of the sample.
        return (G - (G.sum(1, keepdim=True) - G) / (k - 1)).flatten()
    A = G - G.mean(1, keepdim=True)
    if scale_rewards:
        A = A / (G.std(1, keepdim=True) + 1e-4)  # unbiased std over the group, as in the GRPO paper and TRL
    return A.flatten()


def clipped_objective(ratio: torch.Tensor, adv: torch.Tensor, epsilon: float) -> torch.Tensor:
    """PPO's per-token loss −min(ρA, clip(ρ, 1−ε, 1+ε)A): no gradient once ρ has left [1−ε, 1+ε] in the
    direction the advantage favours."""
    return -torch.minimum(ratio * adv, ratio.clamp(1 - epsilon, 1 + epsilon) * adv)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class Rollouts:
    """One step's samples. Rows are grouped by prompt: rows i*k .. i*k+k−1 share prompt i."""

    tokens: torch.Tensor          # (B, T) left-padded prompt + completion
    attention_mask: torch.Tensor  # (B, T) real tokens
    mask: torch.Tensor            # (B, T) float, 1 at generated tokens (EOS included)
    prompts: list[str]
    completions: list[str]
    infos: list[dict]
    scores: torch.Tensor          # (B,) task reward
    prompt_len: int               # P: columns :P hold the (left-padded) prompts, P: the completions
    gen_seconds: float = 0.0
    score_seconds: float = 0.0


@torch.no_grad()
def rollout(policy: GPT, task: Task, tokenizer: Tokenizer, cfg: RLConfig, rng: np.random.Generator,
            generator: torch.Generator | None = None) -> Rollouts:
    """Sample `cfg.num_generations` completions for each of `cfg.num_prompts` fresh prompts and score them."""
    prompts, infos = task.sample_prompts(rng, cfg.num_prompts)
    k = cfg.num_generations
    ids = [tokenizer.encode(p, bos=True) for p in prompts]
    prompts = [p for p in prompts for _ in range(k)]
    infos = [i for i in infos for _ in range(k)]
    t0 = time.perf_counter()
    with eval_mode(policy):
        # num_return_sequences: each prompt is read once and its keys/values are shared by its k samples.
        tokens, gen_mask = policy.generate(ids, cfg.max_new_tokens, temperature=cfg.temperature, eos_id=EOS_ID,
                                           pad_id=PAD_ID, generator=generator, num_return_sequences=k)
    t1 = time.perf_counter()
    completions = tokenizer.decode_batch(tokens, mask=gen_mask)
    scores = torch.as_tensor([float(s) for s in task.reward_fn(prompts, completions, infos)], dtype=torch.float32)
    if scores.shape != (len(prompts),):
        raise ValueError(f"reward_fn returned {tuple(scores.shape)} scores for {len(prompts)} completions")
    if not torch.isfinite(scores).all():
        raise ValueError("reward_fn returned a NaN or infinite reward")
    # Attention: the real prompt tokens (left-padded to the longest prompt) and every generated token. The
    # model may itself sample the PAD id, so the mask cannot be recovered from `tokens != PAD_ID`.
    P = max(len(i) for i in ids)
    attn = gen_mask.clone()
    attn[:, :P] = tokens[:, :P] != PAD_ID
    return Rollouts(tokens, attn, gen_mask.float(), prompts, completions, infos, scores.to(tokens.device), P,
                    t1 - t0, time.perf_counter() - t1)


# --------------------------------------------------------------------------- the trainer
def train(
    policy: GPT,
    task: Task,
    config: RLConfig | None = None,
    tokenizer: Tokenizer | None = None,
    *,
    ref: GPT | None = None,
    kl_controller: AdaptiveKLController | FixedKLController | None = None,
    eval_fn: Callable[[GPT], dict] | None = None,
    progress: bool = True,
    desc: str | None = None,
    extra_rewards: dict[str, Callable] | None = None,
    ptx_data: Sequence[tuple[str, str]] | None = None,
    initial_eval: dict | None = None,
) -> dict:
    """Train `policy` in place with `config.algorithm` on `task`; return the history for plotting.

    `ref` is the frozen reference model of the KL penalty (None only if beta is 0 and no controller is given; it
    is then still needed for the logged KL, so pass it whenever you can). `kl_controller` overrides `beta` (an
    `AdaptiveKLController` is updated every step with the measured KL and the batch size). `extra_rewards` maps
    names to reward functions that are logged on the same rollouts but not optimized: the gold reward behind a
    proxy reward model, say (history[name] holds the mean per step). With `config.ptx_coef` = γ > 0, every update
    also minimizes γ times the next-token NLL of a batch of `ptx_data` (prompt, completion) pairs, on completion
    tokens as in the base model's pretraining: InstructGPT's "PPO-ptx" objective
    E[r − β KL] + γ E_{x~D_pretrain}[log π(x)].
    `initial_eval`: what `eval_fn` returns for the policy as passed in, when the caller already has it (a copy of
    the reference scores what the reference scored); it becomes the step-0 entry and saves one evaluation.

    history: per step "reward" (mean task reward), "reward_std", "kl" (exact sequence KL to the reference, mean
    over completions), "kl_penalty" (the estimator the penalty uses, summed per completion, mean), "entropy"
    (per generated token, nats), "beta", "loss", "clip_frac", "length" (generated tokens), "grad_norm",
    "seconds"; "samples": [(step, prompt, completion, reward)]; "eval": [(step, eval_fn(policy))];
    "config": the RLConfig as a dict.
    """
    cfg = config or RLConfig()
    tokenizer = tokenizer or Tokenizer()
    if ref is None and (cfg.beta > 0 or kl_controller is not None):
        raise ValueError("a KL penalty (beta > 0 or a kl_controller) needs the reference model `ref`")
    controller = kl_controller or FixedKLController(cfg.beta)
    est = estimator(cfg.kl_estimator)
    rng = np.random.default_rng([cfg.seed, 17])
    gen = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed + 2)  # minibatch order; the global RNG is left alone
    opt = adamw(policy, cfg.learning_rate, cfg.weight_decay)
    if ref is not None:
        ref.eval()  # scored under no_grad below; its requires_grad flags are left as they are
    if not any(p.requires_grad for p in policy.parameters()):
        raise ValueError("the policy has no trainable parameters (was it copied from a frozen model?)")
    keys = ("reward", "reward_std", "kl", "kl_penalty", "entropy", "beta", "loss", "clip_frac", "length",
            "grad_norm", "seconds")
    extra_rewards = dict(extra_rewards or {})
    clash = set(extra_rewards) & (set(keys) | {"step", "ptx_loss", "samples", "eval", "config"})
    if clash:
        raise ValueError(f"extra_rewards names {sorted(clash)} clash with the history's own keys")
    history: dict[str, Any] = {"step": [], **{k: [] for k in keys}, **{k: [] for k in extra_rewards},
                               "ptx_loss": [], "samples": [], "eval": [], "config": asdict(cfg)}
    if cfg.ptx_coef > 0 and not ptx_data:
        raise ValueError("ptx_coef > 0 needs ptx_data: the (prompt, completion) pairs of the skill to keep")
    ptx_examples = encode_pairs(ptx_data, tokenizer) if cfg.ptx_coef > 0 else []
    ptx_gen = torch.Generator().manual_seed(cfg.seed + 1)

    def ptx_batch() -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(len(ptx_examples), (cfg.ptx_batch_size,), generator=ptx_gen).tolist()
        # The same loss the base model was pretrained with (toyenv.experiments.base_model: completion tokens only).
        # A whole-sequence loss would also fit the prompts, which the base model never modelled, and damage the skill
        # it should keep.
        tokens_, loss_mask = collate([ptx_examples[i] for i in pick], completion_only=True)
        return tokens_.to(policy.device), loss_mask.to(policy.device)

    def run_eval(step: int) -> None:
        if eval_fn is not None:
            with eval_mode(policy):
                history["eval"].append((step, eval_fn(policy)))

    if cfg.eval_every:
        if initial_eval is not None:
            history["eval"].append((0, initial_eval))
        else:
            run_eval(0)
    bar = progress_bar(range(cfg.max_steps), desc or f"RL ({cfg.algorithm})", enabled=progress)
    for step in bar:
        t0 = time.perf_counter()
        beta = controller.value
        # 1. rollouts ------------------------------------------------------------------------------------
        try:
            ro = rollout(policy, task, tokenizer, cfg, rng, gen)
        except FloatingPointError as e:  # generate found non-finite logits: say when, and the likely cause
            raise FloatingPointError(f"RL rollout at step {step} (learning_rate={cfg.learning_rate}): {e}") from None
        # 2. old and reference log-probs ------------------------------------------------------------------
        # Everything from here on lives on the completion columns (B, S): the k completions of a prompt are scored
        # with the prompt read once (`completion_logprobs`), as the sampler did.
        P, k = ro.prompt_len, cfg.num_generations
        prompts, prompt_attn = ro.tokens[::k, :P], ro.attention_mask[::k, :P]
        completions, completion_attn, mask = ro.tokens[:, P:], ro.attention_mask[:, P:], ro.mask[:, P:]

        def logprobs(model: GPT, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            if rows is None:
                return completion_logprobs(model, prompts, prompt_attn, completions, completion_attn, None,
                                           cfg.temperature)
            groups, index = torch.unique(rows // k, return_inverse=True)  # the prompts this minibatch continues
            return completion_logprobs(model, prompts[groups], prompt_attn[groups], completions[rows],
                                       completion_attn[rows], index, cfg.temperature)

        # With one minibatch the policy has not moved yet when the update starts, so the update's first forward
        # pass (with gradient) doubles as π_old: one forward pass fewer per step.
        policy.train()
        reuse = cfg.num_minibatches == 1
        if reuse:
            first_logp, first_dist = logprobs(policy)
            old_logp, old_dist = first_logp.detach(), first_dist.detach()
        else:
            with torch.no_grad():
                old_logp, old_dist = logprobs(policy)
        with torch.no_grad():
            if ref is not None:
                ref_logp, ref_dist = logprobs(ref)
                # exact KL(π(·|s_t) ‖ π_ref(·|s_t)) at every generated position, summed along the completion
                kl_exact = (exact_categorical(old_dist, ref_dist) * mask).sum(1)
            else:
                ref_logp, kl_exact = old_logp, torch.zeros_like(ro.scores)
            entropy = _masked_mean(-(old_dist.exp() * old_dist).sum(-1), mask)
            kl_tok = est(old_logp, ref_logp) * mask  # the penalty's per-token estimate at the samples
            # 3. KL in the reward: R = r − β Σ_t kl_t --------------------------------------------------------
            R = ro.scores - beta * kl_tok.sum(1) if cfg.kl_in == "reward" else ro.scores
            # 4. advantages ------------------------------------------------------------------------------
            adv = advantages(R, cfg.algorithm, cfg.num_generations, cfg.scale_rewards)
        # 5. update ------------------------------------------------------------------------------------
        B = completions.shape[0]
        losses, clipped, norms, ptx_losses = [], [], [], []
        for it in range(cfg.num_iterations):
            order = torch.randperm(B, generator=shuffle_gen) if cfg.num_minibatches > 1 else torch.arange(B)
            for mb in order.chunk(cfg.num_minibatches):
                m = mask[mb]
                if reuse and it == 0:
                    logp = first_logp
                else:
                    logp, _ = logprobs(policy, mb)
                ratio = torch.exp(logp - old_logp[mb])
                a = adv[mb].unsqueeze(1)
                if cfg.algorithm in CLIPPED:
                    per_token = clipped_objective(ratio, a, cfg.epsilon)
                else:
                    per_token = -ratio * a
                loss = _masked_mean(per_token, m)
                if cfg.kl_in == "loss" and beta > 0:
                    kl_term = est(logp, ref_logp[mb])
                    if cfg.use_bias_correction_kl:  # the ratio's gradient is kept: E[∇(ρ k3)] = ∇KL(π‖ref)
                        kl_term = ratio * kl_term
                    loss = loss + beta * _masked_mean(kl_term, m)
                if cfg.ptx_coef > 0:  # PPO-ptx: keep the pretraining-style data likely
                    ptx_loss = completion_loss(policy, *ptx_batch())
                    loss = loss + cfg.ptx_coef * ptx_loss
                    ptx_losses.append(ptx_loss.item())
                ensure_finite(loss, "RL loss", step, cfg.learning_rate)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                norms.append(float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)))
                # a finite loss can still have a NaN gradient: stop before it reaches the weights
                ensure_finite(norms[-1], "RL gradient norm", step, cfg.learning_rate)
                opt.step()
                losses.append(loss.item())
                with torch.no_grad():
                    clipped.append(_masked_mean(((ratio - 1).abs() > cfg.epsilon).float(), m).item())
        # logging ----------------------------------------------------------------------------------------
        mean_kl = kl_exact.mean().item()
        controller.update(mean_kl, B)
        history["step"].append(step)
        for key, value in (("reward", ro.scores.mean().item()), ("reward_std", ro.scores.std().item()),
                           ("kl", mean_kl), ("kl_penalty", kl_tok.sum(1).mean().item()),
                           ("entropy", entropy.item()), ("beta", beta), ("loss", float(np.mean(losses))),
                           ("clip_frac", float(np.mean(clipped))), ("length", mask.sum(1).mean().item()),
                           ("grad_norm", float(np.mean(norms))), ("seconds", time.perf_counter() - t0)):
            history[key].append(value)
        history["ptx_loss"].append(float(np.mean(ptx_losses)) if ptx_losses else float("nan"))
        for name, fn in extra_rewards.items():
            history[name].append(float(np.mean([float(v) for v in fn(ro.prompts, ro.completions, ro.infos)])))
        # rows p·G .. p·G + G − 1 are prompt p's: log each prompt's first completion, then each one's second, ...
        for j in sorted(range(B), key=lambda row: (row % cfg.num_generations, row))[:cfg.log_samples]:
            history["samples"].append((step, ro.prompts[j], ro.completions[j], ro.scores[j].item()))
        bar.set_postfix(reward=f"{history['reward'][-1]:.2f}", kl=f"{mean_kl:.3f}")
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.max_steps):
            run_eval(step + 1)
    policy.eval()
    return history
