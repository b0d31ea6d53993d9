"""The in-memory image dataset the training loop draws batches from."""

from __future__ import annotations

import numpy as np
import torch

from .augment import ImageAugment


class ImageArrayDataset(torch.utils.data.Dataset):
    """Decoded images (N, H, W, 3 uint8) with optional labels and per-image augmentation.

    Batches are fetched whole (``__getitems__``) and stay uint8 until the engine
    moves them to the device, where they are normalised.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, transform=None,
                 plain_from: int | None = None, plain_transform=None):
        self.images = images
        self.labels = labels
        self.transform = transform  # a batch callable (augment.BatchAugment, augment.ImageAugment) or a per-image one
        self.batched = getattr(transform, "batched", False)
        # with a per-image pipeline (augment.ImageAugment), rows from this index on get ``plain_transform`` (None:
        # nothing) instead: pseudo-labelled test images that are crops at the test scale already, which
        # crop-to-test would crop twice (crossval.fit_fold gives them the pipeline without its crops).
        # Batch-level flips and affines (augment.BatchAugment) apply to every row.
        self.plain_from, self.plain_transform = plain_from, plain_transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        index = np.asarray(indices)
        batch = self.images[index]
        if self.transform is not None and not self.batched:
            batch = np.stack([self.transform(image=image)["image"] for image in batch])
        batch = torch.from_numpy(batch)
        if self.batched:
            plain = torch.from_numpy(index >= self.plain_from) if self.plain_from is not None else None
            if plain is not None and plain.any() and isinstance(self.transform, ImageAugment):
                out = batch.clone()
                for rows, transform in ((~plain, self.transform), (plain, self.plain_transform)):
                    if rows.any() and transform is not None:
                        out[rows] = transform(batch[rows])
                batch = out
            else:
                batch = self.transform(batch)
        labels = None if self.labels is None else torch.from_numpy(self.labels[index])
        return batch, labels

    def without_batch_transform(self) -> ImageArrayDataset:
        """The same images and labels with no batch-level augmentation (the engine then
        applies it itself, on the device, after the copy)."""
        return ImageArrayDataset(self.images, self.labels, None if self.batched else self.transform, self.plain_from,
                                 self.plain_transform)

    def __getitem__(self, index: int):
        images, labels = self.__getitems__([index])
        return images[0], None if labels is None else labels[0]


def keep_batch(batch):
    """collate_fn for ImageArrayDataset: batches arrive already stacked."""
    return batch
