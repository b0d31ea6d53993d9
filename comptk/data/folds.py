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


def most_folds(labels: np.ndarray, groups: np.ndarray | None = None) -> int:
    """The most folds stratified K-fold can make of these rows: every class in every fold (its rarest class's
    count), and with groups, every fold a group at least."""
    counts = np.bincount(labels)
    most = int(counts[counts > 0].min())
    return min(most, len(np.unique(groups))) if groups is not None else most


def check_fold_counts(labels: np.ndarray, n_folds: int, groups: np.ndarray | None = None,
                      classes: tuple[str, ...] | None = None, option: str = "--folds {}") -> None:
    """K folds need every class at least K times (and with groups, K groups): else a one-line error saying how many.
    ``option``: how the command that asks gives K (`comptk auto`: "--set n_folds={}")."""
    if n_folds < 2:
        raise ComptkError(f"{option.format(n_folds)}: the folds must be at least 2")
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    rarest = present[np.argmin(counts[present])]
    if counts[rarest] < n_folds:
        name = classes[rarest] if classes else str(rarest)
        raise ComptkError(
            f"class '{name}' has {counts[rarest]} training images, fewer than {option.format(n_folds)}; "
            f"use {option.format(max(counts[rarest], 2))} or fewer"
            if counts[rarest] >= 2
            else f"class '{name}' has 1 training image: it cannot appear in both a training and a validation fold"
        )
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < n_folds:
            raise ComptkError(f"{n_groups} groups cannot fill {option.format(n_folds)}")


def make_folds(
    labels: np.ndarray,
    n_folds: int,
    seed: int,
    groups: np.ndarray | None = None,
    classes: tuple[str, ...] | None = None,
) -> np.ndarray:
    """Fold index (0..n_folds-1) for each row."""
    check_fold_counts(labels, n_folds, groups, classes)
    fold = np.full(len(labels), -1, dtype=np.int64)
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels, groups)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(labels)), labels)
    for k, (_, valid) in enumerate(splits):
        fold[valid] = k
    return fold


def folds_key(train: Table) -> str:
    """What a folds file is made from: the train ids, their labels and, when a group column is
    declared, the groups. Changed labels or groups give another key, so new folds are made rather
    than folds stratified on other labels reused."""
    if train.groups is None:
        return _labels_digest(train.ids, train.labels)
    return artifacts.digest(f"{i}\t{y}\t{g}" for i, y, g in zip(train.ids, train.labels, train.groups))


def labels_digest(train: Table) -> str:
    """The train labels as used (after [label_fixes]), id by id: recorded with a run, so a resume
    and an ensemble can tell that the labels changed even when the ids did not."""
    return _labels_digest(train.ids, train.labels)


def _labels_digest(ids, labels) -> str:
    return artifacts.digest(f"{i}\t{y}" for i, y in zip(ids, labels))


def same_labels(recorded: str, recorded_classes, train: Table, classes) -> bool:
    """Whether ``train``'s labels (class indices into ``classes``) are those a run recorded as ``recorded`` (its
    train_labels_digest, made with its own class order ``recorded_classes``): compared in the run's class order, so
    a class order declared since is not a change of labels."""
    column = {name: i for i, name in enumerate(recorded_classes)}
    if any(classes[y] not in column for y in set(train.labels.tolist())):
        return False
    as_recorded = [column[classes[y]] for y in train.labels.tolist()]
    return _labels_digest(train.ids, as_recorded) == recorded


def read_folds(path: Path, train: Table, n_folds: int | None = None) -> np.ndarray:
    """The fold of each train row (in the train table's order) from a folds file, checked: an id and a
    fold column; every train id exactly once and no other id; every fold a whole number in 0..K-1
    (K = ``n_folds``, or the largest fold + 1) and every fold used. A damaged or truncated file is a
    one-line ComptkError naming it."""
    path = Path(path)
    fix = "delete it to make folds anew (the next `comptk train` writes it again)"
    try:
        saved = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ComptkError(f"folds file not found: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise ComptkError(f"{path}: not a readable folds file ({str(exc).splitlines()[0]}); {fix}") from None
    if list(saved.columns) != ["id", "fold"]:
        raise ComptkError(f"{path}: a folds file has the columns id,fold, this one {','.join(saved.columns)}; {fix}")
    ids, text = saved["id"].to_numpy(), saved["fold"].to_numpy()
    bad = next((row for row, t in enumerate(text) if not (t.isascii() and t.isdigit())), None)
    if bad is not None:
        raise ComptkError(f"{path} line {bad + 2}: fold '{text[bad]}' is not a fold number; {fix}")
    fold_of = dict(zip(ids, text.astype(np.int64)))
    if len(fold_of) != len(ids):
        seen: set[str] = set()
        twice = next(i for i in ids if i in seen or seen.add(i))
        raise ComptkError(f"{path}: id '{twice}' is listed twice; {fix}")
    missing = [i for i in train.ids if i not in fold_of]
    if missing or len(ids) != len(train.ids):
        extra = sorted(set(ids) - set(train.ids))
        detail = (f"train id '{missing[0]}' is missing ({len(missing)} of {len(train.ids)})" if missing
                  else f"id '{extra[0]}' is not a train id")
        raise ComptkError(f"{path}: its ids do not match the train table ({len(ids)} rows for {len(train.ids)} "
                          f"train rows; {detail}); {fix}")
    fold = np.array([fold_of[i] for i in train.ids], dtype=np.int64)
    k = n_folds if n_folds is not None else int(fold.max()) + 1
    if fold.max() >= k:
        row = int(np.argmax(fold >= k))
        raise ComptkError(f"{path}: id '{train.ids[row]}' has fold {fold[row]}, but folds are 0..{k - 1}; {fix}")
    empty = [f for f in range(k) if not (fold == f).any()]
    if empty:
        raise ComptkError(f"{path}: fold {empty[0]} of 0..{k - 1} has no rows; {fix}")
    return fold


def load_or_make_folds(
    workdir: Path, competition: str, train: Table, n_folds: int, seed: int, classes: tuple[str, ...] | None = None
) -> tuple[np.ndarray, Path]:
    """The saved folds for these train rows and labels (read_folds), made and saved on first use."""
    path = artifacts.folds_path(workdir, competition, n_folds, seed, folds_key(train))
    if path.is_file():
        return read_folds(path, train, n_folds), path
    fold = make_folds(train.labels, n_folds, seed, train.groups, classes)
    artifacts.save_csv(path, pd.DataFrame({"id": train.ids, "fold": fold}))
    return fold, path


def folds_digest(ids: np.ndarray, fold: np.ndarray) -> str:
    return artifacts.digest(f"{i},{f}" for i, f in zip(ids, fold))
