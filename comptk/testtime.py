"""What a competition's test-time crops (``[test_time] crop``) mean for a run.

When test images are crops of about ``crop`` of each side of the original pictures:
training uses random crops at that scale (augment ``crop-to-test``, the default unless an
augment preset is set in the declaration's [train] table or on the command line);
validation rows are predicted as crops at that scale (five crops averaged, setting
``valid_crop``), so the OOF score tracks the leaderboard instead of scoring whole
images; test images are predicted as they are, since they are crops already.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from .competition import Competition
from .config import TrainConfig


def has_test_crop(comp: Competition) -> bool:
    return comp.test_crop is not None and comp.test_crop < 1


def apply_defaults(comp: Competition, cfg: TrainConfig, explicit: Iterable[str]) -> TrainConfig:
    """``augment = "crop-to-test"`` for a competition with test crops, unless augment was chosen."""
    if has_test_crop(comp) and "augment" not in set(explicit):
        return dataclasses.replace(cfg, augment="crop-to-test")
    return cfg


def valid_crop(comp: Competition, cfg: TrainConfig) -> float | None:
    """The crop fraction validation rows are predicted at, or None for whole images."""
    return comp.test_crop if has_test_crop(comp) and cfg.valid_crop != "whole" else None


def describe(comp: Competition, cfg: TrainConfig) -> dict[str, Any]:
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
        "test": f"whole images{' (already crops)' if has_test_crop(comp) else ''}; {tta}",
    }
