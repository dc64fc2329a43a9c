"""toyenv's GPT against Hugging Face's GPT2LMHeadModel of the same shape, in one process.

`python -m benchmarks.run` prints these numbers in its table; this module only measures.

* Both models are built from `toyenv.GPTConfig()` with random weights (nothing is downloaded): speed does not
  depend on the values of the weights. `hf_config` lists what matches and what cannot.
* The two are timed *interleaved* (A, B, A, B, ... after a warm-up) and compared by their medians: a noisy
  neighbour, turbo or thermal throttling then slows both alike instead of whichever ran second.
* Throughput counts tokens: a training step reads batch x seq_len tokens; generation counts new tokens only,
  but its time includes reading the prompt (the prefill), as a caller sees it.
"""
from __future__ import annotations

import statistics
import time
import warnings
from typing import Callable

import torch
import torch.nn.functional as F

from toyenv import BOS_ID, EOS_ID, GPT, PAD_ID, GPTConfig, seed_everything

HF_MISSING = "transformers not installed (pip install -e '.[bench]')"


# ------------------------------------------------------------------------------------------- the two models
def have_transformers() -> bool:
    try:
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True


def hf_config(config: GPTConfig):
    """A GPT2Config as close to `config` as GPT-2's code allows.

    Matched: layers, heads, width, vocabulary, context (n_positions = block_size), MLP width 4 x n_embd, no
    dropout anywhere, tied input/output embeddings, learned positions, pre-norm blocks, LayerNorm eps 1e-5,
    exact (erf) GELU (GPT-2's default "gelu_new" is the tanh approximation), scaled dot-product attention with
    1/sqrt(head_dim), GPT-2's init (std 0.02, residual projections scaled by 1/sqrt(2 n_layer)).
    Not matched: GPT-2 always has biases (Conv1D and LayerNorm); toyenv's default has none (`bias=False`).
    """
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, n_inner=4 * config.n_embd,
        activation_function="gelu", layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        # GPT-2's defaults (50256) lie outside our vocabulary; generate needs ours.
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
    )


def build_models(config: GPTConfig | None = None, seed: int = 0):
    """(toyenv GPT, HF GPT2LMHeadModel or None when transformers is missing), both freshly initialized."""
    config = config or GPTConfig()
    seed_everything(seed)
    ours = GPT(config)
    if not have_transformers():
        return ours, None
    import transformers
    from transformers import GPT2LMHeadModel

    transformers.logging.set_verbosity_error()  # generate() warns about flags we set on purpose
    seed_everything(seed)
    # No attn_implementation: we measure HF's default, which `attn_implementation(model)` reports.
    return ours, GPT2LMHeadModel(hf_config(config))


