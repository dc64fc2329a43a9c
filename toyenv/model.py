"""The course's tiny GPT, in one file (after nanoGPT's model.py).

Pre-norm transformer blocks, learned positions, tied input/output embeddings,
and attention through `F.scaled_dot_product_attention`. Two things differ from a
plain language model because RLHF needs them:

* `forward(idx)` returns logits at *every* position: policy-gradient losses,
  KL penalties and DPO all score each generated token, not just the last one.
* batches mix prompts of different lengths, so prompts are left-padded and an
  `attention_mask` (True = real token) keeps pads out of attention and out of
  the position count. A padded row then computes exactly what it would alone.

`generate` samples with a key/value cache: each new token attends to stored
keys and values instead of re-running the whole prefix, which is what makes
sampling 64 rollouts per RL step affordable on a CPU. `completion_logits` scores
the k completions of a prompt the same way, with gradients: the prompt's pass
runs once and its keys and values are handed to each completion (`prompt_pass`,
`completion_pass`; the reward model reads a pair's two completions through them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .tokenizer import EOS_ID, PAD_ID, Tokenizer
from .utils import eval_mode


@dataclass
class GPTConfig:
    block_size: int = 384  # longest prompt + completion the model can read
    vocab_size: int = Tokenizer().vocab_size
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # no biases in Linear/LayerNorm: a little faster, no worse at this scale

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused q, k, v
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x, attn_mask=None, cache=None, cache_pos=0, past=None, present=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if present is not None:  # a shared prompt's pass hands its keys/values on (with their gradient)
            present.append((k, v))
        if past is not None:  # ... to its completions' pass, which attends to them before its own
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        if cache is not None:
            # Write this chunk's keys/values into the preallocated cache, then attend to everything so far.
            k_cache, v_cache = cache
            k_cache[:, :, cache_pos : cache_pos + T] = k
            v_cache[:, :, cache_pos : cache_pos + T] = v
            k, v = k_cache[:, :, : cache_pos + T], v_cache[:, :, : cache_pos + T]
        # With no mask the fast causal kernel applies; a single query over a cache needs no causal mask at all.
        is_causal = attn_mask is None and T > 1
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attn_mask=None, cache=None, cache_pos=0, past=None, present=None):
        x = x + self.attn(self.ln_1(x), attn_mask, cache, cache_pos, past, present)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or GPTConfig()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        self.apply(self._init_weights)
        # GPT-2's scaled init of residual projections keeps the residual stream's variance flat with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameter count (tied embeddings counted once, position embeddings included)."""
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    # ------------------------------------------------------------------ forward
    def forward(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) at every position of `idx` (B, T).

        `attention_mask` (B, T), True for real tokens, is needed only when rows hold padding; positions
        then count real tokens only, so a left-padded prompt gets the same positions as an unpadded one.
        """
        return self.lm_head(self.features(idx, attention_mask))

    def features(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden states (B, T, n_embd), after ln_f: what the LM head reads (`forward` = lm_head of these)."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size {self.config.block_size}")
        if attention_mask is None:
            pos = torch.arange(T, device=idx.device).unsqueeze(0)
            return self._features(idx, pos)
        attention_mask = attention_mask.to(dtype=torch.bool, device=idx.device)
        if attention_mask.shape != idx.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != idx shape {tuple(idx.shape)}")
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self._features(idx, pos, padded_causal_mask(attention_mask))

    def _features(self, idx, pos, attn_mask=None, caches=None, cache_pos=0):
        return self.transformer.ln_f(trunk(self.transformer, idx, pos, attn_mask, caches, cache_pos))

    def _forward(self, idx, pos, attn_mask=None, caches=None, cache_pos=0):
        return self.lm_head(self._features(idx, pos, attn_mask, caches, cache_pos))

    def completion_logits(self, prompts: torch.Tensor, prompt_mask: torch.Tensor, completions: torch.Tensor,
                          completion_mask: torch.Tensor, prompt_index: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, S, vocab) for every completion token: out[:, j] is the distribution completion token j is
        scored under, given its prompt and completions[:, :j]. The same numbers (up to float rounding) as `forward`
        over the rows [prompt, completion] at their columns P-1 .. P+S-2, with each prompt read once.

        `prompts` (Bp, P) are left-padded, `prompt_mask` True at their real tokens; `completions` (B, S) follow
        them, `completion_mask` True at real tokens (a completion that ended early is padded after its EOS);
        `prompt_index` (B,) names each completion's prompt row (default: B // Bp consecutive completions per
        prompt, the layout of `generate(..., num_return_sequences=k)`).

        Why: RL scores k completions of every prompt, and on the course's tasks the prompt is most of each row
        (GeneralPoints: about 75 of 90 columns). The prompt's pass runs once per prompt; its keys and values are
        handed to each of its completions, and gradients from all k flow back into it.
        """
        S = completions.shape[1]
        prompt_index, k = completion_groups(prompts, prompt_mask, completions, completion_mask, prompt_index,
                                            self.config.block_size)
        # 1. Each prompt once: its hidden states, and every layer's keys and values.
        h_prompts, present = prompt_pass(self.transformer, prompts, prompt_mask)
        # index_select, not [prompt_index]: its backward (index_add) sums the k copies' gradients several times faster.
        # The prompts' last column is real (left padding).
        first = self.lm_head(self.transformer.ln_f(h_prompts[:, -1])).index_select(0, prompt_index)
        if S == 1:
            return first[:, None]
        # 2. The completions, but their last token (it predicts nothing), after a copy of their prompt's keys.
        h = completion_pass(self.transformer, present, prompt_mask, completions[:, :-1], completion_mask[:, :-1],
                            prompt_index, k)
        return torch.cat((first[:, None], self.lm_head(self.transformer.ln_f(h))), dim=1)

    # ----------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[Sequence[int]] | torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        greedy: bool = False,
        eos_id: int | None = EOS_ID,
        pad_id: int = PAD_ID,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        num_return_sequences: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample completions for a batch of prompts of different lengths.

        Returns `(tokens, generated_mask)`, both (B, P + n): `tokens` holds the left-padded prompts followed
        by the completions (a row that emitted EOS is padded with `pad_id` after it); `generated_mask` is
        True exactly at sampled positions, EOS included. Decode with
        `tokenizer.decode_batch(tokens, mask=generated_mask)`. Sampling stops when every row has emitted EOS
        or after `max_new_tokens`, so n <= max_new_tokens.

        `num_return_sequences` = k samples k completions per prompt (rows i*k .. i*k+k-1 belong to prompt i, as in
        Hugging Face's `generate`). With the cache, each prompt is read once and its keys/values are copied k
        times, which saves the prompt pass k-1 times over (RL's groups of `num_generations`).
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not greedy and temperature <= 0:
            raise ValueError(f"temperature must be > 0 (or use greedy=True), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if num_return_sequences < 1:
            raise ValueError(f"num_return_sequences must be >= 1, got {num_return_sequences}")
        k = int(num_return_sequences)
        dev = self.device
        idx, real = _left_pad(prompts, pad_id, dev)
        B, P = idx.shape
        total = P + max_new_tokens
        if total > self.config.block_size:
            raise ValueError(
                f"longest prompt ({P} tokens) + max_new_tokens ({max_new_tokens}) = {total} exceeds "
                f"block_size {self.config.block_size}"
            )
        if max_new_tokens == 0 or not use_cache:  # nothing to share: repeat the prompts up front
            idx, real, B = idx.repeat_interleave(k, 0), real.repeat_interleave(k, 0), B * k
        padded = not bool(real.all())
        cfg = self.config
        if use_cache and max_new_tokens > 0:
            # Prefill each distinct prompt once, then give each of its k rows a copy of the keys and values.
            shape = (B, cfg.n_head, total, cfg.n_embd // cfg.n_head)
            dtype = self.lm_head.weight.dtype
            caches = [(torch.empty(shape, dtype=dtype, device=dev), torch.empty(shape, dtype=dtype, device=dev))
                      for _ in range(cfg.n_layer)]
            pos = (real.long().cumsum(-1) - 1).clamp(min=0)
            logits = self._forward(idx, pos, padded_causal_mask(real) if padded else None, caches, 0)[:, -1]
            if k > 1:
                caches = [(kc.repeat_interleave(k, 0), vc.repeat_interleave(k, 0)) for kc, vc in caches]
                logits = logits.repeat_interleave(k, 0)
                idx, real, B = idx.repeat_interleave(k, 0), real.repeat_interleave(k, 0), B * k

        tokens = torch.full((B, total), pad_id, dtype=torch.long, device=dev)
        tokens[:, :P] = idx
        gen_mask = torch.zeros((B, total), dtype=torch.bool, device=dev)
        if max_new_tokens == 0:
            return tokens, gen_mask
        # Keys that may be attended: real prompt tokens, then every sampled slot. Rows that already ended
        # keep sampling into ignored slots; masking them would cost more than it saves.
        key_ok = torch.ones((B, total), dtype=torch.bool, device=dev)
        key_ok[:, :P] = real
        n_real = real.sum(1)  # position of the first generated token, per row
        finished = torch.zeros(B, dtype=torch.bool, device=dev)

        t = 0
        for t in range(max_new_tokens):
            if not use_cache:  # the slow reference path: re-run the whole prefix for every token
                n = P + t
                logits = self.forward(tokens[:, :n], key_ok[:, :n])[:, -1]
            # A healthy model never produces NaN or infinite logits; diverged weights do. Say so here, rather than
            # let multinomial fail with "probability tensor contains inf, nan or element < 0" (or argmax pick
            # garbage in silence). Reading the (B, V) logits costs far less than the forward pass that made them.
            if not bool(torch.isfinite(logits).all()):
                raise FloatingPointError(
                    f"generate: the model's logits are NaN or infinite at new token {t}: its weights have diverged, "
                    "typically from training with too high a learning rate. There is nothing meaningful to sample."
                )
            nxt = _sample(logits, temperature, top_k, greedy, generator)
            nxt = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
            tokens[:, P + t] = nxt
            gen_mask[:, P + t] = ~finished
            if eos_id is not None:
                finished |= nxt == eos_id
                if bool(finished.all()):
                    break
            if use_cache and t + 1 < max_new_tokens:
                mask = key_ok[:, None, None, : P + t + 1] if padded else None
                logits = self._forward(nxt[:, None], (n_real + t)[:, None], mask, caches, P + t)[:, -1]
        n_cols = P + t + 1
        return tokens[:, :n_cols], gen_mask[:, :n_cols]


# ---------------------------------------------------------------------- helpers
def complete(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], max_new_tokens: int, *,
             batch_size: int | None = None, **generate_kwargs) -> list[str]:
    """The text completions of `prompts`: each encoded as `BOS prompt`, sampled with `model.generate` (in batches of
    `batch_size` prompts; all at once when None) and decoded up to its EOS, under no_grad with the model in eval mode
    (its mode is given back after). `generate_kwargs` go to `generate` as they are (temperature, greedy, top_k,
    generator, num_return_sequences: with k, rows i*k .. i*k+k-1 are the completions of prompt i)."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
    ids = [tokenizer.encode(p, bos=True) for p in prompts]
    step = batch_size or max(1, len(ids))
    out: list[str] = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(ids), step):
            tokens, generated = model.generate(ids[start : start + step], max_new_tokens, **generate_kwargs)
            out += tokenizer.decode_batch(tokens, mask=generated)
    return out


def trunk(transformer: nn.ModuleDict, idx: torch.Tensor, pos: torch.Tensor, attn_mask: torch.Tensor | None = None,
          caches=None, cache_pos: int = 0, past=None, present=None) -> torch.Tensor:
    """The hidden states (B, T, n_embd) of a GPT trunk (`GPT.transformer`: embeddings and blocks, before ln_f) at
    positions `pos`. GPT puts ln_f and its LM head on top; the reward model reuses it with a scalar head.

    `caches` (per layer, preallocated, written in place: sampling, no gradient) or `past` (per layer, the (keys,
    values) that come before `idx`, concatenated: training through a shared prompt) give earlier tokens; a list
    passed as `present` collects each layer's (keys, values) of `idx`."""
    x = transformer.drop(transformer.wte(idx) + transformer.wpe(pos))
    for i, block in enumerate(transformer.h):
        x = block(x, attn_mask, None if caches is None else caches[i], cache_pos, None if past is None else past[i],
                  present)
    return x


# Completions that share prompts, read with gradients (`GPT.completion_logits`, and the reward model's
# `RewardModel.completion_scores`): the prompt's pass runs once, its keys and values are handed to each of its
# completions, and the gradients from all of them flow back into it. The caller puts its head on the hidden states
# between the two passes as it needs them.
def completion_groups(prompts: torch.Tensor, prompt_mask: torch.Tensor, completions: torch.Tensor,
                      completion_mask: torch.Tensor, prompt_index: torch.Tensor | None, block_size: int
                      ) -> tuple[torch.Tensor, int | None]:
    """`(prompt_index, k)` for completions (B, S) that follow prompts (Bp, P), after checking their shapes: each
    completion's prompt row, and k when they come in consecutive groups of k (the default when `prompt_index` is
    None, the layout of `generate(..., num_return_sequences=k)`), else None."""
    (Bp, P), (B, S) = prompts.shape, completions.shape
    if prompt_mask.shape != prompts.shape or completion_mask.shape != completions.shape or S == 0:
        raise ValueError(f"masks must match their tokens and completions be non-empty: prompts "
                         f"{tuple(prompts.shape)}, prompt_mask {tuple(prompt_mask.shape)}, completions "
                         f"{tuple(completions.shape)}, completion_mask {tuple(completion_mask.shape)}")
    if P + S > block_size:  # the rows [prompt, completion] that `forward` would read
        raise ValueError(f"prompt ({P}) + completion ({S}) tokens exceed block_size {block_size}")
    if prompt_index is not None:
        return prompt_index, None
    if Bp == 0 or B % Bp:
        raise ValueError(f"{B} completions do not split evenly over {Bp} prompts; pass prompt_index")
    return torch.arange(Bp, device=prompts.device).repeat_interleave(B // Bp), B // Bp


def prompt_pass(transformer: nn.ModuleDict, prompts: torch.Tensor, prompt_mask: torch.Tensor
                ) -> tuple[torch.Tensor, list]:
    """`(h, present)`: the trunk's hidden states (Bp, P, n_embd) of left-padded `prompts` (`prompt_mask` True at
    their real tokens), and every layer's (keys, values), for `completion_pass`."""
    prompt_mask = prompt_mask.to(dtype=torch.bool, device=prompts.device)
    present: list = []
    h = trunk(transformer, prompts, (prompt_mask.long().cumsum(-1) - 1).clamp(min=0),
              None if bool(prompt_mask.all()) else padded_causal_mask(prompt_mask), present=present)
    return h, present


def completion_pass(transformer: nn.ModuleDict, present: list, prompt_mask: torch.Tensor, completions: torch.Tensor,
                    completion_mask: torch.Tensor, prompt_index: torch.Tensor, k: int | None) -> torch.Tensor:
    """The trunk's hidden states (B, S, n_embd) of `completions` (right-padded, `completion_mask` True at real
    tokens) after their prompts' keys and values `present` (from `prompt_pass`): what `trunk` gives at the completion
    columns of the rows [prompt, completion], up to float rounding. `prompt_index` and `k` as `completion_groups`."""
    B, S = completions.shape
    P = prompt_mask.shape[1]
    prompt_mask = prompt_mask.to(dtype=torch.bool, device=completions.device)
    real = completion_mask.to(dtype=torch.bool, device=completions.device)
    pos = prompt_mask.sum(1)[prompt_index, None] + real.long().cumsum(-1) - 1  # as `forward` counts them
    own = padded_causal_mask(real).squeeze(1)  # (B, S, S)
    to_prompt = prompt_mask[prompt_index, None, :].expand(B, S, P)
    mask = torch.cat((to_prompt, own), dim=-1).unsqueeze(1)
    past = [(_per_completion(keys, prompt_index, k), _per_completion(values, prompt_index, k))
            for keys, values in present]
    return trunk(transformer, completions, pos, mask, past=past)


def _per_completion(x: torch.Tensor, prompt_index: torch.Tensor, k: int | None) -> torch.Tensor:
    """Each completion's copy of its prompt's rows of `x` (Bp, ...) -> (B, ...), with the k copies' gradients summed.

    With consecutive groups of k (`k` given), through expand: its backward sums the copies as a plain reduction over
    k, in order, which gives the same bits as index_select's backward (index_add) and is 4 times faster when the
    gradient arrives as a slice, as the attention's concatenation hands back the prompt's keys and values.
    Otherwise index_select, whose backward (index_add) is still several times faster than that of `x[prompt_index]`.
    """
    if k is None:
        return x.index_select(0, prompt_index)
    return x.unsqueeze(1).expand(x.shape[0], k, *x.shape[1:]).reshape(x.shape[0] * k, *x.shape[1:])


def padded_causal_mask(real: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) boolean mask: causal, keys must be real tokens.

    The diagonal is always allowed so that a pad query never sees an all-masked row (which would turn
    into NaN and poison gradients even though pad outputs are ignored).
    """
    T = real.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=real.device).tril()
    eye = torch.eye(T, dtype=torch.bool, device=real.device)
    return ((causal & real[:, None, :]) | eye).unsqueeze(1)


def _left_pad(prompts, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() != 2 or prompts.shape[1] == 0:
            raise ValueError(f"prompt tensor must be (batch, length>0), got shape {tuple(prompts.shape)}")
        idx = prompts.to(device=device, dtype=torch.long)
        return idx, torch.ones_like(idx, dtype=torch.bool)
    prompts = [list(p) for p in prompts]
    if not prompts:
        raise ValueError("generate needs at least one prompt")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; start it with at least the BOS token")
    T = max(len(p) for p in prompts)
    idx = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    real = torch.zeros((len(prompts), T), dtype=torch.bool)
    for i, p in enumerate(prompts):
        idx[i, T - len(p):] = torch.as_tensor(p, dtype=torch.long)
        real[i, T - len(p):] = True
    return idx.to(device), real.to(device)


def _sample(logits, temperature, top_k, greedy, generator) -> torch.Tensor:
    if greedy:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def token_logprobs(
    model: GPT,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    pad_id: int = PAD_ID,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Log-probability of each token given the tokens before it: (B, T), aligned with `tokens`.

    out[:, t] = log p(tokens[:, t] | tokens[:, :t]); out[:, 0] is 0 (nothing predicts the first token).
    The logits at position t-1 score token t: forgetting that shift (gathering `tokens[:, 1:]` from
    unshifted logits) is the classic off-by-one. Multiply by `generated_mask` from `generate` and sum
    for a completion's log-probability. Gradients flow (call under `torch.no_grad()` for a reference
    model). Without `attention_mask`, tokens equal to `pad_id` count as padding.
    """
    if attention_mask is None:
        attention_mask = tokens != pad_id
    picked, _ = next_token_logprobs(model, tokens, attention_mask, temperature)
    return F.pad(picked, (1, 0), value=0.0)


def completion_logprobs(model: GPT, prompts: torch.Tensor, prompt_mask: torch.Tensor, completions: torch.Tensor,
                        completion_mask: torch.Tensor, prompt_index: torch.Tensor | None = None,
                        temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(picked, logdist)` for completions that share prompts (`GPT.completion_logits`): logdist[:, j] (B, S, V) is
    the log-distribution completion token j was drawn from and picked[:, j] its log-prob. The RL trainer scores
    its k completions per prompt through it, reading each prompt once."""
    logits = model.completion_logits(prompts, prompt_mask, completions, completion_mask, prompt_index)
    return _picked_and_logdist(logits, completions, temperature)


def next_token_logprobs(model: GPT, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """`(picked, logdist)`, unshifted back: logdist[:, t] (B, T-1, V) is the log-distribution over token t+1
    given tokens[:, :t+1], and picked[:, t] = logdist[:, t, tokens[:, t+1]]. `token_logprobs` and the RL
    trainer (which also needs the full distributions, for entropy and exact KL) both score through it."""
    return _picked_and_logdist(model(tokens, attention_mask)[:, :-1], tokens[:, 1:], temperature)


def _picked_and_logdist(logits: torch.Tensor, targets: torch.Tensor, temperature: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-distributions of `logits` (B, T, V) at `temperature`, and the log-prob of each target (B, T) in its own."""
    if temperature != 1.0:
        logits = logits / temperature
    logdist = torch.log_softmax(logits.float(), dim=-1)
    return logdist.gather(-1, targets.unsqueeze(-1)).squeeze(-1), logdist
