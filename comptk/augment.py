"""Named augmentation presets (albumentations 2.0.x; keep its calls in this module).

A preset is a factory ``(img_size, seed) -> transform | None``. Two kinds of transform:
an albumentations ``Compose`` maps one uint8 HWC image to another (rich, but about
0.1-0.5 ms a call, which dominates on small images), and a :class:`BatchAugment`
flips and shifts a whole uint8 NHWC batch tensor at once (microseconds a batch).
Normalisation is not done here: the model wrapper applies its own mean/std.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2
import torch

from .registry import Registry



class BatchAugment:
    """Random horizontal flip and random shift (zero padding) of a uint8 (N, H, W, C) batch."""

    batched = True  # ImageArrayDataset calls it once per batch

    def __init__(self, seed: int, flip: bool = True, shift: float = 0.0) -> None:
        self.seed, self.flip, self.shift = seed, flip, shift
        self.generator = torch.Generator().manual_seed(seed)
        self._worker: int | None = None

    def _reseed_in_worker(self) -> None:
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker != info.id:  # each DataLoader worker draws its own stream
            self._worker = info.id
            self.generator.manual_seed(self.seed + 1_000_003 * (info.id + 1))

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self._reseed_in_worker()
        n, h, w, _ = batch.shape
        if self.shift > 0:
            pad = max(1, round(self.shift * min(h, w)))
            padded = torch.nn.functional.pad(batch, (0, 0, pad, pad, pad, pad))
            dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=self.generator)
            dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=self.generator)
            rows = dy + torch.arange(h).view(1, h, 1)
            cols = dx + torch.arange(w).view(1, 1, w)
            batch = padded[torch.arange(n).view(n, 1, 1), rows, cols]
        if self.flip:
            mask = torch.rand(n, generator=self.generator) < 0.5
            batch = torch.where(mask.view(n, 1, 1, 1), batch.flip(2), batch)
        return batch


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
    """Horizontal flip and a random shift of up to 1/8 of the side (batch-level): small images."""
    return BatchAugment(seed, flip=True, shift=0.125)


@AUGMENTS.register("basic")
def _basic(img_size: int, seed: int) -> A.Compose:
    """Horizontal flip plus a small shift / scale / rotation."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                translate_percent=(-0.08, 0.08),
                scale=(0.92, 1.08),
                rotate=(-8, 8),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=0.5,
            ),
        ],
        seed=seed,
    )


def train_transform(name: str, img_size: int, seed: int) -> A.Compose | BatchAugment | None:
    return AUGMENTS.get(name)(img_size, seed)