def attn_implementation(hf_model) -> str:
    return hf_model.config._attn_implementation


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in matmuls: all of them, tied embeddings once, less the position table
    (a lookup, not a matmul; nanoGPT's `get_num_params` leaves it out too)."""
    wpe = model.transformer.wpe.weight.numel()
    return sum(p.numel() for p in model.parameters()) - wpe


def all_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


# ------------------------------------------------------------------------------------------------ timing
def interleave(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, called in turn (A, B, A, B, ...) for `rounds` rounds after
    `warmup` uncounted rounds (allocator, thread pool and first-call dispatch costs)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return seconds


def _try(fn: Callable[[], object]) -> str | None:
    """Run `fn` once (it doubles as a warm-up); the error as text if it fails, so one broken side (a future
    transformers API, say) leaves a note in its cell instead of ending the whole benchmark."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 (report anything)
        return f"error: {type(e).__name__}: {e}".splitlines()[0][:200]
    return None


def _rates(seconds: dict[str, list[float]], work: float) -> dict[str, float]:
    return {name: work / statistics.median(s) for name, s in seconds.items()}


# ------------------------------------------------------------------------------------------- 1. training
def random_tokens(batch: int, length: int, vocab_size: int, seed: int) -> torch.Tensor:
    """(batch, length) ids; specials (pad, BOS, EOS: ids 0-2) excluded, so no model treats any as padding."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab_size, (batch, length), generator=g)


def train_step(model: torch.nn.Module, logits_of: Callable, tokens: torch.Tensor, lr: float) -> Callable[[], None]:
    """A closure doing one step: forward, next-token cross-entropy, backward, AdamW. The loss is computed
    here, identically for both models (not by HF's `labels=`)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step() -> None:
        logits = logits_of(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def training_throughput(batch: int = 32, seq_len: int | None = None, rounds: int = 10, warmup: int = 2,
                        lr: float = 3e-4, seed: int = 0, config: GPTConfig | None = None) -> dict:
    """Median tokens/s of a training step for each model on the same batch (seq_len defaults to block_size).

    Returns {"toyenv", "transformers"} tokens/s (transformers: None, with "transformers_note" saying why),
    "params" and "matmul_params" per model, "attn", "tokens" per step, "seq_len".
    """
    config = config or GPTConfig()
    seq_len = seq_len or config.block_size
    ours, hf = build_models(config, seed)
    tokens = random_tokens(batch, seq_len + 1, config.vocab_size, seed)
    ours.train()
    fns = {"toyenv": train_step(ours, ours, tokens, lr)}
    out = {"tokens": batch * seq_len, "seq_len": seq_len, "transformers": None,
           "params": {"toyenv": all_params(ours)}, "matmul_params": {"toyenv": matmul_params(ours)}}
    if hf is None:
        out["transformers_note"] = HF_MISSING
    else:
        hf.train()
        # use_cache=False: GPT-2 otherwise builds a KV cache during training too.
        step = train_step(hf, lambda x: hf(input_ids=x, use_cache=False).logits, tokens, lr)
        out["attn"] = attn_implementation(hf)
        out["params"]["transformers"] = all_params(hf)
        out["matmul_params"]["transformers"] = matmul_params(hf)
        error = _try(step)
        if error:
            out["transformers_note"] = error
        else:
            fns["transformers"] = step
    rates = _rates(interleave(fns, rounds, warmup), out["tokens"])
    out.update(rates)
    return out


# ----------------------------------------------------------------------------------------- 2. generation
def generation_throughput(batch: int = 64, prompt_len: int = 40, new_tokens: int = 64, rounds: int = 5,
                          warmup: int = 1, seed: int = 0, config: GPTConfig | None = None,
                          no_cache: bool = True) -> dict:
    """Median new tokens/s when sampling `new_tokens` tokens for `batch` prompts of `prompt_len` tokens.

    All prompts have the same length, so neither model pads, and EOS cannot end a row early (toyenv:
    eos_id=None; HF: min_new_tokens = max_new_tokens): both produce exactly batch x new_tokens tokens.
    Plain sampling at temperature 1 for both: HF's default top_k=50 is switched off (top_k=0), as toyenv's
    top_k=None. Returns {"toyenv", "transformers", "toyenv_no_cache"} (None where not measured), "tokens" per
    call, "attn".
    """
    config = config or GPTConfig()
    ours, hf = build_models(config, seed)
    ours.eval()
    body = random_tokens(batch, prompt_len - 1, config.vocab_size, seed)
    prompts = torch.cat([torch.full((batch, 1), BOS_ID), body], 1)  # BOS + random tokens, no padding
    gen = torch.Generator().manual_seed(seed)

    def toyenv_generate(use_cache: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                tokens, _ = ours.generate(prompts, new_tokens, eos_id=None, use_cache=use_cache, generator=gen)
            assert tokens.shape == (batch, prompt_len + new_tokens)
        return run

    fns = {"toyenv": toyenv_generate(True)}
    out = {"tokens": batch * new_tokens, "transformers": None, "toyenv_no_cache": None}
    if hf is None:
        out["transformers_note"] = HF_MISSING
    else:
        hf.eval()
        out["attn"] = attn_implementation(hf)
        attention_mask = torch.ones_like(prompts)

        def hf_generate() -> None:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tokens = hf.generate(prompts, attention_mask=attention_mask, max_new_tokens=new_tokens,
                                     min_new_tokens=new_tokens, do_sample=True, top_k=0, temperature=1.0,
                                     use_cache=True, pad_token_id=PAD_ID)
            assert tokens.shape == (batch, prompt_len + new_tokens)

        torch.manual_seed(seed)  # HF samples from the global generator
        error = _try(hf_generate)
        if error:
            out["transformers_note"] = error
        else:
            fns["transformers"] = hf_generate
    if no_cache:
        fns["toyenv_no_cache"] = toyenv_generate(False)
    out.update(_rates(interleave(fns, rounds, warmup), out["tokens"]))
    return out


# -------------------------------------------------------------------------------------------- 3. the peak
def matmul_peak(sizes: tuple[int, ...] = (1024, 1536, 2048), repeats: int = 3, seed: int = 0) -> dict:
    """Best float32 GFLOP/s of square `torch.mm` (2 n^3 flops) at the current thread count: what this CPU can
    do at all, the denominator of MFU. Returns {"gflops", "n"} (the size that reached it)."""
    g = torch.Generator().manual_seed(seed)
    best, best_n = 0.0, 0
    for n in sizes:
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        c = torch.mm(a, b)  # warm-up, and the output buffer
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            rate = 2 * n**3 / (time.perf_counter() - t0) / 1e9
            if rate > best:
                best, best_n = rate, n
    return {"gflops": best, "n": best_n}


def training_flops_per_token(n_matmul_params: int, config: GPTConfig, seq_len: int) -> float:
    """nanoGPT's estimate (PaLM appendix B): 6 N for the weights' forward and backward, plus 12 L T d for the
    attention scores and their weighted sum, counted as if attention were not causal."""
    return 6 * n_matmul_params + 12 * config.n_layer * seq_len * config.n_embd


def generation_flops_per_token(n_matmul_params: int) -> float:
    """2 N: one forward pass per new token through the weights; attention over the cache left out."""
    return 2 * n_matmul_params


def mfu(flops_per_token: float, tokens_per_s: float | None, peak_gflops: float) -> float | None:
    """Model FLOPs utilization: achieved FLOP/s over the measured matmul peak."""
    if tokens_per_s is None or peak_gflops <= 0:
        return None
    return flops_per_token * tokens_per_s / (peak_gflops * 1e9)
