"""Load ensemble members and check, before anything is fitted or written, that they can be blended.

Every failure is a one-line :class:`ComptkError` naming the file and the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import artifacts
from ..competition import load_competition
from ..data.folds import folds_digest, read_folds, same_labels
from ..data.layouts import read_data
from ..data.tables import CompetitionData
from ..errors import ComptkError

SUM_TOLERANCE = 1e-3  # float32 probabilities from softmax sum to 1 within ~1e-6


@dataclass(frozen=True)
class Members:
    paths: tuple[Path, ...]  # the oof/RUN.npy files, as given
    names: tuple[str, ...]
    records: tuple[artifacts.RunRecord, ...]
    classes: tuple[str, ...]  # column order of oof and preds (the first member's)
    oof: np.ndarray  # (M, N_train, C) float32
    preds: np.ndarray  # (M, N_test, C) float32

    @property
    def first(self) -> artifacts.RunRecord:
        return self.records[0]


@dataclass(frozen=True)
class Truth:
    data: CompetitionData
    y: np.ndarray  # (N_train,) int labels, in the members' class order
    fold: np.ndarray  # (N_train,) saved fold of each row
    folds_file: Path


def check_probabilities(array: np.ndarray, where: str) -> None:
    """Finite, non-negative rows summing to 1: probabilities, not logits."""
    bad = ~np.isfinite(array)
    if bad.any():
        raise ComptkError(f"{where}: {int(bad.sum())} values are NaN or infinite")
    low = float(array.min()) if array.size else 0.0
    sums = array.sum(axis=-1, dtype=np.float64)
    if low < 0 or (sums.size and np.abs(sums - 1).max() > SUM_TOLERANCE):
        raise ComptkError(
            f"{where}: not probabilities (min value {low:.3g}, row sums {sums.min():.3g}..{sums.max():.3g}); "
            f"looks like logits: save softmax probabilities (rows >= 0 summing to 1)"
        )


def _align(array: np.ndarray, own: list[str], target: tuple[str, ...]) -> np.ndarray:
    return array[..., [own.index(c) for c in target]] if tuple(own) != target else array


def load_members(oof_paths: list[str | Path] | tuple[str | Path, ...]) -> Members:
    """Load runs from their oof/RUN.npy paths; class columns re-aligned to the first member's order."""
    paths = tuple(Path(p) for p in oof_paths)
    if len(paths) < 2:
        raise ComptkError(f"an ensemble needs at least 2 members (oof/RUN.npy files), got {len(paths)}")
    seen: dict[Path, Path] = {}
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise ComptkError(f"{path}: given twice (as {seen[key]}); give each member once")
        seen[key] = path
    loaded = []
    for path in paths:
        run = artifacts.load_run(path)  # its record holds RunRecord.REQUIRED
        if run.record.is_partial:
            done, k = run.record.trained_folds, run.record.n_folds
            raise ComptkError(f"{path}: run '{run.name}' is partial (folds {', '.join(map(str, done))} of {k} "
                              f"trained, the other OOF rows are NaN); train its other folds first (the same "
                              f"`comptk train ... --name {run.name}` without --folds-subset)")
        loaded.append(run)
    first, first_path = loaded[0].record, paths[0]
    classes = first.classes
    oof, preds = [], []
    for path, run in zip(paths, loaded):
        record = run.record
        if record.competition != first.competition:
            raise ComptkError(f"{path}: competition '{record.competition}' differs from {first_path}'s "
                              f"'{first.competition}'; blend runs of one competition")
        if set(record.classes) != set(classes) or len(record.classes) != len(classes):
            extra = sorted(set(record.classes) - set(classes))
            lacking = sorted(set(classes) - set(record.classes))
            raise ComptkError(f"{path}: its classes differ from {first_path}'s (extra: {', '.join(extra) or '-'}; "
                              f"missing: {', '.join(lacking) or '-'})")
        for key, what, fix in (
            ("train_ids_digest", "train rows", "train them on the same train.csv"),
            ("folds_digest", "folds", "train them on the same folds: the same --folds and --folds-seed, and the "
             "same [columns] group of the declaration"),
            ("test_ids_digest", "test rows", "predict the same test.csv"),
        ):
            if getattr(record, key) != getattr(first, key):
                raise ComptkError(f"{path}: other {what} than {first_path} ({key} differs); {fix}")
        check_probabilities(run.oof, f"{path} (OOF)")
        check_probabilities(run.preds, f"{artifacts.RunPaths(path.parent.parent, run.name).preds} (test)")
        if len(run.oof) != len(loaded[0].oof) or len(run.preds) != len(loaded[0].preds):
            raise ComptkError(f"{path}: {len(run.oof)} OOF / {len(run.preds)} test rows, but {first_path} has "
                              f"{len(loaded[0].oof)} / {len(loaded[0].preds)}")
        if record.train_labels_digest and first.train_labels_digest and record.classes == first.classes \
                and record.train_labels_digest != first.train_labels_digest:  # in other class orders: load_truth
            raise ComptkError(f"{path}: trained on other train labels than {first_path} (train_labels_digest "
                              f"differs); retrain one of them on the current labels")
        size, first_size = record.config.get("img_size"), first.config.get("img_size")
        if record.test_images_digest and first.test_images_digest and size == first_size \
                and record.test_images_digest != first.test_images_digest:
            raise ComptkError(f"{path}: predicted other test images than {first_path} (test_images_digest differs "
                              f"at {size} px: the test images changed between them); retrain the older one")
        oof.append(_align(run.oof, list(record.classes), classes).astype(np.float32, copy=False))
        preds.append(_align(run.preds, list(record.classes), classes).astype(np.float32, copy=False))
    for i in range(len(paths)):
        for j in range(i):
            if np.array_equal(oof[i], oof[j]) and np.array_equal(preds[i], preds[j]):
                raise ComptkError(f"{paths[i]}: identical OOF and test arrays to {paths[j]} (the same run twice?); "
                                  f"give each member once")
    return Members(paths, tuple(r.name for r in loaded), tuple(r.record for r in loaded), classes,
                   np.ascontiguousarray(np.stack(oof)), np.ascontiguousarray(np.stack(preds)))


