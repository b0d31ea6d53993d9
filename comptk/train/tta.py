"""Test-time views: TTA presets, validation crops, and how their probabilities are merged.

A TTA preset is a list of *views* (functions of a float (N, C, H, W) batch). Each view's
output goes through the model and a softmax; the views' probabilities are merged by
``mean`` or ``gmean`` (geometric mean, renormalised), never as raw logits.

Flips and scales come from ttach. Crops are done here, because ttach's ``FiveCrops``
takes absolute pixel sizes fixed when the preset is built, does not check them against
the (possibly non-square) image, and hands the model smaller images than it was trained
on; here crop sizes are fractions of each side of the actual input, a crop larger than
the image is an error, and every crop is resized back to the input size. ttach's own
merging is not used: it merges what the model returns (raw logits unless wrapped), its
``gmean`` is not renormalised, and its ``tsharpen`` takes square roots of logits (NaN on
negative ones).

Test-time crops (``[test_time] crop``): when test images are crops of about ``crop`` of each
side of the original pictures, training uses random crops at that scale (augment
``crop-to-test``, the default then: config.resolve_run); validation rows are predicted as
crops at that scale (five crops averaged, setting ``valid_crop``), so the OOF score tracks
the leaderboard instead of scoring whole images; test images are predicted as they are,
since they are crops already.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import ttach
from torch import nn

from ..competition import Competition
from ..config import TrainConfig
from ..errors import ComptkError
from ..registry import Registry

View = Callable[[torch.Tensor], torch.Tensor]
MERGES = ("mean", "gmean")
TTA_CROP = 0.875  # five-crop / ten-crop TTA: crops of 7/8 of each side
SCALES = (0.9, 1.1)  # multi-scale TTA, with the image as it is (1.0)


def _ttach_views(transforms: ttach.Compose) -> list[View]:
    return [transformer.augment_image for transformer in transforms]


def crop_box(height: int, width: int, size: float | tuple[int, int]) -> tuple[int, int]:
    """Crop (height, width) in pixels: ``size`` is a fraction of each side or (h, w) pixels."""
    if isinstance(size, tuple):
        crop_h, crop_w = size
    else:
        if not 0 < size <= 1:
            raise ComptkError(f"crop fraction must be in (0, 1], got {size}")
        crop_h, crop_w = max(1, round(size * height)), max(1, round(size * width))
    if crop_h > height or crop_w > width or crop_h < 1 or crop_w < 1:
        raise ComptkError(f"crop of {crop_h}x{crop_w} px does not fit an image of {height}x{width} px")
    return crop_h, crop_w


def _crop(x: torch.Tensor, size: float | tuple[int, int], where: str) -> torch.Tensor:
    height, width = x.shape[-2:]
    crop_h, crop_w = crop_box(height, width, size)
    top = {"t": 0, "b": height - crop_h, "c": (height - crop_h) // 2}[where[0]]
    left = {"l": 0, "r": width - crop_w, "c": (width - crop_w) // 2}[where[1]]
    out = x[..., top:top + crop_h, left:left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return out
    return nn.functional.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)


CORNERS = ("tl", "tr", "bl", "br", "cc")


def crop_views(size: float | tuple[int, int], which: str = "five") -> list[View]:
    """Five crops (four corners and the centre) or the centre crop, each resized to the input size."""
    corners = CORNERS if which == "five" else ("cc",)
    return [lambda x, c=c: _crop(x, size, c) for c in corners]


def _hflip(view: View) -> View:
    return lambda x: view(x).flip(-1)


TTA: Registry[Callable[[], list[View]]] = Registry("TTA preset")
TTA.add("none", lambda: [lambda x: x])
TTA.add("hflip", lambda: _ttach_views(ttach.aliases.hflip_transform()))
TTA.add("flip", lambda: _ttach_views(ttach.aliases.flip_transform()))  # horizontal and vertical
TTA.add("five-crop", lambda: crop_views(TTA_CROP))
TTA.add("ten-crop", lambda: crop_views(TTA_CROP) + [_hflip(v) for v in crop_views(TTA_CROP)])
# Resizes the input: for models that take any input size (CNNs), not fixed-size ViTs.
TTA.add("multi-scale", lambda: _ttach_views(ttach.Compose([
    ttach.Scale(scales=list(SCALES), interpolation="bilinear", align_corners=False)])))


def merge(log_proba: torch.Tensor, how: str) -> torch.Tensor:
    """Merge (V, N, C) per-view log-probabilities into (N, C) probabilities.

    mean: the arithmetic mean of the probabilities; gmean: their geometric mean,
    renormalised to sum to 1 (= softmax of the mean log-probability).
    """
    if how == "mean":
        return torch.exp(torch.logsumexp(log_proba, dim=0) - math.log(log_proba.shape[0]))
    if how == "gmean":
        return torch.softmax(log_proba.mean(dim=0), dim=1)
    raise ComptkError(f"TTA merge must be one of {', '.join(MERGES)}, got '{how}'")


class ViewsModel(nn.Module):
    """model -> class probabilities, merged over TTA views, then averaged over crops.

    ``crops`` (validation rows of a competition whose test images are crops) turns each
    image into crops at the test scale first; each crop then gets the TTA views, like a
    test image does.
    """

    def __init__(self, model: nn.Module, views: Sequence[View], how: str = "mean",
                 crops: Sequence[View] | None = None) -> None:
        super().__init__()
        self.model, self.views, self.how = model, list(views), how
        self.crops = list(crops) if crops else [lambda x: x]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = 0
        for crop in self.crops:
            cropped = crop(x)
            log_proba = torch.stack([torch.log_softmax(self.model(view(cropped)).float(), dim=1)
                                     for view in self.views])
            out = out + merge(log_proba, self.how)
        return out / len(self.crops)


def with_tta(model: nn.Module, name: str, merge_mode: str = "mean", *,
             crop: float | None = None, crop_which: str = "five") -> nn.Module:
    """A module returning class probabilities merged over the preset's views; with ``crop``,
    each image is first cut into crops of that fraction of each side (averaged)."""
    if merge_mode not in MERGES:
        raise ComptkError(f"TTA merge must be one of {', '.join(MERGES)}, got '{merge_mode}'")
    crops = crop_views(crop, crop_which) if crop is not None else None
    return ViewsModel(model, TTA.get(name)(), merge_mode, crops)


def valid_crop(comp: Competition, cfg: TrainConfig) -> float | None:
    """The crop fraction validation rows are predicted at, or None for whole images."""
    return comp.test_crop if comp.has_test_crop and cfg.valid_crop != "whole" else None


def describe_test_time(comp: Competition, cfg: TrainConfig) -> dict[str, Any]:
    """The sidecar's record of how validation and test rows were predicted."""
    crop = valid_crop(comp, cfg)
    tta = f"TTA '{cfg.tta}', views merged by {cfg.tta_merge}"
    if crop is None:
        valid = "whole images"
    elif cfg.valid_crop == "five":
        valid = f"five crops (4 corners + centre) of {crop:g} of each side, resized to img_size, probabilities averaged"
    else:
        valid = f"centre crop of {crop:g} of each side, resized to img_size"
    return {
        "test_crop": comp.test_crop,
        "train_augment": cfg.augment,
        "valid": f"{valid}; {tta} on each",
        "valid_crop": crop,
        "valid_crop_mode": cfg.valid_crop if crop is not None else "whole",
        "test": f"whole images{' (already crops)' if comp.has_test_crop else ''}; {tta}",
    }
