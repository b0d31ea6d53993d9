"""Fold assignment: stratified (and grouped when a group column is declared), seeded,
saved once per competition / n_folds / seed / train rows and shared by every run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from .. import artifacts
from ..errors import ComptkError
from .tables import Table


def make_folds(
    labels: np.ndarray,
    n_folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    classes: tuple[str, ...] | None = None,
) -> np.ndarray:
    """Fold index (0..n_folds-1) for each row."""
    if n_folds < 2:
        raise ComptkError(f"--folds must be at least 2, got {n_folds}")
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    rarest = present[np.argmin(counts[present])]
    if counts[rarest] < n_folds:
        name = classes[rarest] if classes else str(rarest)
        raise ComptkError(
            f"class '{name}' has {counts[rarest]} training images, fewer than --folds {n_folds}; "
            f"use --folds {max(counts[rarest], 2)} or fewer"
            if counts[rarest] >= 2
            else f"class '{name}' has 1 training image: it cannot appear in both a training and a validation fold"
        )
    fold = np.full(len(labels), -1, dtype=np.int64)
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < n_folds:
            raise ComptkError(f"{n_groups} groups cannot fill --folds {n_folds}")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels, groups)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels)
    for k, (_, valid) in enumerate(splits):
        fold[valid] = k
    return fold


def folds_key(train: Table) -> str:
    """What a folds file is made from: the train ids and, when a group column is declared, the
    groups (so declaring or changing groups makes new folds rather than reusing ungrouped ones)."""
    if train.groups is None:
        return artifacts.digest(train.ids)
    return artifacts.digest(f"{i}\t{g}" for i, g in zip(train.ids, train.groups))


def load_or_make_folds(
    workdir: Path, competition: str, train: Table, n_folds: int, seed: int, classes: tuple[str, ...] | None = None
) -> tuple[np.ndarray, Path]:
    """The saved folds for these train rows, made and saved on first use."""
    path = artifacts.folds_path(workdir, competition, n_folds, seed, folds_key(train))
    if path.is_file():
        saved = pd.read_csv(path, dtype={"id": str, "fold": np.int64}, keep_default_na=False)
        if saved["id"].tolist() != train.ids.tolist():
            raise ComptkError(f"{path}: its ids do not match the train table; delete the file to make folds anew")
        return saved["fold"].to_numpy(), path
    fold = make_folds(train.labels, n_folds, seed, train.groups, classes)
    artifacts.save_csv(path, pd.DataFrame({"id": train.ids, "fold": fold}))
    return fold, path


def folds_digest(ids: np.ndarray, fold: np.ndarray) -> str:
    return artifacts.digest(f"{i},{f}" for i, f in zip(ids, fold))
