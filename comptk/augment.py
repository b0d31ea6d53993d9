"""Named augmentation presets (albumentations 2.0.x; keep its calls in this module).

A preset is a factory ``(img_size, seed) -> transform | None``; the transform maps
a uint8 HWC image of img_size x img_size to one of the same size and dtype.
Normalisation is not done here: the model wrapper applies its own mean/std.
"""

from __future__ import annotations

from collections.abc import Callable

import albumentations as A
import cv2

from .registry import Registry

AugmentFactory = Callable[[int, int], A.Compose | None]
AUGMENTS: Registry[AugmentFactory] = Registry("augment preset")


@AUGMENTS.register("none")
def _none(img_size: int, seed: int) -> None:
    return None


@AUGMENTS.register("flip")
def _flip(img_size: int, seed: int) -> A.Compose:
    return A.Compose([A.HorizontalFlip(p=0.5)], seed=seed)


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


def train_transform(name: str, img_size: int, seed: int) -> A.Compose | None:
    return AUGMENTS.get(name)(img_size, seed)
