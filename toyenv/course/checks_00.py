"""Checkers of the tour (notebook 00): token log-probs from logits, and a GeneralPoints card's value."""
from __future__ import annotations

import torch

from .checks import Verdict, as_tensor, fail, register


@register("token_logprobs")
def _check_token_logprobs(fn) -> Verdict:
    """fn(logits (B,T,V), tokens (B,T)) -> (B, T-1): log p(tokens[:, t+1] | logits[:, t])."""
    g = torch.Generator().manual_seed(0)
    for B, T, V in [(2, 5, 7), (3, 9, 11), (1, 2, 4)]:
        logits = torch.randn(B, T, V, generator=g) * 3
        tokens = torch.randint(0, V, (B, T), generator=g)
        ref = torch.log_softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
        out, bad = as_tensor(fn(logits.clone(), tokens.clone()), "token_logprobs")
        if bad:
            return bad
        if out.shape != ref.shape:
            hint = ""
            if tuple(out.shape) == (B, T):
                hint = " One value per *predicted* token: position t's logits score token t+1, so drop the last position."
            elif out.dim() == 3:
                hint = " Did you forget .squeeze(-1) after gather?"
            return fail(f"expected shape {tuple(ref.shape)} for logits {tuple(logits.shape)}, got {tuple(out.shape)}.{hint}")
        out = out.detach().float()
        if torch.allclose(out, ref, atol=1e-5):
            continue
        unshifted = torch.log_softmax(logits[:, 1:], -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
        raw = logits[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
        probs = torch.softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
        diff = (out - ref).abs().max().item()
        if torch.allclose(out, unshifted, atol=1e-5):
            return fail("off by one: you scored token t+1 with the logits at t+1; the logits at position t predict token t+1.")
        if torch.allclose(out, raw, atol=1e-5):
            return fail("these are raw logits: apply log_softmax over the vocabulary before gathering.")
        if torch.allclose(out, probs, atol=1e-5):
            return fail("these are probabilities: use log_softmax, not softmax.")
        if torch.allclose(out, -ref, atol=1e-5):
            return fail("sign flipped: log-probabilities are <= 0.")
        if (out > 1e-6).any():
            return fail(f"some values are positive (max {out.max().item():.3f}), but log-probabilities are <= 0.")
        return fail(f"values differ from log_softmax(logits[:, :-1]).gather(tokens[:, 1:]) by up to {diff:.3g}.")
    return Verdict("PASS", "matches log_softmax(logits[:, :-1]) gathered at tokens[:, 1:] on 3 random batches.")


@register("card_value")
def _check_card_value(fn) -> Verdict:
    """fn(card: str, face_card_rule: str) -> int, as toyenv.envs.general_points.card_value."""
    from toyenv.envs.general_points import CARDS, card_value

    for rule in ("ten", "ranked"):
        for card in CARDS:
            want, got = card_value(card, rule), fn(card, rule)
            if isinstance(got, bool) or not isinstance(got, (int, float)) or got != want:
                hint = ""
                if card == "A":
                    hint = " An ace counts as 1."
                elif card in ("J", "Q", "K"):
                    hint = (" Under 'ten' every face card counts 10." if rule == "ten"
                            else " Under 'ranked' J=11, Q=12, K=13.")
                return fail(f"card {card!r} under rule {rule!r} should be worth {want}, you returned {got!r}.{hint}")
    return Verdict("PASS", "all 13 cards are valued correctly under both rules.")
