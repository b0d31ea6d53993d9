"""Which training rows an epoch sees: all of them shuffled, a class-balanced draw, or a
per-class cap. Computed from the training fold's labels only; seeded."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class ClassCapSampler(torch.utils.data.Sampler[int]):
    """Each epoch: at most ``cap`` rows of each class (a fresh random choice every epoch,
    so over the epochs a large class shows most of its rows), shuffled together."""

    def __init__(self, labels: np.ndarray, cap: int, generator: torch.Generator) -> None:
        self.by_class = [torch.from_numpy(np.flatnonzero(labels == c)) for c in np.unique(labels)]
        self.cap = cap
        self.generator = generator

    def __len__(self) -> int:
        return sum(min(len(rows), self.cap) for rows in self.by_class)

    def __iter__(self) -> Iterator[int]:
        chosen = [rows[torch.randperm(len(rows), generator=self.generator)[: self.cap]] for rows in self.by_class]
        picked = torch.cat(chosen)
        return iter(picked[torch.randperm(len(picked), generator=self.generator)].tolist())


def inverse_frequency_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-row weight 1 / (rows of its class): every class is drawn equally often."""
    counts = np.bincount(labels)
    return torch.from_numpy(1.0 / counts[labels])


def make_sampler(
    labels: np.ndarray, sampler: str, class_cap: int, generator: torch.Generator
) -> torch.utils.data.Sampler:
    """The epoch's row sampler for training rows with these labels."""
    if class_cap:
        return ClassCapSampler(labels, class_cap, generator)
    if sampler == "weighted":
        # with replacement, as many draws as rows: rare classes repeat, common ones are thinned
        return torch.utils.data.WeightedRandomSampler(
            inverse_frequency_weights(labels), num_samples=len(labels), replacement=True, generator=generator
        )
    return torch.utils.data.RandomSampler(range(len(labels)), generator=generator)
