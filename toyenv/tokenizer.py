"""Character-level tokenizer shared by every toy task in the course.

One fixed vocabulary (special tokens, newline and printable ASCII) means one
base model can read every task's prompts, and checkpoints stay compatible
across notebooks. Ids never change: PAD=0, BOS=1, EOS=2, then the characters.
"""
from __future__ import annotations

import operator
from typing import Iterable, Sequence

import torch

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
# "\n" plus the 95 printable ASCII characters (space .. ~), in code-point order.
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))


class Tokenizer:
    """Maps text to token ids and back, one character per token.

    >>> tok = Tokenizer()
    >>> tok.decode(tok.encode("3*8=24"))
    '3*8=24'
    """

    pad_id, bos_id, eos_id = PAD_ID, BOS_ID, EOS_ID

    def __init__(self) -> None:
        self.itos: list[str] = list(SPECIAL_TOKENS) + list(CHARACTERS)
        self.stoi: dict[str, int] = {ch: i + len(SPECIAL_TOKENS) for i, ch in enumerate(CHARACTERS)}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return self.vocab_size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and other.itos == self.itos

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, specials={SPECIAL_TOKENS})"

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of `text`; raises ValueError naming the first unknown character."""
        if not isinstance(text, str):
            raise TypeError(f"Tokenizer.encode expects a str, got {type(text).__name__}")
        ids = [BOS_ID] if bos else []
        for pos, ch in enumerate(text):
            i = self.stoi.get(ch)
            if i is None:
                raise ValueError(
                    f"unknown character {ch!r} (U+{ord(ch):04X}) at position {pos} of {_clip(text)!r}; "
                    "the vocabulary is newline plus printable ASCII"
                )
            ids.append(i)
        if eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = True, stop_at_eos: bool = True) -> str:
        """Text of `ids`. By default stops at the first EOS and drops PAD/BOS."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for pos, i in enumerate(ids):
            # operator.index accepts ints (Python, numpy, integer tensors) and refuses what int() would coerce:
            # 3.7 -> 3 or '5' -> 5 would decode to a wrong character in silence. A bool is refused too: a bool
            # id is almost surely a mask passed where the ids belong.
            try:
                if isinstance(i, bool) or (isinstance(i, torch.Tensor) and i.dtype == torch.bool):
                    raise TypeError
                i = operator.index(i)
            except TypeError:
                raise TypeError(
                    f"token id {i!r} ({type(i).__name__}) at position {pos} is not an int; token ids are ints "
                    f"in 0..{self.vocab_size - 1}"
                ) from None
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} at position {pos} is outside the vocabulary (0..{self.vocab_size - 1})")
            if i == EOS_ID and stop_at_eos:
                break
            if i < len(SPECIAL_TOKENS):
                if not skip_special:
                    out.append(self.itos[i])
                continue
            out.append(self.itos[i])
        return "".join(out)

    def decode_batch(self, batch: torch.Tensor | Sequence[Sequence[int]], mask: torch.Tensor | None = None) -> list[str]:
        """Decode each row; with `mask`, only the positions where it is True (e.g. generated tokens)."""
        if isinstance(batch, torch.Tensor) and batch.dim() != 2:
            raise ValueError(f"decode_batch expects a 2-D batch (B, T) of ids, got shape {tuple(batch.shape)}")
        rows = batch.tolist() if isinstance(batch, torch.Tensor) else [list(r) for r in batch]
        if mask is not None:
            # zip would silently cut rows or positions that the mask does not cover: refuse any mismatch.
            if isinstance(mask, torch.Tensor) and (mask.dim() != 2 or (
                    isinstance(batch, torch.Tensor) and mask.shape != batch.shape)):
                batch_shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else f"({len(rows)} rows)"
                raise ValueError(f"mask of shape {tuple(mask.shape)} does not match the batch of shape {batch_shape}")
            keep = mask.tolist() if isinstance(mask, torch.Tensor) else [list(m) for m in mask]
            if len(keep) != len(rows):
                raise ValueError(f"mask has {len(keep)} rows but the batch has {len(rows)}")
            for b, (r, m) in enumerate(zip(rows, keep)):
                if len(r) != len(m):
                    raise ValueError(f"row {b} has {len(r)} ids but its mask has {len(m)} entries")
            rows = [[t for t, k in zip(r, m) if k] for r, m in zip(rows, keep)]
        return [self.decode(r) for r in rows]

    def pad_batch(self, seqs: Sequence[Sequence[int]], side: str = "left") -> tuple[torch.Tensor, torch.Tensor]:
        """Stack id lists of different lengths into (ids, attention_mask), padding with PAD on `side`."""
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        if len(seqs) == 0:
            raise ValueError("pad_batch needs at least one sequence")
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.bool)
        for b, s in enumerate(seqs):
            if len(s) == 0:
                continue
            sl = slice(T - len(s), T) if side == "left" else slice(0, len(s))
            ids[b, sl] = torch.as_tensor(list(s), dtype=torch.long)
            mask[b, sl] = True
        return ids, mask


