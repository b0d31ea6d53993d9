"""Named augmentation presets (albumentations 2.0.x; keep its calls in this module).

A preset is a factory ``(img_size, seed, test_crop) -> transform | None``. Two kinds of
transform, both called once per uint8 (N, H, W, C) batch tensor:

* :class:`BatchAugment` flips and shifts the whole batch with torch (microseconds a
  batch): ``flip``, ``shift`` and ``basic`` (flip + shift-scale-rotate, the fast default).
* :class:`ImageAugment` runs an albumentations ``Compose`` image by image (rich, but
  about 0.1-0.5 ms a call, which dominates on small images): ``albu-basic``,
  ``geometric``, ``strong``, ``crop-to-test`` and pipelines declared in a competition's
  ``[augment.NAME]`` table.

Normalisation is not done here: the model wrapper applies its own mean/std.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import albumentations as A
import cv2
import numpy as np
import torch

from ..errors import ComptkError, did_you_mean
from ..registry import Registry

if TYPE_CHECKING:  # annotations only: competition.py imports this module
    from ..competition import Competition
    from ..config import TrainConfig


def _worker_seed(seed: int) -> tuple[int | None, int]:
    """(worker id or None, the seed this process should draw from): each DataLoader
    worker draws its own stream, so workers do not repeat each other's augmentations."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return None, seed
    return info.id, seed + 1_000_003 * (info.id + 1)


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
        worker, seed = _worker_seed(self.seed)
        if worker is not None and self._worker != worker:
            self._worker = worker
            self.generator.manual_seed(seed)

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


class ImageAugment:
    """An albumentations pipeline applied image by image to a uint8 (N, H, W, C) batch.

    Seeded (``A.Compose(seed=...)``) and reseeded per DataLoader worker; an image whose
    size the pipeline changed is resized back to ``img_size`` so the batch stacks.
    """

    batched = True  # ImageArrayDataset calls it once per batch

    def __init__(self, transforms: Sequence[Any], img_size: int, seed: int) -> None:
        self.compose = A.Compose(list(transforms), seed=seed)
        self.img_size, self.seed = img_size, seed
        self._worker: int | None = None

    def augment_image(self, image: np.ndarray) -> np.ndarray:
        out = self.compose(image=image)["image"]
        if out.shape[:2] != (self.img_size, self.img_size):
            out = cv2.resize(out, (self.img_size, self.img_size), interpolation=cv2.INTER_LINEAR)
        if out.ndim == 2:
            out = out[..., None]
        return out.astype(np.uint8, copy=False)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        worker, seed = _worker_seed(self.seed)
        if worker is not None and self._worker != worker:
            self._worker = worker
            self.compose.set_random_seed(seed)
        images = batch.numpy()
        return torch.from_numpy(np.stack([self.augment_image(image) for image in images]))


def without_crops(transform: BatchAugment | ImageAugment | None, seed: int) -> ImageAugment | None:
    """A per-image pipeline without its crop transforms (a fresh copy, seeded with ``seed``), or None when nothing
    else is left or the transform is not a per-image pipeline: what pseudo-labelled test images of a competition
    whose test images are crops get, as they are crops at the test scale already (crop-to-test keeps its flips)."""
    if not isinstance(transform, ImageAugment):
        return None
    kept = [copy.deepcopy(t) for t in transform.compose.transforms if "Crop" not in type(t).__name__]
    return ImageAugment(kept, transform.img_size, seed) if kept else None


Transform = "BatchAugment | ImageAugment | None"
AugmentFactory = Callable[[int, int, "float | None"], Transform]
AUGMENTS: Registry[AugmentFactory] = Registry("augment preset")


@AUGMENTS.register("none")
def _none(img_size: int, seed: int, test_crop: float | None = None) -> None:
    return None


@AUGMENTS.register("flip")
def _flip(img_size: int, seed: int, test_crop: float | None = None) -> BatchAugment:
    """Horizontal flip (batch-level)."""
    return BatchAugment(seed, flip=True)


