"""The course's single-GPU path (README: "a GPU only makes it faster"). Skipped where torch sees no CUDA device;
`make gpu-check` runs these with every other unit test and every notebook on the GPU."""
import copy

import pytest
import torch

import toyenv
from toyenv.trainers import rl
from toyenv.trainers.rl import RLConfig
from toyenv.tasks import general_points_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.fixture(scope="module")
def cuda_base():
    return toyenv.load_base(map_location="cuda")


def test_the_default_device_is_the_gpu():
    assert toyenv.device().type == "cuda"


def test_gpu_logits_match_the_cpu_model(cuda_base):
    model, tok = cuda_base
    cpu_model = copy.deepcopy(model).cpu()
    x = torch.tensor([tok.encode("GeneralPoints: cards 3 5 K 2 ->")])
    on_gpu = model(x.cuda()).float().cpu()
    on_cpu = cpu_model(x)
    # TF32 matmuls on the GPU round to ~1e-3 relative; the logits are O(10)
    assert torch.allclose(on_gpu, on_cpu, atol=5e-2, rtol=1e-2), (on_gpu - on_cpu).abs().max()


def test_kv_cache_greedy_decoding_matches_no_cache_on_the_gpu(cuda_base):
    model, tok = cuda_base
    prompts = [tok.encode(p) for p in ("GeneralPoints: cards 3 5 K 2 ->", "Navigation: start ->")]
    a, _ = model.generate(prompts, 16, greedy=True, use_cache=True)
    b, _ = model.generate(prompts, 16, greedy=True, use_cache=False)
    assert a.device.type == "cuda" and torch.equal(a, b)


def test_an_rl_run_trains_on_the_gpu(cuda_base):
    model, tok = cuda_base
    policy = copy.deepcopy(model)
    task = general_points_task("ten")
    cfg = RLConfig(algorithm="grpo", max_steps=3, num_prompts=2, num_generations=4, max_new_tokens=8, beta=0.05,
                   kl_in="loss", seed=0)
    h = rl.train(policy, task, cfg, tok, ref=model, progress=False)
    assert len(h["loss"]) == 3 and all(torch.isfinite(torch.tensor(h["loss"])))
    assert next(policy.parameters()).device.type == "cuda"
    assert any(not torch.equal(p, q) for p, q in zip(policy.parameters(), model.parameters()))
