"""Label issues from out-of-fold probabilities: confident learning (Northcutt et al., 2021),
written here from the paper (cleanlab, its reference code, is AGPL-3.0).

1. Per-class threshold t_j: the mean probability of class j over the rows labelled j.
2. Confident joint C[i, j]: rows labelled i whose probability of j reaches t_j (the
   largest such j when several do) -- rows "confidently" of true class j.
3. Calibrate C so each row i sums to the number of rows labelled i; the off-diagonal
   cell (i, j) estimates how many rows labelled i are really j.
4. Prune by noise rate: in each off-diagonal cell remove that many rows labelled i, those
   with the largest margin p_j - p_i; keep none whose given label is the model's top class.
Rows are ranked by self-confidence (probability of the given label), lowest first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ComptkError


def per_class_thresholds(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean probability of each class over the rows given that class (0.5 when none)."""
    n_classes = proba.shape[1]
    return np.array([proba[labels == j, j].mean() if (labels == j).any() else 0.5 for j in range(n_classes)])


def confident_joint(proba: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C, confident class of each row or -1): C[i, j] counts rows given i, confidently j."""
    n_classes = proba.shape[1]
    above = proba >= per_class_thresholds(proba, labels)[None, :] - 1e-12
    masked = np.where(above, proba, -np.inf)
    confident = np.where(above.any(axis=1), masked.argmax(axis=1), -1)
    joint = np.zeros((n_classes, n_classes), dtype=np.int64)
    keep = confident >= 0
    np.add.at(joint, (labels[keep], confident[keep]), 1)
    return joint, confident


def calibrate(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Scale each row of the joint to the count of rows given that class."""
    counts = np.bincount(labels, minlength=len(joint)).astype(np.float64)
    sums = joint.sum(axis=1, keepdims=True).astype(np.float64)
    return np.where(sums > 0, joint / np.maximum(sums, 1) * counts[:, None], 0.0)


def find_label_issues(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Boolean mask of rows likely mislabelled (prune by noise rate)."""
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if proba.ndim != 2 or len(proba) != len(labels):
        raise ComptkError(f"probabilities of shape {proba.shape} do not match {len(labels)} labels")
    joint, _ = confident_joint(proba, labels)
    to_prune = np.round(calibrate(joint, labels)).astype(np.int64)
    np.fill_diagonal(to_prune, 0)
    issues = np.zeros(len(labels), dtype=bool)
    given = proba[np.arange(len(labels)), labels]
    for i, j in zip(*np.nonzero(to_prune)):
        rows = np.flatnonzero(labels == i)
        margin = proba[rows, j] - given[rows]
        issues[rows[np.argsort(-margin, kind="stable")[: to_prune[i, j]]]] = True
    issues &= proba.argmax(axis=1) != labels
    return issues


@dataclass(frozen=True)
class LabelIssues:
    table: pd.DataFrame  # id, given_label, suggested_label, self_confidence, suggested_confidence, score
    n_checked: int  # rows with OOF predictions (a partial run leaves some out)


def label_issues(proba: np.ndarray, labels: np.ndarray, ids: np.ndarray, classes: tuple[str, ...]) -> LabelIssues:
    """Ranked table of likely mislabelled rows (most likely first). Rows whose OOF
    probabilities are missing (NaN: folds a partial run did not train) are not checked."""
    checked = np.flatnonzero(np.isfinite(proba).all(axis=1))
    p, y = proba[checked], labels[checked]
    mask = find_label_issues(p, y)
    rows = checked[mask]
    given = p[mask, y[mask]]
    suggested = p[mask].argmax(axis=1)
    names = np.array(classes)
    table = pd.DataFrame({
        "id": ids[rows],
        "row": rows,
        "given_label": names[y[mask]],
        "suggested_label": names[suggested],
        "self_confidence": given,
        "suggested_confidence": p[mask].max(axis=1),
        "score": 1.0 - given,  # higher = more likely mislabelled
    }).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    return LabelIssues(table, len(checked))