@AUGMENTS.register("shift")
def _shift(img_size: int, seed: int, test_crop: float | None = None) -> BatchAugment:
    """Horizontal flip and a random shift of up to 1/10 of the side (batch-level)."""
    return BatchAugment(seed, flip=True, shift=0.1)


@AUGMENTS.register("basic")
def _basic(img_size: int, seed: int, test_crop: float | None = None) -> BatchAugment:
    """Horizontal flip, and on half the images a small shift / scale / rotation (batch-level).
    The default: the issue's flips + shift-scale-rotate, at microseconds a batch."""
    return BatchAugment(seed, flip=True, shift=0.08, scale=0.08, rotate=8, p=0.5)


@AUGMENTS.register("albu-basic")
def _albu_basic(img_size: int, seed: int, test_crop: float | None = None) -> ImageAugment:
    """The 'basic' recipe with albumentations, image by image: a template for richer pipelines."""
    return ImageAugment([
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.08, 0.08), scale=(0.92, 1.08), rotate=(-8, 8),
                 border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.5),
    ], img_size, seed)


def _geometric_ops(img_size: int) -> list:
    # Reflected borders and no colour op: a one-colour image keeps its one colour.
    return [
        A.HorizontalFlip(p=0.5),
        A.Affine(translate_percent=(-0.08, 0.08), scale=(0.9, 1.1), rotate=(-12, 12),
                 border_mode=cv2.BORDER_REFLECT_101, p=0.6),
        A.RandomResizedCrop(size=(img_size, img_size), scale=(0.7, 1.0), ratio=(0.85, 1 / 0.85), p=0.5),
    ]


@AUGMENTS.register("geometric")
def _geometric(img_size: int, seed: int, test_crop: float | None = None) -> ImageAugment:
    """Flips, shift-scale-rotate, random resized crops; no colour change (food photos)."""
    return ImageAugment(_geometric_ops(img_size), img_size, seed)


@AUGMENTS.register("strong")
def _strong(img_size: int, seed: int, test_crop: float | None = None) -> ImageAugment:
    """RandAugment-style: the geometric ops, then two of a set of colour / blur / noise ops
    drawn per image, then a random erased patch."""
    ops = [
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=1),
        A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=1),
        A.GaussianBlur(sigma_limit=(0.2, 1.2), p=1),
        A.GaussNoise(std_range=(0.02, 0.08), p=1),
        A.Sharpen(p=1),
        A.Equalize(p=1),
        A.Posterize(num_bits=(4, 6), p=1),
        A.Solarize(threshold_range=(0.7, 0.9), p=1),
        A.ToGray(p=1),
    ]
    return ImageAugment([
        *_geometric_ops(img_size),
        A.SomeOf(ops, n=2, p=0.9),
        A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.1, 0.3), hole_width_range=(0.1, 0.3),
                        fill=0, p=0.5),
    ], img_size, seed)


CROP_JITTER = 0.15  # crop-to-test: each side is the test crop fraction +- 15%


def crop_to_test_scale(test_crop: float) -> tuple[float, float]:
    """Area range of crop-to-test's random crops for a test crop of ``test_crop`` of each side."""
    return (((1 - CROP_JITTER) * test_crop) ** 2, min(1.0, ((1 + CROP_JITTER) * test_crop) ** 2))


@AUGMENTS.register("crop-to-test")
def _crop_to_test(img_size: int, seed: int, test_crop: float | None = None) -> ImageAugment:
    """Random crops of about the declared test crop (``[test_time] crop``) of each side,
    resized to img_size, and horizontal flips: train on what the test images look like."""
    if test_crop is None:
        raise ComptkError("augment 'crop-to-test' needs the competition to declare [test_time] crop")
    return ImageAugment([
        A.RandomResizedCrop(size=(img_size, img_size), scale=crop_to_test_scale(test_crop),
                            ratio=(0.85, 1 / 0.85), p=1),
        A.HorizontalFlip(p=0.5),
    ], img_size, seed)


