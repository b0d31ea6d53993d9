"""Named test-time augmentation presets built on ttach.

ttach merges whatever the wrapped model returns; comptk wraps the model with a
softmax first, so probabilities are merged, never raw logits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import ttach
from torch import nn

from .registry import Registry

TTA: Registry[Callable[[], ttach.Compose | None]] = Registry("TTA preset")
TTA.add("none", lambda: None)
TTA.add("hflip", ttach.aliases.hflip_transform)
TTA.add("flip", ttach.aliases.flip_transform)  # horizontal and vertical


class ProbabilityModel(nn.Module):
    """model -> softmax probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x).float(), dim=1)


def with_tta(model: nn.Module, name: str) -> nn.Module:
    """A module returning class probabilities, averaged over the preset's views."""
    probability = ProbabilityModel(model)
    transforms = TTA.get(name)()
    if transforms is None:
        return probability
    return ttach.ClassificationTTAWrapper(probability, transforms, merge_mode="mean")
