"""Fit a method on all OOF rows (for the test predictions) and score it honestly.

A blend fitted on the same rows it is scored on is optimistic. ``crossfit`` also fits it
on the other folds' rows and predicts each held-out fold (the same saved folds the members
used), so ``cv`` is out-of-fold like the members' own CV. Class biases are fitted inside
the same loop (on the training folds' blend), never on the rows they are scored on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from .bias import apply_class_bias, fit_class_bias
from .methods import METHODS, BlendOptions
from .scoring import Scorer


@dataclass(frozen=True)
class MethodResult:
    method: str
    oof: np.ndarray  # (N, C) out-of-fold blend: each fold's rows from a fit on the other folds
    test: np.ndarray  # (N_test, C) from the fit on all OOF rows
    in_sample: float  # metric of the all-rows fit on those same rows (optimistic)
    cv: float  # metric of ``oof`` (pooled over folds): the one to compare methods by
    cv_per_fold: list[float]
    weights: np.ndarray | None = None  # per member, fitted on all rows (linear methods)
    weights_per_fold: list[list[float]] | None = None
    bias: np.ndarray | None = None  # per class, when class biases were fitted
    no_bias: dict[str, float] | None = None  # {"in_sample", "cv"} before the biases
    info: dict = field(default_factory=dict)

    def summary(self) -> dict:
        out = {"in_sample": self.in_sample, "cv": self.cv, "cv_mean_of_folds": float(np.mean(self.cv_per_fold)),
               "cv_per_fold": self.cv_per_fold}
        if self.no_bias is not None:
            out["without_class_bias"] = self.no_bias
        if self.weights_per_fold is not None:
            out["weights_per_fold"] = self.weights_per_fold  # member order; their spread shows stability
        return out


def crossfit(
    method: str, y: np.ndarray, fold: np.ndarray, P: np.ndarray, T: np.ndarray, scorer: Scorer,
    options: BlendOptions = BlendOptions(),
) -> MethodResult:
    """Blend members' OOF ``P`` (M, N, C) and test ``T`` (M, N_test, C) with ``method``.

    ``fold`` holds the saved fold of every OOF row; ``y`` its label.
    """
    # One BLAS/OpenMP thread: these are small, memory-bound products, and spinning
    # thread pools slowed the meta-model fits over tenfold when the cores were shared.
    with threadpool_limits(limits=1):
        return _crossfit(method, y, fold, P, T, scorer, options)


def _crossfit(
    method: str, y: np.ndarray, fold: np.ndarray, P: np.ndarray, T: np.ndarray, scorer: Scorer,
    options: BlendOptions,
) -> MethodResult:
    blender = METHODS.get(method)(options, scorer)
    full = blender.fit(y, P)
    in_sample, test = full.apply(P), full.apply(T)
    oof = np.empty_like(in_sample)
    oof_biased = np.empty_like(in_sample) if options.class_bias else None
    weights_per_fold = []
    for k in np.unique(fold):
        train, held = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        fitted = blender.fit(y[train], np.ascontiguousarray(P[:, train])) if blender.uses_labels else full
        oof[held] = fitted.apply(P[:, held]) if blender.uses_labels else in_sample[held]
        if fitted.weights is not None:
            weights_per_fold.append([float(w) for w in fitted.weights])
        if oof_biased is not None:
            train_blend = fitted.apply(P[:, train]) if blender.uses_labels else in_sample[train]
            oof_biased[held] = apply_class_bias(oof[held], fit_class_bias(y[train], train_blend, scorer))
    result = dict(
        method=method, weights=full.weights, weights_per_fold=weights_per_fold or None, info=dict(full.info),
    )
    if oof_biased is None:
        return MethodResult(oof=oof, test=test, in_sample=scorer.score_proba(y, in_sample),
                            cv=scorer.score_proba(y, oof), cv_per_fold=scorer.per_fold(y, oof, fold), **result)
    bias = fit_class_bias(y, in_sample, scorer)
    return MethodResult(
        oof=oof_biased, test=apply_class_bias(test, bias),
        in_sample=scorer.score_proba(y, apply_class_bias(in_sample, bias)),
        cv=scorer.score_proba(y, oof_biased), cv_per_fold=scorer.per_fold(y, oof_biased, fold), bias=bias,
        no_bias={"in_sample": scorer.score_proba(y, in_sample), "cv": scorer.score_proba(y, oof)}, **result,
    )
