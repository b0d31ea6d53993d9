"""The search space: which TrainConfig settings a study varies, each with its type and range.

A parameter's type is its TrainConfig field's type: an int or float setting takes a range
(``low``, ``high``, optional ``log`` and ``step``), any setting can take ``choices``. A
competition narrows or replaces the default space in its declaration::

    [tune]
    replace = false                # true: [tune.space] is the whole space
    [tune.space]
    lr = { low = 1e-4, high = 3e-3, log = true }
    batch_size = { choices = [64, 128] }
    augment = "flip"               # a plain value pins the setting: not searched
    label_smoothing = false        # false drops a default parameter from the space
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import CHOICES, FIELD_TYPES, TrainConfig
from ..errors import ComptkError, did_you_mean

_PARAM_KEYS = ("low", "high", "log", "step", "choices")
_TUNE_KEYS = ("replace", "space")


@dataclass(frozen=True)
class Param:
    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if FIELD_TYPES[self.name] is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out

    def describe(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        return f"[{self.low}, {self.high}]" + (" log" if self.log else "") + (f" step {self.step}" if self.step else "")


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    pinned: Mapping[str, Any]  # settings fixed for every trial

    def suggest(self, trial) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {"params": {p.name: p.to_dict() for p in self.params}, "pinned": dict(self.pinned)}


def _sizes_around(base: int) -> list[int]:
    return sorted({max(8, int(base * f) // 4 * 4) for f in (0.75, 1.25)} | {base})


def default_space(base: TrainConfig, *, test_crop: bool = False) -> dict[str, Param]:
    """A sensible default around the competition's own defaults (``base``); ``test_crop``: the
    competition's test images are crops, so crop-to-test joins the augment presets."""
    small = base.img_size <= 64
    if base.pretrained or base.weights:
        models = ["resnet18", "efficientnet_b0", "convnext_nano"]
    elif small:  # ImageNet stems (stride 32) shrink a 28 px image to 1x1: use the small-image CNNs
        models = ["small_resnet", "small_resnet_wide"]
    else:
        models = ["resnet18", "efficientnet_b0", "convnext_nano"]
    space = {
        "model": Param("model", choices=tuple(dict.fromkeys([base.model, *models]))),
        "lr": Param("lr", low=1e-4, high=1e-2, log=True),
        "weight_decay": Param("weight_decay", low=1e-4, high=0.2, log=True),
        "batch_size": Param("batch_size", choices=tuple(sorted({max(8, base.batch_size // 2), base.batch_size,
                                                                  base.batch_size * 2}))),
        "img_size": Param("img_size", choices=tuple(_sizes_around(base.img_size))),
        "augment": Param("augment", choices=("none", "flip", "basic", "geometric")
                         + (("crop-to-test",) if test_crop else ())),
        "label_smoothing": Param("label_smoothing", low=0.0, high=0.2),
        "sampler": Param("sampler", choices=("random", "weighted")),
        "loss": Param("loss", choices=("ce", "focal", "ce+f1")),
        "epochs": Param("epochs", low=max(1, math.ceil(base.epochs / 2)), high=max(2, base.epochs * 3 // 2)),
    }
    return space


def _parse_param(name: str, spec: Any, where: str) -> Param | Any:
    """A table becomes a Param; a plain value is a pinned setting."""
    want = FIELD_TYPES[name]
    if not isinstance(spec, Mapping):
        return spec
    for key in spec:
        if key not in _PARAM_KEYS:
            raise ComptkError(f"{where}: parameter '{name}' has unknown key '{key}'{did_you_mean(key, _PARAM_KEYS)}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ComptkError(f"{where}: parameter '{name}': 'choices' must be a non-empty list")
        for value in choices:
            ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise ComptkError(f"{where}: parameter '{name}': choice {value!r} is not a {want.__name__}")
            if name in CHOICES and value not in CHOICES[name]:
                raise ComptkError(f"{where}: parameter '{name}': choice '{value}' must be one of "
                                  f"{', '.join(CHOICES[name])}")
        return Param(name, choices=tuple(choices))
    if want not in (int, float):
        raise ComptkError(f"{where}: parameter '{name}' is a {want.__name__} setting: give 'choices'")
    if "low" not in spec or "high" not in spec:
        raise ComptkError(f"{where}: parameter '{name}' needs 'low' and 'high' (or 'choices')")
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
    for key, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ComptkError(f"{where}: parameter '{name}': '{key}' must be a number, got {value!r}")
        if want is int and value is not None and not float(value).is_integer():
            raise ComptkError(f"{where}: parameter '{name}' is an integer setting; '{key}' = {value} is not")
    if not low < high:
        raise ComptkError(f"{where}: parameter '{name}': 'low' ({low}) must be below 'high' ({high})")
    if log and low <= 0:
        raise ComptkError(f"{where}: parameter '{name}': a log range needs 'low' > 0, got {low}")
    if log and step is not None:
        raise ComptkError(f"{where}: parameter '{name}': 'log' and 'step' cannot be combined")
    return Param(name, low=low, high=high, log=log, step=step)


def check_declaration(table: Mapping[str, Any], where: str) -> None:
    """Validate a declaration's [tune] table (used by the competition loader)."""
    build_space(TrainConfig(), table, {}, where=where)


def build_space(
    base: TrainConfig, declared: Mapping[str, Any] | None, pins: Mapping[str, Any], *, where: str,
    test_crop: bool = False,
) -> Space:
    """Default space < the declaration's [tune] table < ``pins`` (settings fixed on the command line)."""
    declared = dict(declared or {})
    for key in declared:
        if key not in _TUNE_KEYS:
            raise ComptkError(f"{where} [tune]: unknown key '{key}'{did_you_mean(key, _TUNE_KEYS)}")
    replace = declared.get("replace", False)
    if not isinstance(replace, bool):
        raise ComptkError(f"{where} [tune]: 'replace' must be true or false, got {replace!r}")
    table = declared.get("space", {})
    if not isinstance(table, Mapping):
        raise ComptkError(f"{where} [tune]: 'space' must be a table")
    params: dict[str, Param] = {} if replace else default_space(base, test_crop=test_crop)
    pinned: dict[str, Any] = {}
    for name, spec in table.items():
        if name not in FIELD_TYPES:
            raise ComptkError(f"{where} [tune.space]: unknown setting '{name}'{did_you_mean(name, FIELD_TYPES)}")
        if spec is False and FIELD_TYPES[name] is not bool:
            params.pop(name, None)  # dropped from the search: the competition's default stays
            continue
        parsed = _parse_param(name, spec, f"{where} [tune.space]")
        params.pop(name, None)
        if isinstance(parsed, Param):
            params[name] = parsed
        else:
            pinned[name] = parsed
    for name, value in pins.items():
        if name not in FIELD_TYPES:
            raise ComptkError(f"--set {name}: unknown setting{did_you_mean(name, FIELD_TYPES)}")
        params.pop(name, None)
        pinned[name] = value
    for fixed in ("n_folds", "pseudo_run", "seed"):
        if fixed in params:
            raise ComptkError(f"{where} [tune.space]: '{fixed}' cannot be searched")
    if pinned.get("pseudo_run"):
        raise ComptkError("pseudo-labelling is not tuned: tune without it, then `comptk train --pseudo RUN`")
    if not params:
        raise ComptkError(f"{where}: the search space is empty: every setting is pinned")
    return Space(tuple(params[k] for k in sorted(params)), dict(sorted(pinned.items())))
