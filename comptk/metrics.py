"""Competition metrics, computed on integer labels.

Every metric takes ``(y_true, y_pred, n_classes)`` with integer class indices;
:func:`score_proba` turns probabilities into labels by argmax first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from .registry import Registry


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray, int], float]
    greater_is_better: bool = True

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
        return float(self.fn(np.asarray(y_true), np.asarray(y_pred), n_classes))

    def score_proba(self, y_true: np.ndarray, proba: np.ndarray) -> float:
        return self(y_true, np.asarray(proba).argmax(axis=1), proba.shape[1])


METRICS: Registry[Metric] = Registry("metric")


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    # Averaged over the classes present in y_true or y_pred, as sklearn and the
    # leaderboards that use it do; a class never predicted scores 0.
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


METRICS.add("accuracy", Metric("accuracy", _accuracy))
METRICS.add("macro_f1", Metric("macro_f1", _macro_f1))


def get_metric(name: str) -> Metric:
    return METRICS.get(name)
