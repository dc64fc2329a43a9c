"""Notebook 04's checker passes the reference and names each diagnosed mistake."""
import pytest
import torch
import torch.nn.functional as F

from toyenv.course import run_check


def _good(logits, tokens, loss_mask):
    targets = tokens[:, 1:].masked_fill(~loss_mask[:, 1:], -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)


def _masked(logits, targets, mask):
    logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logp, mask.float()


def _loglik(lg, t, m):
    logp, mk = _masked(lg[:, :-1], t[:, 1:], m[:, 1:])
    return (logp * mk).sum() / mk.sum()


def _per_sequence(lg, t, m):
    logp, mk = _masked(lg[:, :-1], t[:, 1:], m[:, 1:])
    return (-(logp * mk).sum(1) / mk.sum(1)).mean()


@pytest.mark.parametrize("fn, status, words", [
    (_good, "PASS", "PPO-ptx"),
    (lambda lg, t, m: -_loglik(lg, t, m), "PASS", "PPO-ptx"),
    (_loglik, "FAIL", "sign"),
    (lambda lg, t, m: _good(lg, t, m).detach(), "FAIL", "no gradient"),
    (lambda lg, t, m: F.cross_entropy(lg.reshape(-1, lg.size(-1)), t.masked_fill(~m, -100).reshape(-1),
                                      ignore_index=-100), "FAIL", "no shift"),
    (lambda lg, t, m: F.cross_entropy(lg[:, :-1].reshape(-1, lg.size(-1)),
                                      t[:, 1:].masked_fill(~m[:, :-1], -100).reshape(-1), ignore_index=-100),
     "FAIL", "off by one"),
    (lambda lg, t, m: F.cross_entropy(lg[:, :-1].reshape(-1, lg.size(-1)), t[:, 1:].reshape(-1)), "FAIL",
     "prompt and padding"),
    (lambda lg, t, m: _good(lg, t, m) * m[:, 1:].sum(), "FAIL", "sum"),
    (_per_sequence, "FAIL", "each sequence first"),
    (lambda lg, t, m: -_masked(lg[:, :-1], t[:, 1:], m[:, 1:])[0].mean(1), "FAIL", "scalar"),
    (lambda lg, t, m: [0.0], "FAIL", "torch.Tensor"),
    (lambda lg, t, m: 2.0 * _good(lg, t, m), "FAIL", "expected the mean"),
])
def test_ptx_loss_checker(fn, status, words):
    v = run_check("ptx_loss", fn)
    assert v.status == status and words in v.message, v.message


def test_ptx_loss_checker_todo():
    def stub(logits, tokens, loss_mask):
        raise NotImplementedError
    assert run_check("ptx_loss", stub).status == "TODO"


def test_checker_matches_toyenv_completion_loss():
    # the reference the checker uses is the loss the trainer adds (toyenv.train.completion_loss)
    from toyenv.course.checks_04 import _ptx_inputs
    from toyenv.trainers.common import completion_loss

    logits, tokens, mask = _ptx_inputs()

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return logits[:, : x.size(1)]

    assert torch.allclose(completion_loss(Fixed(), tokens, mask), _good(logits, tokens, mask))
