"""Named augmentation presets (albumentations 2.0.x; keep its calls in this module).

A preset is a factory ``(img_size, seed) -> transform | None``. Two kinds of transform:
an albumentations ``Compose`` maps one uint8 HWC image to another (rich, but about
0.1-0.5 ms a call, which dominates on small images), and a :class:`BatchAugment`
flips and shifts a whole uint8 NHWC batch tensor at once (microseconds a batch).
Normalisation is not done here: the model wrapper applies its own mean/std.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import albumentations as A
import cv2
import torch

from .registry import Registry



class BatchAugment:
    """Random horizontal flip and random affine (shift / scale / rotation, zero fill) of a
    uint8 (N, H, W, C) batch, done with torch on the whole batch at once, on the batch's
    device (the engine applies it on the GPU after the copy). The random draws come from a
    CPU generator, so a seed gives the same augmentations on any device."""

    batched = True  # ImageArrayDataset calls it once per batch

    def __init__(self, seed: int, flip: bool = True, shift: float = 0.0, scale: float = 0.0,
                 rotate: float = 0.0, p: float = 1.0) -> None:
        self.seed, self.flip, self.shift, self.scale, self.rotate, self.p = seed, flip, shift, scale, rotate, p
        self.generator = torch.Generator().manual_seed(seed)
        self._worker: int | None = None

    def _reseed_in_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker != info.id:  # each DataLoader worker draws its own stream
            self._worker = info.id
            self.generator.manual_seed(self.seed + 1_000_003 * (info.id + 1))

    def _uniform(self, n: int, half_width: float) -> torch.Tensor:
        return (torch.rand(n, generator=self.generator) * 2 - 1) * half_width

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self._reseed_in_worker()
        n = batch.shape[0]
        if self.shift or self.scale or self.rotate:
            angle = self._uniform(n, math.radians(self.rotate))
            zoom = 1 + self._uniform(n, self.scale)
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) / zoom
            theta[:, 0, 1] = -torch.sin(angle) / zoom
            theta[:, 1, 0] = torch.sin(angle) / zoom
            theta[:, :, 2] = torch.stack([self._uniform(n, 2 * self.shift), self._uniform(n, 2 * self.shift)], 1)
            chosen = torch.nonzero(torch.rand(n, generator=self.generator) < self.p).flatten()
            if len(chosen):  # warp only the images drawn for it
                chosen = chosen.to(batch.device)
                x = batch[chosen].permute(0, 3, 1, 2).float()
                grid = torch.nn.functional.affine_grid(theta.to(batch.device)[chosen], list(x.shape),
                                                       align_corners=False)
                x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                                                    align_corners=False)
                batch = batch.clone()
                batch[chosen] = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        if self.flip:
            mask = torch.rand(n, generator=self.generator) < 0.5
            batch = torch.where(mask.view(n, 1, 1, 1).to(batch.device), batch.flip(2), batch)
        return batch.contiguous()


AugmentFactory = Callable[[int, int], "A.Compose | BatchAugment | None"]
AUGMENTS: Registry[AugmentFactory] = Registry("augment preset")


@AUGMENTS.register("none")
def _none(img_size: int, seed: int) -> None:
    return None


@AUGMENTS.register("flip")
def _flip(img_size: int, seed: int) -> BatchAugment:
    """Horizontal flip (batch-level)."""
    return BatchAugment(seed, flip=True)


@AUGMENTS.register("shift")
def _shift(img_size: int, seed: int) -> BatchAugment:
    """Horizontal flip and a random shift of up to 1/10 of the side (batch-level)."""
    return BatchAugment(seed, flip=True, shift=0.1)


@AUGMENTS.register("basic")
def _basic(img_size: int, seed: int) -> BatchAugment:
    """Horizontal flip, and on half the images a small shift / scale / rotation (batch-level)."""
    return BatchAugment(seed, flip=True, shift=0.08, scale=0.08, rotate=8, p=0.5)


@AUGMENTS.register("albu-basic")
def _albu_basic(img_size: int, seed: int) -> A.Compose:
    """The 'basic' recipe with albumentations, image by image: a template for richer pipelines."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(translate_percent=(-0.08, 0.08), scale=(0.92, 1.08), rotate=(-8, 8),
                     border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
        ],
        seed=seed,
    )


def train_transform(name: str, img_size: int, seed: int) -> A.Compose | BatchAugment | None:
    return AUGMENTS.get(name)(img_size, seed)
