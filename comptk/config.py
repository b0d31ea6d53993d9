"""TrainConfig: every setting of a training run, resolved once at the edge.

Resolution order: code defaults < the competition's ``[train]`` table < explicit
overrides (CLI flags or keyword arguments). The resolved config is saved with the
run, so a run can be reproduced and a resume can check it is the same run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .errors import ComptkError, did_you_mean

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adamw", "sgd"),
    "scheduler": ("cosine", "step", "onecycle", "constant"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
}


@dataclass(frozen=True)
class TrainConfig:
    model: str = "small_resnet"  # any timm model name
    pretrained: bool = False
    weights: str = ""  # local checkpoint file for the model (implies pretrained weights)
    img_size: int = 224
    n_folds: int = 5
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_epochs: float = 0.0
    augment: str = "basic"  # augment preset name (comptk.augment)
    tta: str = "hflip"  # TTA preset name (comptk.tta); "none" turns it off
    patience: int = 0  # early stopping after this many epochs without gain; 0 = off
    label_smoothing: float = 0.0
    precision: str = "auto"  # auto: fp16 AMP on CUDA, fp32 on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_workers: int = 0  # DataLoader workers; images are decoded once, so 0 suits a CPU
    seed: int = 42
    # speed (issue #9): torch.compile the model for training and prediction
    compile: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(TrainConfig)}


def check_keys(values: Mapping[str, Any], where: str) -> None:
    """Unknown setting names are errors, with a did-you-mean."""
    for key in values:
        if key not in FIELD_TYPES:
            raise ComptkError(
                f"{where}: unknown setting '{key}'{did_you_mean(key, FIELD_TYPES)}"
            )


def _coerce(key: str, value: Any, where: str) -> Any:
    want = FIELD_TYPES[key]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ComptkError(
            f"{where}: setting '{key}' must be {want.__name__}, got {value!r}"
        )
    return value


def validate(cfg: TrainConfig) -> TrainConfig:
    for key, options in CHOICES.items():
        value = getattr(cfg, key)
        if value not in options:
            raise ComptkError(
                f"setting '{key}' must be one of {', '.join(options)}; "
                f"got '{value}'{did_you_mean(value, options)}"
            )
    positive = ("img_size", "epochs", "batch_size", "lr")
    for key in positive:
        if getattr(cfg, key) <= 0:
            raise ComptkError(f"setting '{key}' must be > 0, got {getattr(cfg, key)}")
    if cfg.n_folds < 2:
        raise ComptkError(f"setting 'n_folds' must be at least 2, got {cfg.n_folds}")
    for key in ("weight_decay", "warmup_epochs", "patience", "num_workers"):
        if getattr(cfg, key) < 0:
            raise ComptkError(f"setting '{key}' must be >= 0, got {getattr(cfg, key)}")
    if not 0 <= cfg.label_smoothing < 1:
        raise ComptkError(f"setting 'label_smoothing' must be in [0, 1), got {cfg.label_smoothing}")
    return cfg


def resolve(
    competition_defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    where: str = "settings",
) -> TrainConfig:
    """Code defaults < competition defaults < overrides (None values are ignored)."""
    values: dict[str, Any] = {}
    for source, label in ((competition_defaults or {}, where), (overrides or {}, "option")):
        check_keys(source, label)
        values.update(
            {k: _coerce(k, v, label) for k, v in source.items() if v is not None}
        )
    return validate(TrainConfig(**values))


def from_dict(values: Mapping[str, Any], where: str) -> TrainConfig:
    """Rebuild a saved config (e.g. a run's config.json)."""
    return resolve(None, values, where=where)
