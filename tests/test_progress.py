"""The trainers' progress bars inside a real Jupyter kernel, read the way nbval reads it.

nbval sends a cell, waits for the reply, and only then reads the IOPub channel. Everything the cell published in
the meantime waits in ZeroMQ queues that hold about 1,000 messages each; ZeroMQ drops what does not fit, including
the closing "idle" status, and nbval then fails with "Timeout of 5 seconds exceeded waiting for output". So the
number of IOPub messages a training loop publishes must grow with its wall time, not with its steps.
"""
import time

from jupyter_client.manager import start_new_kernel

from toyenv.utils import REDRAW_SECONDS

# 600 SFT steps of a tiny model: a few seconds on any machine, and 600 redraws if every step forced one.
SFT_CELL = """
from toyenv import GPT, GPTConfig, seed_everything
from toyenv.tasks import reverse_dataset
from toyenv.trainers import sft
from toyenv.trainers.sft import SFTConfig
seed_everything(0)
model = GPT(GPTConfig(block_size=48, n_layer=1, n_head=2, n_embd=32))
history = sft.train(model, reverse_dataset(200, seed=0), SFTConfig(max_steps=600, batch_size=4, warmup_steps=1))
print(len(history["loss"]), "steps")
"""


def _run_like_nbval(client, code: str):
    """Execute `code`, wait for the reply, then drain IOPub until this cell's idle status; None if it never came."""
    msg_id = client.execute(code, store_history=False, allow_stdin=False)
    start = time.perf_counter()
    reply = client.get_shell_msg(timeout=300)
    elapsed = time.perf_counter() - start
    assert reply["content"]["status"] == "ok", reply["content"]
    counts, stdout = {}, ""
    while True:
        try:
            msg = client.get_iopub_msg(timeout=10)
        except Exception:  # queue.Empty: the idle status was lost
            return None, counts, stdout, elapsed
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "stream":
            stdout += msg["content"]["text"]
        if kind == "status" and msg["content"]["execution_state"] == "idle":
            return True, counts, stdout, elapsed


def test_a_long_training_loop_publishes_few_iopub_messages_and_its_idle_status_arrives():
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        _run_like_nbval(client, "import torch; torch.set_num_threads(1)")
        idle, counts, stdout, elapsed = _run_like_nbval(client, SFT_CELL)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert idle, f"the cell's idle status never arrived; IOPub messages seen: {counts}"
    assert "600 steps" in stdout
    assert counts.get("comm_open", 0) > 0, f"tqdm did not draw a widget bar in the kernel: {counts}"
    total = sum(counts.values())
    # One redraw per REDRAW_SECONDS (two messages at most: bar and text), plus the widget's opening and closing.
    bound = 40 + 2 * elapsed / REDRAW_SECONDS
    assert total <= bound, f"{total} IOPub messages in {elapsed:.1f} s (bound {bound:.0f}): {counts}"