# --------------------------------------------------------------------------- (prompt, completion) -> tensors
def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizer: Tokenizer | None = None) -> list[tuple[list[int], int]]:
    """(ids, n_prompt) per pair: ids = BOS + prompt + completion + EOS, n_prompt = len(BOS + prompt)."""
    tokenizer = tokenizer or Tokenizer()
    out = []
    for i, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"example {i} should be a (prompt, completion) pair, got {pair!r}")
        prompt, completion = pair
        p = tokenizer.encode(prompt, bos=True)
        out.append((p + tokenizer.encode(completion, eos=True), len(p)))
    return out


def collate(examples: Sequence[tuple[list[int], int]], completion_only: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad encoded examples into (tokens, loss_mask), both (B, T).

    loss_mask[b, t] is True where token t is a target: a completion token (or any non-pad token after
    BOS when `completion_only` is False). Right padding needs no attention mask: causal attention never
    looks at the pads that follow the real tokens.
    """
    T = max(len(ids) for ids, _ in examples)
    tokens = torch.full((len(examples), T), PAD_ID, dtype=torch.long)
    loss_mask = torch.zeros((len(examples), T), dtype=torch.bool)
    for b, (ids, n_prompt) in enumerate(examples):
        tokens[b, : len(ids)] = torch.as_tensor(ids)
        loss_mask[b, (n_prompt if completion_only else 1) : len(ids)] = True
    return tokens, loss_mask


def pad_preference_batch(prompts: Sequence[Sequence[int]], chosen: Sequence[Sequence[int]],
                         rejected: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                     torch.Tensor]:
    """`(prompts, prompt_mask, completions, completion_mask)` of B encoded preference pairs, each prompt once: prompts
    (B, P) left-padded, completions (2B, S) right-padded with pair i's chosen completion at row 2i and its rejected
    one at row 2i + 1, the layout of k = 2 completions per prompt that `GPT.completion_logits` (DPO's log-probs) and
    `RewardModel.completion_scores` (the reward model's scores) read. Encode a prompt as `BOS prompt` and a completion
    as `completion EOS`, and the rows [prompt, completion] are `encode_pairs`' and the reward model's."""
    if not (len(prompts) == len(chosen) == len(rejected)):
        raise ValueError(f"{len(prompts)} prompts, {len(chosen)} chosen and {len(rejected)} rejected completions; "
                         "give one of each per pair")
    tok = Tokenizer()
    prompt_ids, prompt_mask = tok.pad_batch(prompts, side="left")
    completion_ids, completion_mask = tok.pad_batch([c for pair in zip(chosen, rejected) for c in pair], side="right")
    return prompt_ids, prompt_mask, completion_ids, completion_mask


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
