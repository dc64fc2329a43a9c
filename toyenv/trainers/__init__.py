"""The course's four trainers, one file each, all with the same shape.

Each module has a config dataclass and `train(model, data_or_task, config, tokenizer, *, ...)`, which trains the
model in place and returns a history dict for plotting; its whole update is visible in that one function.

    sft.py           SFTConfig      train(model, (prompt, completion) pairs, ...)   next-token loss on completions
    rl.py            RLConfig       train(policy, task, ..., ref=...)               REINFORCE / RLOO / GRPO / PPO + KL
    dpo.py           PreferenceConfig  train(policy, pairs, ..., ref=...)           DPO / DPO+NLL / RPO / REBEL
    reward_model.py  RewardConfig   train(reward_model, pairs, ...)                 Bradley–Terry (+ Llama 2 margins)

`common.py` holds what they share: AdamW, the learning-rate schedule, epoch batches, the SFT loss and the
divergence guard.
"""
from . import dpo, reward_model, rl, sft  # noqa: F401

__all__ = ["sft", "rl", "dpo", "reward_model"]