# ---- pipelines declared in a competition: [augment.NAME] transforms = [{name = "...", ...}]

def _one_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "pydantic.dev" not in line]
    return "; ".join(lines[:3]) or type(exc).__name__


def _build(spec: Mapping[str, Any], where: str) -> Any:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ComptkError(f"{where}: each transform must be a table with a 'name', got {spec!r}")
    name = spec["name"]
    cls = getattr(A, name, None)
    composes = (A.OneOf, A.SomeOf, A.Sequential)
    if not (inspect.isclass(cls) and (issubclass(cls, A.BasicTransform) or issubclass(cls, composes))):
        known = [n for n in dir(A) if inspect.isclass(getattr(A, n)) and issubclass(getattr(A, n), A.BasicTransform)]
        raise ComptkError(f"{where}: unknown albumentations transform '{name}'{did_you_mean(name, known)}")
    where = f"{where} {name}"
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    for key in kwargs:
        if key not in allowed:
            raise ComptkError(f"{where}: unknown argument '{key}'{did_you_mean(key, allowed)}; "
                              f"it takes: {', '.join(allowed)}")
    if issubclass(cls, composes):
        children = kwargs.get("transforms")
        if not isinstance(children, list) or not children:
            raise ComptkError(f"{where}: needs a non-empty list 'transforms'")
        kwargs["transforms"] = [_build(child, where) for child in children]
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ComptkError(f"{where}: {_one_line(exc)}") from None


def build_pipeline(specs: Sequence[Mapping[str, Any]], img_size: int, seed: int, *, where: str) -> ImageAugment:
    """An :class:`ImageAugment` from transform tables; bad names or arguments are one-line errors
    naming ``where`` (the declaration and preset) and the transform. The pipeline is tried on
    one image, so errors that depend on the image size also fire before training."""
    if not isinstance(specs, Sequence) or isinstance(specs, str) or not specs:
        raise ComptkError(f"{where}: 'transforms' must be a non-empty list of tables")
    transforms = [_build(spec, where) for spec in specs]
    image = np.zeros((img_size, img_size, 3), np.uint8)
    for transform in transforms:  # one by one and always applied, so an error names its transform
        p, transform.p = transform.p, 1.0
        try:
            image = A.Compose([transform], seed=seed)(image=image)["image"]
        except Exception as exc:  # e.g. a crop larger than the image
            raise ComptkError(f"{where} {type(transform).__name__}: fails on a {img_size}x{img_size} image: "
                              f"{_one_line(exc)}") from None
        finally:
            transform.p = p
    return ImageAugment(transforms, img_size, seed)


def train_transform(name: str, img_size: int, seed: int, *, test_crop: float | None = None,
                    custom: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                    where: str = "augment") -> BatchAugment | ImageAugment | None:
    """The named preset, or a pipeline declared in the competition (``custom``: name -> transforms)."""
    if custom and name in custom:
        return build_pipeline(custom[name], img_size, seed, where=f"{where} [augment.{name}]")
    if name not in AUGMENTS and custom:
        raise ComptkError(f"unknown augment preset '{name}'{did_you_mean(name, [*AUGMENTS, *custom])}; "
                          f"choose one of: {', '.join([*AUGMENTS.names(), *sorted(custom)])}")
    return AUGMENTS.get(name)(img_size, seed, test_crop)


def run_transform(comp: Competition, cfg: TrainConfig, seed: int) -> BatchAugment | ImageAugment | None:
    """The training transform of a run of ``comp`` with ``cfg``: its preset or declared pipeline, at
    cfg.img_size, cropping to the competition's test-time crop scale where the preset does."""
    return train_transform(cfg.augment, cfg.img_size, seed, test_crop=comp.test_crop, custom=comp.augments,
                           where=str(comp.source))
