"""TrainConfig: every setting of a training run, and the one place settings are resolved.

Resolution order (``resolve_run``, used by train, sweep, tune and every later command):
code defaults < the competition's ``[train]`` table < a settings file or a study's best
trial < explicit overrides (CLI flags, keyword arguments, a trial's parameters); then the
competition's rules: test-time crops make ``augment = "crop-to-test"`` the default, and
``pretrained_allowed = false`` refuses pretrained weights. The resolved config is saved
with the run, so a run can be reproduced and a resume can check it is the same run.
"""

from __future__ import annotations

import dataclasses
import re
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ComptkError, did_you_mean

if TYPE_CHECKING:  # for annotations only: competition.py builds on this module
    from collections.abc import Callable

    from .competition import Competition
    from .data.facts import DataFacts

AUTO = "auto"
# settings that "auto" (or a declaration without a [train] table) fits to the data and device: train/recipe.py
AUTO_KEYS = ("model", "pretrained", "img_size", "epochs", "batch_size", "lr")
MODEL_TIED = ("pretrained", "batch_size", "lr")  # follow an "auto" model unless set

CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adamw", "sgd"),
    "scheduler": ("cosine", "step", "onecycle", "constant"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "tta_merge": ("mean", "gmean"),
    "valid_crop": ("five", "center", "whole"),
    "sampler": ("random", "weighted"),
    "class_weights": ("none", "inverse", "sqrt-inverse"),
    "pseudo_teacher": ("run", "fold"),
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
    augment: str = "basic"  # augment preset name (comptk.train.augment)
    tta: str = "hflip"  # TTA preset name (comptk.train.tta); "none" turns it off
    patience: int = 0  # early stopping after this many epochs without gain; 0 = off
    label_smoothing: float = 0.0
    precision: str = "auto"  # auto: AMP on CUDA, bf16 on CPUs with native bf16, else fp32
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_workers: int = 0  # DataLoader workers; images are decoded once, so 0 suits a CPU
    seed: int = 42  # seed of sampling, augmentation and initialisation (fold k uses seed + k)
    folds_seed: int = 42  # seed of the fold assignment: the competition's ([folds] seed), shared by every run
    # test-time crops and how TTA views are merged
    tta_merge: str = "mean"  # how TTA views' probabilities are merged: mean | gmean (renormalised)
    valid_crop: str = "five"  # competitions with a [test_time] crop: validation rows as five crops | center | whole
    # training techniques: imbalance, losses, mixup/CutMix, EMA and other extras, pseudo-labels
    sampler: str = "random"  # random | weighted (inverse class frequency, with replacement)
    class_cap: int = 0  # at most this many rows of each class per epoch, re-drawn each epoch; 0 = off
    class_weights: str = "none"  # loss weight per class from the training rows: none | inverse | sqrt-inverse
    loss: str = "ce"  # comptk.losses: ce | focal | f1, or a weighted sum such as "ce+0.5*f1"
    focal_gamma: float = 2.0  # focusing parameter of the focal loss
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix_alpha: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 = off
    mix_prob: float = 1.0  # probability a batch is mixed (when mixup or CutMix is on)
    mix_switch_prob: float = 0.5  # probability of CutMix instead of mixup when both are on
    ema_decay: float = 0.0  # EMA of the weights (timm ModelEmaV3, warmed up); 0 = off
    clip_grad_norm: float = 0.0  # clip the gradient norm to this; 0 = off
    accum_steps: int = 1  # batches per optimizer step (gradient accumulation)
    drop_rate: float = 0.0  # dropout before the classifier (timm drop_rate); 0 = the model's default
    drop_path_rate: float = 0.0  # stochastic depth (timm drop_path_rate); 0 = the model's default
    freeze_epochs: int = 0  # train only the classifier head for the first N epochs, then all
    pseudo_run: str = ""  # a finished run whose confident test predictions become extra training rows
    pseudo_threshold: float = 0.9  # max probability a test row needs to be pseudo-labelled
    pseudo_teacher: str = "run"  # run: the source's test predictions; fold: fold k learns from the source's fold k
    # speed: torch.compile the model for training and prediction
    compile: bool = False
    # factorised heads: "3x2x3" = one head per factor (mask x gender x age band), combined into their product's
    # classes (mixed radix, first factor most significant); "" = one head over all classes
    heads: str = ""

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
    _validate_techniques(cfg)
    return cfg


def _validate_techniques(cfg: TrainConfig) -> None:
    from .train.losses import parse_loss  # late import: losses imports torch

    parse_loss(cfg.loss)
    for key in ("class_cap", "focal_gamma", "mixup_alpha", "cutmix_alpha", "clip_grad_norm", "freeze_epochs"):
        if getattr(cfg, key) < 0:
            raise ComptkError(f"setting '{key}' must be >= 0, got {getattr(cfg, key)}")
    if cfg.accum_steps < 1:
        raise ComptkError(f"setting 'accum_steps' must be at least 1, got {cfg.accum_steps}")
    for key in ("mix_prob", "mix_switch_prob"):
        if not 0 <= getattr(cfg, key) <= 1:
            raise ComptkError(f"setting '{key}' must be in [0, 1], got {getattr(cfg, key)}")
    for key in ("drop_rate", "drop_path_rate", "ema_decay"):
        if not 0 <= getattr(cfg, key) < 1:
            raise ComptkError(f"setting '{key}' must be in [0, 1), got {getattr(cfg, key)}")
    if cfg.heads:
        parse_heads(cfg.heads)
    if not 0 < cfg.pseudo_threshold <= 1:
        raise ComptkError(f"setting 'pseudo_threshold' must be in (0, 1], got {cfg.pseudo_threshold}")
    if cfg.class_cap and cfg.sampler == "weighted":
        raise ComptkError(
            "settings 'class_cap' and sampler = 'weighted' both rebalance classes; choose one "
            f"(class_cap = {cfg.class_cap} undersamples, 'weighted' oversamples)"
        )
    if cfg.freeze_epochs > cfg.epochs:
        raise ComptkError(
            f"setting 'freeze_epochs' ({cfg.freeze_epochs}) must be at most 'epochs' ({cfg.epochs}); "
            "freeze_epochs = epochs trains the head only (a linear probe)"
        )


def parse_heads(text: str) -> tuple[int, ...]:
    """'3x2x3' -> (3, 2, 3): the class counts of factorised heads."""
    parts = text.lower().split("x")
    if len(parts) < 2 or not all(p.isdigit() and int(p) >= 2 for p in parts):
        raise ComptkError(f"setting 'heads' must be class counts of 2 or more joined by 'x', like '3x2x3'; "
                          f"got '{text}'")
    return tuple(int(p) for p in parts)


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


def split_auto(table: Mapping[str, Any] | None, where: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A [train] table (or settings given elsewhere) -> (its fixed values, the settings to fit to the data).

    No table (None): every setting of AUTO_KEYS is fitted. A value "auto" is fitted; ``model = "auto"``
    also fits the settings tied to the model (pretrained, batch_size, lr) that the table does not set."""
    if table is None:
        return {}, AUTO_KEYS
    fixed, auto = {}, set()
    for key, value in table.items():
        if isinstance(value, str) and value == AUTO:
            if key not in AUTO_KEYS:
                check_keys({key: value}, where)
                raise ComptkError(f"{where}: setting '{key}' cannot be \"auto\"; \"auto\" fits "
                                  f"{', '.join(AUTO_KEYS)} to the images and the device")
            auto.add(key)
        else:
            fixed[key] = value
    if "model" in auto:
        auto |= {k for k in MODEL_TIED if k not in table}
    return fixed, tuple(k for k in AUTO_KEYS if k in auto)


def resolve_run(
    competition: Competition,
    overrides: Mapping[str, Any] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    facts: DataFacts | Callable[[], DataFacts] | None = None,
) -> TrainConfig:
    """The settings a run of ``competition`` gets: code defaults < its [folds] and [train] tables < ``base``
    (a settings file, a study's best trial) < ``overrides`` (None values are ignored); then
    crop-to-test augmentation for test crops unless an augment was chosen, and the
    pretrained-weights rule.

    Settings "auto" (every recipe setting when the declaration has no [train] table; ``competition.auto_train``)
    and not given otherwise are fitted to the images and the device by train/recipe.py, from ``facts``
    (data/facts.py; a function measuring them is called only then)."""
    given = {**(base or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    given, asked = split_auto(given, "option")
    # the declared values, less those given as "auto" (which override them)
    table = {k: v for k, v in {**competition.folds_defaults(), **competition.train_defaults()}.items()
             if k not in asked}
    auto = {*competition.auto_train, *asked}
    if "model" in asked:
        auto |= {k for k in MODEL_TIED if k not in table}
    auto = [k for k in AUTO_KEYS if k in auto and k not in given]
    if auto:
        from .train.recipe import (
            fit_settings,  # late import: the recipe asks torch for the device
        )

        table = {**table, **fit_settings(competition, {**table, **given}, auto, facts)}
    cfg = resolve(table, given, where=f"{competition.source} [train]")
    chosen = {*competition.train_defaults(), *given}
    if competition.has_test_crop and "augment" not in chosen:
        cfg = dataclasses.replace(cfg, augment="crop-to-test")
    if not competition.pretrained_allowed:
        check_pretrained_allowed(competition.name, competition.source, cfg)
    return cfg


def check_pretrained_allowed(name: str, source: Path | None, cfg: TrainConfig, *, declared: bool = False) -> None:
    """A competition that forbids pretrained weights refuses ``pretrained`` and ``weights``; ``declared``: ``cfg``
    is the declaration's own [train] table, which no flag overrides, so the fix is to edit it."""
    used = "pretrained = true" if cfg.pretrained else f"weights = '{cfg.weights}'" if cfg.weights else ""
    if used and declared:
        keys = " and ".join(f"'{k}'" for k in ("pretrained", "weights") if getattr(cfg, k))
        raise ComptkError(f"{source}: pretrained_allowed = false, but its [train] table sets {used}; remove {keys} "
                          f"from [train]")
    if used:
        raise ComptkError(
            f"competition '{name}' forbids pretrained weights (pretrained_allowed = false in {source}), "
            f"but the run sets {used}; train from scratch (--no-pretrained, no --weights)"
        )


def from_dict(values: Mapping[str, Any], where: str) -> TrainConfig:
    """Rebuild a saved config (e.g. a run's config.json)."""
    return resolve(None, values, where=where)


def read_settings(path: str | Path) -> dict[str, Any]:
    """A settings file: TOML with a [train] table (e.g. written by ``comptk tune --export``)."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise ComptkError(f"settings file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ComptkError(f"{path}: not valid TOML: {exc}") from None
    extra = [k for k in raw if k != "train"]
    if extra or not isinstance(raw.get("train"), dict):
        raise ComptkError(f"{path}: a settings file holds one [train] table"
                          + (f"; unknown key '{extra[0]}'" if extra else ""))
    settings = raw["train"]
    check_keys(settings, f"{path} [train]")
    return {k: _coerce(k, v, f"{path} [train]") for k, v in settings.items()}


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def toml_value(value: Any) -> str:
    """A value as TOML text (the standard library reads TOML but does not write it): booleans, numbers,
    strings (a JSON string is a valid TOML basic string), arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ComptkError(f"cannot write {value!r} ({type(value).__name__}) as TOML")


def settings_text(settings: Mapping[str, Any], comment: str = "") -> str:
    """A settings file (read_settings reads it back): one [train] table."""
    head = "".join(f"# {line}\n" for line in comment.splitlines())
    return head + "[train]\n" + "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in settings.items())


def parse_assignment(text: str) -> tuple[str, Any]:
    """'key=value' from the command line; the value is read as TOML (1e-3, 64, true, "x"), else a string."""
    import tomllib

    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ComptkError(f"--set '{text}': expected KEY=VALUE, e.g. --set epochs=3")
    check_keys({key: None}, "--set")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key, _coerce(key, parsed, "--set")


def parse_folds_subset(text: str | None) -> list[int] | None:
    """'0,2' from the command line -> [0, 2] (0-based fold indices; run_cv checks they exist); None stays None."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ComptkError(f"--folds-subset '{text}': expected fold indices like 0 or 0,2") from None