def load_truth(members: Members) -> Truth:
    """Labels and saved folds of the OOF rows, checked against the members' digests."""
    first, where = members.first, members.paths[0]
    declaration = first.competition_file
    comp = load_competition(declaration if declaration and Path(declaration).is_file() else first.competition,
                            where.parent.parent)
    data = read_data(comp, Path(first.data_dir))
    if artifacts.digest(data.train.ids) != first.train_ids_digest:
        raise ComptkError(f"{first.data_dir}: train rows changed since {where} was trained (train_ids_digest)")
    if artifacts.digest(data.test.ids) != first.test_ids_digest:
        raise ComptkError(f"{first.data_dir}: test rows changed since {where} was trained (test_ids_digest)")
    for record, path in zip(members.records, members.paths):  # every member that recorded its labels
        if record.train_labels_digest and not same_labels(record.train_labels_digest, record.classes, data.train,
                                                          data.classes):
            raise ComptkError(f"{first.data_dir}: train labels changed since {path} was trained "
                              f"(train_labels_digest); the OOF would be scored against other labels: retrain it")
    if set(data.classes) != set(members.classes):
        raise ComptkError(f"{first.data_dir}: its classes differ from {where}'s")
    order = np.array([data.classes.index(c) for c in members.classes])
    y = np.argsort(order)[data.train.labels]  # data's class index -> members' column
    folds_file = Path(first.folds_file)
    if not folds_file.is_file():
        raise ComptkError(f"{where}: its folds file {folds_file} is missing")
    fold = read_folds(folds_file, data.train, first.n_folds)
    if folds_digest(data.train.ids, fold) != first.folds_digest:
        raise ComptkError(f"{folds_file}: its folds differ from those {where} was trained on (folds_digest)")
    return Truth(data, y, fold, folds_file)
