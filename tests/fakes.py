"""Stand-ins for the course GPT and its sampler in tests of code that only samples from it.

The code under test puts the model in eval mode to sample and gives the mode back afterwards (`model.complete`); a
fake that tracks the mode as `nn.Module` does lets a test check both. `SpySampler` replaces `toyenv.model.complete`
itself, to check what a helper asks the sampler for.
"""


class ModeTracking:
    training = True

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self


class SpySampler:
    """Stands in for `toyenv.model.complete`: records each call's prompts and keyword arguments, and answers row r
    of call c with `answer(r, prompt)`, or 'c<c>.<r>' without one (num_return_sequences rows per prompt)."""

    def __init__(self, answer=None):
        self.answer, self.calls = answer, []

    def __call__(self, model, tokenizer, prompts, max_new_tokens, **kwargs):
        self.calls.append({"prompts": list(prompts), "max_new_tokens": max_new_tokens, **kwargs})
        rows = [p for p in prompts for _ in range(kwargs.get("num_return_sequences", 1))]
        if self.answer is None:
            return [f"c{len(self.calls) - 1}.{r}" for r in range(len(rows))]
        return [self.answer(r, p) for r, p in enumerate(rows)]
