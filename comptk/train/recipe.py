"""The recipe fitted to the data and the device: what the settings ``"auto"`` become.

A declaration without a ``[train]`` table, or with ``img_size`` / ``model`` / ``epochs`` / ``pretrained`` /
``batch_size`` / ``lr`` = ``"auto"``, trains with the values ``fit_recipe`` picks from the images' facts
(data/facts.py: a header sample) and the device. ``comptk init`` writes the same values into ``[train]``.

Rules (s = median train image side, sqrt(w * h); n = train rows per fold, 4/5 of the train rows):

============  =========================================================================================
img_size      s rounded to a multiple of 8 (16 above 64 px), at least 16; capped at 64 px for a small CNN
              on a CPU (96 on an MPS device, 224 on a GPU). A pretrained ImageNet model: 224 px on a GPU
              (its native size), min(s, 128) on a CPU / MPS.
model         pretrained weights allowed, obtainable (local cache, or the hub answers) and s >= 64:
              an ImageNet model, the first whose weights can be had of convnext_nano, efficientnet_b0,
              resnet18 on a GPU (resnet18, efficientnet_b0 on a CPU / MPS: cheaper there). Otherwise
              from scratch: resnet18 on a GPU when s > 64; else small_resnet_wide when the budget gives it
              at least 10 epochs, else small_resnet (a CNN for 16-64 px images: ImageNet models
              downsample such images away).
pretrained    true exactly for the pretrained ImageNet model above.
epochs        the per-fold budget (in small_resnet-at-28-px image passes: 300k on a CPU, about 2.5 min
              at 2,000 images/s; 3M on MPS; 100M on a GPU) / (n * model cost * (img_size / 28)^2),
              within 5..30 (scratch, CPU), 5..40 (scratch, GPU) or 3..10 (pretrained).
batch_size    small CNN: 128 when n >= 2,000, else 64; ImageNet model: 32 on a CPU / MPS, 64 on a GPU;
              resnet18 from scratch: 128.
lr            small CNN: 0.005 with batch 128, 0.003 with 64; pretrained: 3e-4 (fine-tuning);
              resnet18 from scratch: 0.002.
============  =========================================================================================

Model cost (compute per pixel relative to small_resnet, measured roughly on 2 CPU cores): small_resnet 1,
small_resnet_wide 4, resnet18 3, efficientnet_b0 3, convnext_nano 4, any other model 4.
Values fixed by the declaration or the command line stay fixed and the others follow them (e.g.
``--model resnet18`` with ``pretrained = "auto"`` takes weights when they can be had).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ComptkError

if TYPE_CHECKING:  # annotations only: the recipe is pure, its caller measures the data
    from ..competition import Competition
    from ..data.facts import DataFacts

log = logging.getLogger("comptk")

RECIPE_KEYS = ("model", "pretrained", "img_size", "epochs", "batch_size", "lr")
PRETRAINED_CHOICES = {"cuda": ("convnext_nano", "efficientnet_b0", "resnet18"),
                      "cpu": ("resnet18", "efficientnet_b0"), "mps": ("resnet18", "efficientnet_b0")}
MODEL_COST = {"small_resnet": 1.0, "small_resnet_wide": 4.0, "resnet18": 3.0, "efficientnet_b0": 3.0,
              "convnext_nano": 4.0}
BUDGET = {"cpu": 300_000, "mps": 3_000_000, "cuda": 100_000_000}  # small_resnet-at-28-px image passes per fold
SMALL_CAP = {"cpu": 64, "mps": 96, "cuda": 224}
PRETRAINED_MIN_SIDE = 64
N_FOLDS = 5  # the code default: the recipe plans for 4/5 of the rows per fold


@dataclass(frozen=True)
class Recipe:
    values: dict[str, Any]  # setting -> value, for every key of RECIPE_KEYS
    reasons: dict[str, str] = field(default_factory=dict)  # setting -> why, one short phrase

    def describe(self, keys: Collection[str] = RECIPE_KEYS) -> str:
        return "; ".join(f"{k} = {self.values[k]!r} ({self.reasons[k]})" for k in RECIPE_KEYS if k in keys)


def round_size(side: float) -> int:
    """The nearest multiple of 8 up to 64 px, of 16 above (halves round up); at least 16."""
    step = 8 if side <= 64 else 16
    return max(16, math.floor(side / step + 0.5) * step)


def is_small_cnn(model: str) -> bool:
    return model in ("small_resnet", "small_resnet_wide")


def _epochs(device: str, n_fold: int, model: str, img_size: int, pretrained: bool) -> int:
    cost = MODEL_COST.get(model, 4.0) * (img_size / 28) ** 2
    low, high = (3, 10) if pretrained else (5, 40 if device == "cuda" else 30)
    return int(min(high, max(low, math.floor(BUDGET[device] / (max(n_fold, 1) * cost)))))


def fit_recipe(facts: DataFacts, device: str, pretrained_allowed: bool, weights_available: Collection[str], *,
               fixed: Mapping[str, Any] | None = None, n_folds: int = N_FOLDS) -> Recipe:
    """The recipe for ``facts`` on ``device`` ("cpu", "cuda" or "mps"): see the module docstring for the rules.

    ``weights_available``: models whose pretrained weights can be loaded now (train/weights.py).
    ``fixed``: settings already chosen (declaration, command line); they are kept and the rest follow them.
    A pure function: the same facts give the same recipe."""
    fixed = dict(fixed or {})
    device = device if device in BUDGET else "cpu"
    side = facts.train.median_side
    n_fold = round(facts.n_train * (n_folds - 1) / n_folds)
    values: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    may_pretrain = pretrained_allowed and fixed.get("pretrained", True) is not False

    # 1. model (and whether it starts from pretrained weights)
    if "model" in fixed:
        model = fixed["model"]
        values["model"], reasons["model"] = model, "given"
        pretrained = may_pretrain and not is_small_cnn(model) and model in weights_available
        pretrained_why = ("its weights can be loaded" if pretrained else
                          "not allowed" if not pretrained_allowed else
                          "a small CNN: no published weights" if is_small_cnn(model) else
                          "given false" if fixed.get("pretrained") is False else "its weights cannot be had here")
    else:
        choices = [m for m in PRETRAINED_CHOICES[device] if m in weights_available]
        if may_pretrain and fixed.get("pretrained") is True:  # asked for: the first choice, even if not at hand
            model, pretrained = (choices or PRETRAINED_CHOICES[device])[0], True
            reasons["model"] = "pretrained = true given: an ImageNet model" + ("" if choices else
                                                                               " (its weights are not at hand)")
            pretrained_why = "given"
        elif may_pretrain and side >= PRETRAINED_MIN_SIDE and choices:
            model, pretrained = choices[0], True
            reasons["model"] = (f"images of {side:.0f} px (>= {PRETRAINED_MIN_SIDE}) and pretrained weights of "
                                f"{model} available on this machine")
            pretrained_why = "ImageNet weights available and allowed"
        else:
            pretrained = False
            why_not = ("pretrained weights not allowed" if not pretrained_allowed else
                       "pretrained = false given" if not may_pretrain else
                       f"images of {side:.0f} px (< {PRETRAINED_MIN_SIDE})" if side < PRETRAINED_MIN_SIDE else
                       "no pretrained weights available (none cached, hub not reachable)")
            if device == "cuda" and side > 64:
                model = "resnet18"
                reasons["model"] = f"{why_not}; images of {side:.0f} px on a GPU: an ImageNet architecture from scratch"
            else:
                size = fixed.get("img_size") or min(round_size(side), SMALL_CAP[device])
                wide = _epochs(device, n_fold, "small_resnet_wide", size, False) >= 10
                model = "small_resnet_wide" if wide else "small_resnet"
                reasons["model"] = (f"{why_not}; a small CNN for {size} px images on {device}"
                                    + (", wide: the budget gives it >= 10 epochs" if wide else
                                       ", not the wide one: the budget would give it < 10 epochs"))
            pretrained_why = why_not
        values["model"] = model
    values["pretrained"] = fixed.get("pretrained", pretrained)
    reasons["pretrained"] = "given" if "pretrained" in fixed else pretrained_why
    pretrained = bool(values["pretrained"]) or bool(fixed.get("weights"))

    # 2. image size
    if "img_size" in fixed:
        values["img_size"], reasons["img_size"] = fixed["img_size"], "given"
    elif not is_small_cnn(model) and pretrained:
        size = 224 if device == "cuda" else min(round_size(side), 128)
        values["img_size"] = size
        reasons["img_size"] = ("the pretrained model's native size" if device == "cuda" else
                               f"median side {side:.0f} px, at most 128 for an ImageNet model on {device}")
    else:
        cap = SMALL_CAP[device] if is_small_cnn(model) else 224
        values["img_size"] = min(round_size(side), cap)
        reasons["img_size"] = (f"median train side {side:.0f} px, rounded"
                               + (f", capped at {cap} on {device}" if round_size(side) > cap else ""))
    size = values["img_size"]

    # 3. epochs, batch size, learning rate
    if "epochs" in fixed:
        values["epochs"], reasons["epochs"] = fixed["epochs"], "given"
    else:
        values["epochs"] = _epochs(device, n_fold, model, size, pretrained)
        reasons["epochs"] = (f"per-fold budget of {BUDGET[device]:,} small-CNN-28-px image passes on {device} "
                             f"over {n_fold} rows x cost {MODEL_COST.get(model, 4.0):g} x ({size}/28)^2, "
                             f"within {'3..10' if pretrained else '5..40' if device == 'cuda' else '5..30'}")
    if is_small_cnn(model):
        batch, lr = (128, 0.005) if n_fold >= 2000 else (64, 0.003)
        why = f"small CNN, {n_fold} rows per fold ({'>=' if n_fold >= 2000 else '<'} 2000)"
    elif pretrained:
        batch, lr = (64 if device == "cuda" else 32), 3e-4
        why = f"fine-tuning a pretrained model on {device}"
    else:
        batch, lr = 128, 0.002
        why = "an ImageNet architecture from scratch"
    values["batch_size"] = fixed.get("batch_size", batch)
    reasons["batch_size"] = "given" if "batch_size" in fixed else why
    values["lr"] = fixed.get("lr", lr)
    reasons["lr"] = "given" if "lr" in fixed else why
    return Recipe(values, reasons)


def device_kind(name: str) -> str:
    """"cpu", "cuda" or "mps": the kind of device a run on ``name`` ("auto", "cuda:1", ...) uses."""
    if name != "auto":
        return name.split(":")[0] if name.split(":")[0] in BUDGET else "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def obtainable_weights(device: str, fixed: Mapping[str, Any], pretrained_allowed: bool, side: float) -> set[str]:
    """The candidate models whose pretrained weights can be loaded now (cache, else a quick hub check);
    asked only when the recipe could use them."""
    from .weights import weights_obtainable

    if not pretrained_allowed or fixed.get("pretrained") is False:
        return set()
    if "model" in fixed:
        candidates = [] if is_small_cnn(fixed["model"]) else [fixed["model"]]
    else:
        wanted = side >= PRETRAINED_MIN_SIDE or fixed.get("pretrained") is True
        candidates = list(PRETRAINED_CHOICES[device]) if wanted else []
    return {m for m in candidates if weights_obtainable(m)}


_LOGGED: set[str] = set()


def fit_settings(competition: Competition, fixed: Mapping[str, Any], keys: Collection[str],
                 facts: DataFacts | Callable[[], DataFacts] | None) -> dict[str, Any]:
    """The values of the ``keys`` set to "auto", fitted with ``fixed`` (every other setting already chosen).
    ``facts``: the data's facts, or a function measuring them (called only here)."""
    if facts is None:
        raise ComptkError(f"{competition.source or competition.name}: settings {', '.join(keys)} are \"auto\" "
                          f"(fitted to the images), but no data folder was given to measure")
    facts = facts() if callable(facts) else facts
    device = device_kind(str(fixed.get("device", "auto")))
    if fixed.get("weights") and "model" not in fixed:
        raise ComptkError(f"{competition.source or competition.name}: a weights file is given but model is "
                          f"\"auto\"; name the model the weights belong to (--model or [train] model)")
    kept = {k: v for k, v in fixed.items() if k in RECIPE_KEYS or k == "weights"}
    weights = obtainable_weights(device, kept, competition.pretrained_allowed, facts.train.median_side)
    recipe = fit_recipe(facts, device, competition.pretrained_allowed, weights, fixed=kept,
                        n_folds=int(fixed.get("n_folds", N_FOLDS)))
    fitted = {k: recipe.values[k] for k in RECIPE_KEYS if k in keys}
    message = (f"{competition.name}: settings fitted to the data and {device} (\"auto\"): "
               + recipe.describe(fitted))
    if message not in _LOGGED:  # a sweep or a study resolves many times: say it once
        _LOGGED.add(message)
        log.info("%s", message)
    return fitted
