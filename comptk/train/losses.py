"""Named training losses and their weighted sums.

A loss spec is one registry name or a weighted sum of them: ``"ce"``, ``"focal"``,
``"f1"``, ``"ce+f1"``, ``"0.7*ce+0.3*f1"``. Every loss takes logits (N, C) and targets
that are either class indices (N,) or class probabilities (N, C) - the soft targets of
mixup / CutMix - and optional per-class weights. Label smoothing is applied to index
targets here; soft targets arrive already smoothed (timm's Mixup does it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ComptkError, did_you_mean
from ..registry import Registry

# (logits float (N, C), target probabilities (N, C), class weights (C,) or None, focal gamma) -> scalar
LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", float], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")
_TERM = re.compile(r"^(?:(?P<weight>\d+(?:\.\d*)?|\.\d+)\*)?(?P<name>[a-z0-9_-]+)$")


@LOSSES.register("ce")
def soft_cross_entropy(logits, target, weight=None, gamma=0.0):
    """Cross-entropy against target probabilities; class weights scale each class's term."""
    terms = -target * F.log_softmax(logits, dim=1)
    if weight is not None:
        terms = terms * weight
    return terms.sum(1).mean()


@LOSSES.register("focal")
def focal(logits, target, weight=None, gamma=2.0):
    """Focal loss (Lin et al. 2017): cross-entropy with each term scaled by (1 - p)^gamma,
    so confident, easy rows count less. gamma = 0 is cross-entropy."""
    log_p = F.log_softmax(logits, dim=1)
    terms = -target * (1 - log_p.exp()).pow(gamma) * log_p
    if weight is not None:
        terms = terms * weight
    return terms.sum(1).mean()


@LOSSES.register("f1")
def soft_f1(logits, target, weight=None, gamma=0.0, eps=1e-7):
    """1 - soft macro F1: the batch's true/false positives counted with softmax
    probabilities instead of hard predictions, so the macro-F1 surrogate is differentiable.
    Class weights weigh the classes' F1 in the mean."""
    p = torch.softmax(logits, dim=1)
    tp = (p * target).sum(0)
    fp = (p * (1 - target)).sum(0)
    fn = ((1 - p) * target).sum(0)
    f1 = 2 * tp / (2 * tp + fp + fn + eps)
    if weight is None:
        return 1 - f1.mean()
    return 1 - (f1 * weight).sum() / weight.sum()


def parse_loss(spec: str) -> list[tuple[float, str]]:
    """'0.7*ce+0.3*f1' -> [(0.7, 'ce'), (0.3, 'f1')]; a bad spec is a ComptkError."""
    terms = []
    for part in spec.replace(" ", "").split("+"):
        match = _TERM.match(part)
        if not match:
            raise ComptkError(
                f"setting 'loss' = '{spec}': cannot read term '{part}'; write a name ({', '.join(LOSSES.names())}) "
                "or a weighted sum such as 'ce+0.5*f1'"
            )
        name = match["name"]
        if name not in LOSSES:
            raise ComptkError(
                f"setting 'loss' = '{spec}': unknown loss '{name}'{did_you_mean(name, LOSSES)}; "
                f"choose from: {', '.join(LOSSES.names())}"
            )
        weight = float(match["weight"]) if match["weight"] else 1.0
        if weight <= 0:
            raise ComptkError(f"setting 'loss' = '{spec}': the weight of '{name}' must be > 0")
        terms.append((weight, name))
    if len({name for _, name in terms}) != len(terms):
        raise ComptkError(f"setting 'loss' = '{spec}': a loss appears twice; give it one weight")
    return terms


class Criterion:
    """The configured loss: ``criterion(logits, target)`` with index or probability targets."""

    def __init__(self, spec: str = "ce", *, label_smoothing: float = 0.0,
                 class_weights: torch.Tensor | None = None, focal_gamma: float = 2.0) -> None:
        self.terms = [(w, name, LOSSES.get(name)) for w, name in parse_loss(spec)]
        self.label_smoothing = label_smoothing
        self.class_weights = class_weights
        self.focal_gamma = focal_gamma

    def soft_target(self, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
        """Class indices -> one-hot probabilities, label-smoothed as torch's cross-entropy does."""
        one_hot = F.one_hot(labels, n_classes).float()
        return one_hot * (1 - self.label_smoothing) + self.label_smoothing / n_classes

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        weight = self.class_weights
        if weight is not None and weight.device != logits.device:
            weight = self.class_weights = weight.to(logits.device)  # moved once, not every step
        if target.ndim == 1 and weight is None and [name for _, name, _ in self.terms] == ["ce"]:
            # torch's own (fused) loss for the plain case: exactly comptk's behaviour before losses existed
            return self.terms[0][0] * F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        soft = self.soft_target(target, logits.shape[1]) if target.ndim == 1 else target.float()
        total = 0.0
        for w, _, fn in self.terms:
            total = total + w * fn(logits, soft, weight, self.focal_gamma)
        return total


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> torch.Tensor | None:
    """Per-class loss weights from the training rows' labels: 1/n ('inverse') or 1/sqrt(n)
    ('sqrt-inverse'), scaled so the average weight over the training rows is 1 (the loss
    keeps its usual size). A class absent from the rows counts as one row."""
    if mode == "none":
        return None
    counts = np.maximum(np.bincount(labels, minlength=n_classes), 1).astype(np.float64)
    raw = 1 / counts if mode == "inverse" else 1 / np.sqrt(counts)
    raw *= len(labels) / float((raw * np.bincount(labels, minlength=n_classes)).sum())
    return torch.tensor(raw, dtype=torch.float32)
