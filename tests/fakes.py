"""A base for the stand-ins of the course GPT in tests of code that only samples from it.

The code under test puts the model in eval mode to sample and gives the mode back afterwards (`model.complete`); a
fake that tracks the mode as `nn.Module` does lets a test check both.
"""


class ModeTracking:
    training = True

    def eval(self):
        self.training = False
        return self

    def train(self, mode=True):
        self.training = mode
        return self
