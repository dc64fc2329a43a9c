"""A reward model trained on preference pairs with the Bradley–Terry loss.

RLHF usually has no reward function, only comparisons: "completion A is better
than B for this prompt". A reward model turns them into a score. It is the GPT
trunk (embeddings, blocks, final layer norm) with the language-model head swapped
for a scalar head, read at the last real token of `BOS prompt completion EOS`
(TRL's `AutoModelForSequenceClassification` with `num_labels=1`).

Bradley–Terry: P(chosen ≻ rejected) = σ(r(chosen) − r(rejected)), so the loss is

    loss = −log σ(r_c − r_r − m)

with m = 0 for plain BT (Ouyang et al. 2022) and m > 0 the Llama 2 margin
(Touvron et al. 2023): pairs labelled "significantly better" must be separated
by at least m before the loss stops pushing. Only differences of scores enter,
so the scale and offset of r are arbitrary.

In the course the comparisons come from a hidden *gold* reward (the task's
verifier) on samples of the policy, as in Gao et al. 2022, "Scaling Laws for
Reward Model Overoptimization": the reward model learned from a few pairs is a
*proxy*, and a policy optimized hard against it finds where proxy and gold
disagree. `toyenv.pairs.sample_preference_pairs` builds such pairs, `train` fits
the proxy, and `as_reward_fn` hands it to the RL trainer.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model import GPT, GPTConfig, completion_groups, completion_pass, padded_causal_mask, prompt_pass, trunk
from ..pairs import PreferencePair, as_pairs, pairwise_accuracy
from ..tokenizer import EOS_ID, PAD_ID, Tokenizer, pad_preference_batch
from ..utils import eval_mode, progress_bar
from ..validation import check_bool
from .common import adamw, check_optimization_fields, ensure_finite, epoch_batches, scheduled_lr, set_lr

__all__ = [
    "RewardModel", "RewardConfig", "encode_preference", "score_texts", "as_reward_fn", "bradley_terry_loss",
    "train", "pair_scores", "preference_accuracy", "save_reward_model", "load_reward_model",
]


# --------------------------------------------------------------------------- the model
class RewardModel(nn.Module):
    """GPT trunk + scalar head: `forward(tokens, attention_mask) -> (B,)` scores.

    `RewardModel.from_gpt(model)` starts from a (pretrained or fine-tuned) GPT, which is how reward
    models are built in practice: the trunk already reads the task. `RewardModel(config)` is a fresh one.
    """

    def __init__(self, config: GPTConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GPTConfig()
        # A fresh GPT's trunk (its ModuleDict, initialized as GPT initializes it), so that the submodules have the
        # same names as GPT.transformer and a pretrained GPT's trunk loads as is. The LM head is dropped.
        self.transformer = GPT(config).transformer
        # No bias: the BT loss sees only differences of scores, so a bias would never get a gradient.
        # "score" is the head's name in TRL / transformers' sequence-classification models.
        self.score = nn.Linear(config.n_embd, 1, bias=False)
        self._init_head()

    def _init_head(self) -> None:
        # std 1/sqrt(n_embd + 1) as in OpenAI's lm-human-preferences: initial scores of order 1, so the
        # loss starts near log 2 but the head is not stuck at zero.
        nn.init.normal_(self.score.weight, mean=0.0, std=1.0 / math.sqrt(self.config.n_embd + 1))

    @classmethod
    def from_gpt(cls, model: GPT) -> "RewardModel":
        """A reward model whose trunk is a copy of `model`'s (which is left untouched) and a fresh head.

        The head's initialization uses the global torch RNG: call `seed_everything` first to reproduce it.
        """
        if not isinstance(model, GPT):
            raise TypeError(f"from_gpt expects a toyenv GPT, got {type(model).__name__}")
        rm = cls(copy.deepcopy(model.config))
        # load_state_dict copies values, so the reward model shares no tensor with `model`.
        rm.transformer.load_state_dict(model.transformer.state_dict())
        ref = model.lm_head.weight
        return rm.to(device=ref.device, dtype=ref.dtype)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.score.weight.device

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) of `tokens` (B, T): the head applied at each row's last real token.

        `attention_mask` (B, T) is True on real tokens; rows may be left- or right-padded (or not at all).
        Without it, tokens equal to PAD count as padding. Positions count real tokens only, as in
        `GPT.forward`, so a padded row scores exactly what it scores alone.
        """
        T = tokens.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size {self.config.block_size}")
        real = (tokens != PAD_ID) if attention_mask is None else attention_mask.to(dtype=torch.bool, device=tokens.device)
        if real.shape != tokens.shape:
            raise ValueError(f"attention_mask shape {tuple(real.shape)} != tokens shape {tuple(tokens.shape)}")
        n_real = real.sum(-1)
        if bool((n_real == 0).any()):
            raise ValueError(f"row {int((n_real == 0).nonzero()[0])} has no real token to score")
        ar = torch.arange(T, device=tokens.device)
        if bool((real == (ar < n_real[:, None])).all()):
            # Right-padded (or unpadded): causal attention never lets a real token see the pads after it,
            # so the plain causal path (no mask, positions 0..T-1) computes the same and is faster.
            pos, attn_mask = ar.unsqueeze(0), None
        else:
            pos = (real.long().cumsum(-1) - 1).clamp(min=0)
            attn_mask = padded_causal_mask(real)
        return self._score_last_real(trunk(self.transformer, tokens, pos, attn_mask), real)

    def completion_scores(self, prompts: torch.Tensor, prompt_mask: torch.Tensor, completions: torch.Tensor,
                          completion_mask: torch.Tensor, prompt_index: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) of completions that share prompts, each read at its last real token: the same numbers, up to
        float rounding, as `forward` over the rows [prompt, completion], with each prompt read once.

        The layout is `GPT.completion_logits`': `prompts` (Bp, P) left-padded, `prompt_mask` True at their real
        tokens; `completions` (B, S) right-padded, `completion_mask` True at real tokens; `prompt_index` (B,)
        names each completion's prompt row (default: B // Bp consecutive completions per prompt). The trainer
        scores each pair's chosen and rejected completion this way (`toyenv.tokenizer.pad_preference_batch`, k = 2):
        on GeneralPoints the prompt is about 75 of a row's 90 tokens, so a step reads 40% fewer tokens.
        """
        prompt_index, k = completion_groups(prompts, prompt_mask, completions, completion_mask, prompt_index,
                                            self.config.block_size)
        real = completion_mask.to(dtype=torch.bool, device=completions.device)
        empty = ~real.any(-1)
        if bool(empty.any()):
            raise ValueError(f"completion {int(empty.nonzero()[0])} has no real token to score")
        _, present = prompt_pass(self.transformer, prompts, prompt_mask)
        return self._score_last_real(completion_pass(self.transformer, present, prompt_mask, completions, real,
                                                     prompt_index, k), real)

    def _score_last_real(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """The head on the trunk's hidden states `x` (B, T, n_embd) at each row's last True of `real` (B, T)."""
        last = x.shape[1] - 1 - real.flip(-1).long().argmax(-1)  # index of the last True in each row
        h = x[torch.arange(x.shape[0], device=x.device), last]  # (B, n_embd): only these rows need ln_f and the head
        return self.score(self.transformer.ln_f(h)).squeeze(-1)


# --------------------------------------------------------------------------- encoding
def encode_preference(prompt: str, completion: str, tokenizer: Tokenizer | None = None,
                      max_length: int | None = None) -> list[int]:
    """Ids of `BOS prompt completion EOS`, as `toyenv.tokenizer.encode_pairs` writes a (prompt, completion).

    With `max_length`, a sequence that is too long keeps its prompt and EOS and loses the end of the
    completion (the reward model judges what it can read); without it, nothing is cut.
    """
    tokenizer = tokenizer or Tokenizer()
    p = tokenizer.encode(prompt, bos=True)
    c = tokenizer.encode(completion)
    if max_length is not None and len(p) + len(c) + 1 > max_length:
        if len(p) + 1 > max_length:
            raise ValueError(f"prompt of {len(p)} tokens (with BOS) leaves no room within max_length {max_length}")
        c = c[: max_length - len(p) - 1]
    return p + c + [EOS_ID]


def _check_lengths(seqs: Sequence[Sequence[int]], block_size: int) -> None:
    too_long = [len(s) for s in seqs if len(s) > block_size]
    if too_long:
        raise ValueError(
            f"{len(too_long)} sequence(s) exceed block_size {block_size} (longest {max(too_long)} tokens, "
            "counting BOS and EOS)"
        )


# --------------------------------------------------------------------------- scoring
@torch.no_grad()
def score_texts(rm: RewardModel, prompts: Sequence[str], completions: Sequence[str],
                tokenizer: Tokenizer | None = None, batch_size: int = 256, truncate: bool = False) -> torch.Tensor:
    """Scores (B,) float32 on the CPU of each (prompt, completion), in batches, under no_grad.

    The model is put in eval mode and restored. A sequence longer than block_size raises ValueError,
    unless `truncate`, which cuts the end of the completion (see `encode_preference`).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    max_length = rm.config.block_size if truncate else None
    seqs = [encode_preference(p, c, tokenizer, max_length) for p, c in zip(prompts, completions)]
    _check_lengths(seqs, rm.config.block_size)
    out = []
    with eval_mode(rm):
        for start in range(0, len(seqs), batch_size):
            tokens, mask = Tokenizer().pad_batch(seqs[start : start + batch_size], side="right")
            out.append(rm(tokens.to(rm.device), mask.to(rm.device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def as_reward_fn(rm: RewardModel, tokenizer: Tokenizer | None = None, batch_size: int = 256
                 ) -> Callable[..., list[float]]:
    """`reward_fn(prompts, completions, infos=None) -> list[float]` scoring with `rm`, for `toyenv.trainers.rl`.

    Use it as `task.with_reward(as_reward_fn(rm, tok), "proxy RM")`. `infos` is ignored: the reward
    model sees only text. Completions too long for the model are truncated rather than raising, since
    the RL trainer feeds it untrusted samples.
    """

    def reward_fn(prompts: Sequence[str], completions: Sequence[str], infos: Sequence[dict] | None = None
                  ) -> list[float]:
        return score_texts(rm, prompts, completions, tokenizer, batch_size, truncate=True).tolist()

    return reward_fn


# --------------------------------------------------------------------------- loss and training
def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor,
                       margin: float | torch.Tensor | None = None) -> torch.Tensor:
    """Mean of −log σ(r_c − r_r − m) over the batch: Bradley–Terry, and Llama 2's margin loss (Touvron et al. 2023,
    eq. 2).

    m = None or 0 is the plain Bradley–Terry loss. A margin m >= 0 (a float, or one per pair (B,), e.g.
    `toyenv.pairs.margins_for(strengths)`) makes the loss keep pushing until r_c exceeds r_r by about m, so pairs
    judged clearly better end up further apart. A negative margin would let the loss relax before the chosen
    completion even wins, and is refused. `logsigmoid` rather than `log(sigmoid(.))`: the latter underflows to
    log 0 = −inf for large negative differences.
    """
    if chosen_scores.shape != rejected_scores.shape:
        raise ValueError(f"chosen scores have shape {tuple(chosen_scores.shape)} but rejected scores have "
                         f"{tuple(rejected_scores.shape)}")
    if chosen_scores.numel() == 0:
        raise ValueError("empty batch: the mean loss of zero pairs is undefined")
    diff = chosen_scores - rejected_scores
    if margin is not None:
        m = torch.as_tensor(margin, dtype=diff.dtype, device=diff.device)
        if m.dim() > 0 and m.shape != diff.shape:
            raise ValueError(f"margin has shape {tuple(m.shape)}; give one float or one per pair {tuple(diff.shape)}")
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ValueError("margins must be finite and >= 0 (see toyenv.pairs.LLAMA2_MARGINS)")
        diff = diff - m
    return -F.logsigmoid(diff).mean()


@dataclass
class RewardConfig:
    max_steps: int = 300
    batch_size: int = 32  # pairs per step (2 * batch_size sequences go through the model)
    learning_rate: float = 3e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    use_margin: bool = False  # subtract each pair's `margin` in the loss (Llama 2); off: plain BT
    seed: int = 0
    eval_every: int = 0  # held-out accuracy every this many steps (0: only before and after training)

    def __post_init__(self) -> None:
        check_optimization_fields(self)
        check_bool(self, "use_margin")


def _encode_pairs(pairs: list[PreferencePair], tokenizer: Tokenizer | None, block_size: int):
    """Per pair, the ids of `BOS prompt`, `chosen EOS` and `rejected EOS` (each row `encode_preference`'s, cut in
    two), and the margins (B,)."""
    tokenizer = tokenizer or Tokenizer()
    prompts = [tokenizer.encode(p.prompt, bos=True) for p in pairs]
    chosen = [tokenizer.encode(p.chosen, eos=True) for p in pairs]
    rejected = [tokenizer.encode(p.rejected, eos=True) for p in pairs]
    _check_lengths([p + c for p, c in zip(prompts + prompts, chosen + rejected)], block_size)
    margins = torch.tensor([float(p.margin) for p in pairs], dtype=torch.float32)
    return prompts, chosen, rejected, margins


def pair_scores(rm: RewardModel, prompts: list, chosen: list, rejected: list) -> tuple[torch.Tensor, torch.Tensor]:
    """`(chosen_scores, rejected_scores)`, each (B,), of B encoded pairs (ids of `BOS prompt`, `chosen EOS` and
    `rejected EOS`), in one pass that reads each prompt once for its two completions: the trainer's scorer."""
    scores = rm.completion_scores(*(t.to(rm.device) for t in pad_preference_batch(prompts, chosen, rejected)))
    return scores[0::2], scores[1::2]


def preference_accuracy(rm: RewardModel, pairs: Sequence, tokenizer: Tokenizer | None = None,
                        batch_size: int = 256) -> float:
    """Fraction of pairs with score(chosen) > score(rejected); ties count as 0.5."""
    pairs = as_pairs(pairs)
    if not pairs:
        raise ValueError("preference_accuracy needs at least one pair")
    prompts = [p.prompt for p in pairs]
    r_c = score_texts(rm, prompts, [p.chosen for p in pairs], tokenizer, batch_size)
    r_r = score_texts(rm, prompts, [p.rejected for p in pairs], tokenizer, batch_size)
    return pairwise_accuracy(r_c, r_r)


def train(
    rm: RewardModel,
    pairs: Sequence,
    config: RewardConfig | None = None,
    tokenizer: Tokenizer | None = None,
    eval_pairs: Sequence | None = None,
    progress: bool = True,
    desc: str = "reward model",
) -> dict:
    """Fit `rm` in place on preference pairs with the Bradley–Terry loss; return the history.

    `pairs` (and `eval_pairs`) are PreferencePairs or (prompt, chosen, rejected) tuples. history:
    {"step", "loss", "accuracy" (on the batch), "lr", "grad_norm": per step; "eval": [(step,
    {"accuracy", "loss"}), ...] on `eval_pairs`, before training, every `config.eval_every` steps and
    after the last; "config": the RewardConfig as a dict}. Batches are drawn by a generator seeded with
    `config.seed`, so the same model, data and seed give the same history. A loss or gradient norm that
    becomes NaN or inf stops training with FloatingPointError, before the update.
    """
    cfg = config or RewardConfig()
    pairs = as_pairs(pairs)
    if not pairs:
        raise ValueError("the reward-model trainer needs at least one preference pair")
    prompts, chosen, rejected, margins = _encode_pairs(pairs, tokenizer, rm.config.block_size)
    if eval_pairs is not None:
        eval_pairs = as_pairs(eval_pairs, "eval_pairs")
        if not eval_pairs:
            raise ValueError("eval_pairs is empty; pass None for no evaluation")
        ev_prompts, ev_chosen, ev_rejected, ev_margins = _encode_pairs(eval_pairs, tokenizer, rm.config.block_size)
    dev = rm.device
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = adamw(rm, cfg.learning_rate, cfg.weight_decay)
    history = {"step": [], "loss": [], "accuracy": [], "lr": [], "grad_norm": [], "eval": [], "config": asdict(cfg)}

    @torch.no_grad()
    def run_eval(step: int, batch_size: int = 256) -> None:
        if eval_pairs is None:
            return
        rm.eval()
        r_c, r_r = [], []
        for s in range(0, len(ev_chosen), batch_size):
            c, r = pair_scores(rm, ev_prompts[s : s + batch_size], ev_chosen[s : s + batch_size],
                                ev_rejected[s : s + batch_size])
            r_c.append(c.float().cpu())
            r_r.append(r.float().cpu())
        r_c, r_r = torch.cat(r_c), torch.cat(r_r)
        loss = bradley_terry_loss(r_c, r_r, ev_margins if cfg.use_margin else None)
        history["eval"].append((step, {"accuracy": pairwise_accuracy(r_c, r_r), "loss": loss.item()}))

    run_eval(0)
    # fewer pairs than a batch: every step sees all of them
    batches = epoch_batches(len(pairs), min(cfg.batch_size, len(pairs)), gen)
    bar = progress_bar(range(cfg.max_steps), desc, enabled=progress)
    for step in bar:
        idx = next(batches)

        rm.train()
        lr = scheduled_lr(step, cfg)
        set_lr(opt, lr)
        r_c, r_r = pair_scores(rm, [prompts[i] for i in idx], [chosen[i] for i in idx], [rejected[i] for i in idx])
        loss = bradley_terry_loss(r_c, r_r, margins[idx].to(dev) if cfg.use_margin else None)
        ensure_finite(loss, "reward model loss", step, cfg.learning_rate)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(rm.parameters(), cfg.max_grad_norm)
        ensure_finite(grad_norm, "reward model gradient norm", step, cfg.learning_rate)  # before opt.step
        opt.step()

        acc = pairwise_accuracy(r_c.detach(), r_r.detach())
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["accuracy"].append(acc)
        history["lr"].append(lr)
        history["grad_norm"].append(float(grad_norm))
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}")
        if step + 1 == cfg.max_steps or (cfg.eval_every and (step + 1) % cfg.eval_every == 0):
            run_eval(step + 1)
    rm.eval()
    return history


# --------------------------------------------------------------------------- saving and loading
RM_FORMAT = "toyenv-reward-model-v1"


def save_reward_model(path, rm: RewardModel, **meta) -> Path:
    """Write the reward model's weights, config and `meta` (JSON-like values) to `path`.

    Plain tensors, numbers and strings only, so `load_reward_model` can use `torch.load(weights_only=True)`.
    """
    import dataclasses
    import json
    from pathlib import Path

    from ..checkpoint import save_blob

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.loads(json.dumps(meta))  # fails early on anything that is not JSON-like
    blob = {"format": RM_FORMAT, "config": dataclasses.asdict(rm.config),
            "state_dict": {k: v.detach().cpu().clone() for k, v in rm.state_dict().items()}, "meta": meta}
    save_blob(blob, path)  # through a temporary file, with CRCs
    return path


def load_reward_model(path, map_location="cpu") -> tuple[RewardModel, dict]:
    """`(reward_model, meta)` from a file written by `save_reward_model`; the model is in eval mode.

    Checked as `load_checkpoint` checks a GPT (see toyenv.checkpoint): CRCs, fields, config, and every
    tensor's shape before the model is built. Anything wrong raises CheckpointError naming the file.
    """
    from pathlib import Path

    from ..checkpoint import CheckpointError, check_weights, read_blob, read_config

    path = Path(path)
    what = "reward model"
    blob = read_blob(path, RM_FORMAT, ("config", "state_dict", "meta"), "cpu", what)
    config = read_config(path, blob["config"], what)
    check_weights(path, blob["state_dict"], config, head="score", what=what)
    rm = RewardModel(config)  # only now: its size is that of the tensors in the file
    try:
        rm.load_state_dict(blob["state_dict"])
    except (RuntimeError, TypeError) as e:  # not expected after check_weights; kept so nothing escapes unnamed
        raise CheckpointError(f"{path}: weights do not fit the stored config ({e})") from None
    return rm.to(map_location).eval(), blob["meta"]
