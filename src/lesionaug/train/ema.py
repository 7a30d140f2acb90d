"""Exponential moving average of a stage's trained weights (Polyak averaging, as in DDPM and the
diffusers training scripts): the saved model takes the average, which smooths the last steps' noise.

The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so a short stage is not
dominated by its random initial weights. The average travels in checkpoints (``state.pt``), so a
resumed stage retraces an uninterrupted one.
"""

from __future__ import annotations

from typing import Any


class WeightAverage:
    """The moving average of ``params`` (tensors updated in place by the optimizer)."""

    def __init__(self, params: list, decay: float):
        import torch

        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        with torch.no_grad():
            self.shadow = [p.detach().clone() for p in params]

    def update(self, params: list) -> None:
        import torch

        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        with torch.no_grad():
            for shadow, param in zip(self.shadow, params):
                shadow.mul_(decay).add_(param.detach(), alpha=1.0 - decay)

    def copy_to(self, params: list) -> None:
        """Write the average into the live weights (at the end of the stage)."""
        import torch

        with torch.no_grad():
            for shadow, param in zip(self.shadow, params):
                param.copy_(shadow)

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": [s.detach().cpu() for s in self.shadow], "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for shadow, saved in zip(self.shadow, state["shadow"]):
                shadow.copy_(saved)
        self.updates = int(state["updates"])
