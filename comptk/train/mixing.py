"""Mixup and CutMix on a training batch (timm's ``Mixup``), giving soft targets for the loss."""

from __future__ import annotations

import torch
from timm.data import Mixup

from ..config import TrainConfig


class BatchMixer:
    """Mixes float (N, C, H, W) batches and returns (images, target probabilities (N, C)).

    timm's Mixup pairs row i with row N-1-i and needs an even N; an odd batch mixes its
    first N-1 rows and keeps the last one as it is (label-smoothed one-hot)."""

    def __init__(self, cfg: TrainConfig, n_classes: int) -> None:
        self.n_classes = n_classes
        self.mixup = Mixup(
            mixup_alpha=cfg.mixup_alpha, cutmix_alpha=cfg.cutmix_alpha, prob=cfg.mix_prob,
            switch_prob=cfg.mix_switch_prob, mode="batch", label_smoothing=cfg.label_smoothing,
            num_classes=n_classes,
        )
        self.label_smoothing = cfg.label_smoothing

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(x) - len(x) % 2
        if n == 0:
            return x, self._smoothed(labels)
        mixed, target = self.mixup(x[:n], labels[:n])  # timm draws lambda from numpy's seeded global RNG
        if n == len(x):
            return mixed, target
        return torch.cat([mixed, x[n:]]), torch.cat([target, self._smoothed(labels[n:])])

    def _smoothed(self, labels: torch.Tensor) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(labels, self.n_classes).float()
        return one_hot * (1 - self.label_smoothing) + self.label_smoothing / self.n_classes


def make_mixer(cfg: TrainConfig, n_classes: int) -> BatchMixer | None:
    """None when neither mixup nor CutMix is on."""
    if cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0:
        return None
    return BatchMixer(cfg, n_classes)
