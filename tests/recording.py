"""A stand-in for a trainer's AdamW that records each update, shared by the behaviour tests.

The trainers build their optimizer through a module-level `adamw(model, lr, weight_decay)`; a test patches it to
return a RecordingSGD and then compares each recorded gradient (taken after the trainer's gradient clipping) with
one written out by hand.
"""
import torch


class RecordingSGD:
    """Records (parameters before the update, flat gradient) at every `step()`. With `lr` None it moves nothing;
    with a number it takes a plain SGD step of that size, so that a later epoch sees a moved policy. (The
    preference trainers overwrite each group's "lr" with their schedule, so the step size is kept apart.)"""

    def __init__(self, model, lr=None):
        self.params = list(model.parameters())
        self.param_groups = [{"params": self.params, "lr": 0.0 if lr is None else lr}]
        self.lr = lr
        self.steps = []
        self.lrs = []  # the learning rate the trainer had set on the group when it stepped

    @property
    def grads(self):
        return [grad for _, grad in self.steps]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        grad = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in self.params])
        self.steps.append(([p.detach().clone() for p in self.params], grad))
        self.lrs.append(self.param_groups[0]["lr"])
        if self.lr is not None:
            for p in self.params:
                if p.grad is not None:
                    p.sub_(self.lr * p.grad)
