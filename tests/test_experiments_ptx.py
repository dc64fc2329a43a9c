"""toyenv.experiments.ptx: the pieces of notebook 04's experiment, on a tiny budget."""
import math

import pytest
import torch

import toyenv
from toyenv.experiments import ptx


def test_data_are_fixed_draws_of_all_four_pretraining_skills():
    a, b = ptx.ptx_data(), ptx.held_out_data()
    assert len(a) > 1000 and len(b) > 300
    assert a == ptx.ptx_data()  # seeded
    assert len(set(a) & set(b)) < 0.05 * len(b)  # different draws (a few short answers may coincide)
    prompts = " ".join(p for p, _ in a)
    assert "J=11 Q=12 K=13." in prompts and "J,Q,K count as 10." in prompts
    assert sum(p.startswith("Cards") for p, _ in a) < len(a)  # navigation is in there too


def test_pretraining_loss_is_the_completion_nll(base):
    model, tok = base
    data = ptx.held_out_data()[:16]
    loss = ptx.pretraining_loss(model, tok, data)
    # by hand: sum over pairs of completion-token NLL / number of completion tokens
    total, count = 0.0, 0
    for prompt, completion in data:
        ids = tok.encode(prompt, bos=True) + tok.encode(completion) + [toyenv.tokenizer.EOS_ID]
        n_prompt = len(tok.encode(prompt, bos=True))
        with torch.no_grad():
            logp = model(torch.tensor([ids])).log_softmax(-1)[0]
        for t in range(n_prompt, len(ids)):
            total -= logp[t - 1, ids[t]].item()
            count += 1
    assert loss == pytest.approx(total / count, rel=1e-4)


def test_run_records_evals_and_ptx_loss(base):
    model, tok = base
    exp = ptx.PtxExperiment(max_steps=2, num_prompts=2, num_generations=2, eval_every=1, eval_episodes=4,
                            ptx_batch_size=4)
    _, r0 = ptx.run(0.0, 0, exp, model, tok, progress=False)
    _, r1 = ptx.run(1.0, 0, exp, model, tok, progress=False)
    assert [s for s, _ in r0["eval"]] == [0, 1, 2]
    assert set(r0["final"]) == {"ten", "ranked", "pretraining_loss"}
    assert all(math.isnan(x) for x in r0["ptx_loss"]) and all(0 < x < 5 for x in r1["ptx_loss"])
    assert r0["eval"][0] == r1["eval"][0]  # both start from the same base model
    s = ptx.summary([r0, r1])
    assert set(s) == {0.0, 1.0} and s[0.0]["ten"][1] == 0.0
    assert ptx.final_metrics(r1)["reward"] == pytest.approx(sum(r1["reward"]) / 2)
