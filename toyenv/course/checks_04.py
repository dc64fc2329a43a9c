"""Checkers for notebook 04_pretraining_gradients."""
from __future__ import annotations

import torch

from .checks import Verdict, as_tensor, fail, register


def _ptx_inputs():
    g = torch.Generator().manual_seed(4)
    B, T, V = 3, 9, 7
    logits = torch.randn(B, T, V, generator=g) * 2
    tokens = torch.randint(V, (B, T), generator=g)
    loss_mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (start, end) in enumerate([(3, 9), (5, 8), (2, 6)]):  # completion tokens; rows 1 and 2 end in padding
        loss_mask[b, start:end] = True
    return logits, tokens, loss_mask


def _nll(logits, targets, mask):
    """Mean over masked positions of -log softmax(logits)[target]."""
    logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -(logp * mask).sum() / mask.sum()


@register("ptx_loss")
def _check_ptx_loss(fn) -> Verdict:
    """fn(logits (B,T,V), tokens (B,T), loss_mask (B,T) bool) -> scalar: the mean next-token NLL over the positions
    where loss_mask marks the *predicted* token."""
    logits, tokens, mask = _ptx_inputs()
    lg = logits.clone().requires_grad_(True)
    out, bad = as_tensor(fn(lg, tokens.clone(), mask.clone()), "ptx_loss")
    if bad:
        return bad
    if out.dim() != 0:
        return fail(f"expected a scalar loss (one number for the batch), got shape {tuple(out.shape)}: average over "
                     "the completion tokens of all sequences.")
    if not out.requires_grad:
        return fail("the loss carries no gradient: the ptx term only helps if it is differentiated with the RL loss "
                     "(no torch.no_grad(), no .item(), no .detach()).")
    got = out.item()
    shifted_logits, targets, target_mask = logits[:, :-1], tokens[:, 1:], mask[:, 1:].float()
    want = _nll(shifted_logits, targets, target_mask).item()
    if abs(got - want) < 1e-4:
        lg.grad = None
        out.backward()
        if torch.allclose(lg.grad[:, -1], torch.zeros_like(lg.grad[:, -1])):
            return Verdict("PASS", "mean next-token NLL over completion tokens: the PPO-ptx term is gamma times this.")
        return fail("the value is right but the last position's logits get a gradient; they predict nothing.")
    if abs(got + want) < 1e-4:
        return fail("sign: this is the mean log-likelihood. The loss to *minimize* is its negative (the NLL); "
                     "InstructGPT *adds* gamma * E[log pi(x)] to an objective it maximizes.")
    if abs(got - _nll(logits, tokens, mask.float()).item()) < 1e-4:
        return fail("no shift: logits[:, t] predict tokens[:, t + 1], so compare logits[:, :-1] with tokens[:, 1:].")
    if abs(got - _nll(shifted_logits, targets, mask[:, :-1].float()).item()) < 1e-4:
        return fail("the mask is off by one: it marks the tokens to predict, so use loss_mask[:, 1:] with the "
                     "targets tokens[:, 1:].")
    if abs(got - _nll(shifted_logits, targets, torch.ones_like(target_mask)).item()) < 1e-4:
        return fail("every position is averaged, prompt and padding included: keep only the completion tokens "
                     "(loss_mask), as the base model was trained.")
    summed = want * target_mask.sum().item()
    if abs(got - summed) < 1e-3:
        return fail("this is the sum over tokens; take the mean, so that gamma does not scale with batch and length.")
    per_seq = [_nll(shifted_logits[b:b + 1], targets[b:b + 1], target_mask[b:b + 1]).item() for b in range(len(tokens))]
    if abs(got - sum(per_seq) / len(per_seq)) < 1e-4:
        return fail("this averages each sequence first and then the sequences (short completions weigh more); "
                     "average over all completion tokens of the batch at once.")
    return fail(f"got {got:.4f}, expected the mean next-token NLL over completion tokens, {want:.4f}.")
