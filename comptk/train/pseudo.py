"""Pseudo-labelling: a finished run's confident test predictions become extra training rows.

The rows join every fold's training rows and never its validation rows, so the OOF
predictions are still made on real labelled rows only. Two teachers (setting ``pseudo_teacher``):

- ``run``: the source run's test predictions (its folds' average). Those models saw all the train
  rows, so a little of each fold's validation rows reaches its training through the pseudo-labels:
  the new OOF score can be slightly optimistic. Compare runs on the leaderboard too.
- ``fold``: fold k of the new run learns from fold k of the source run (runs/SRC/foldK/test.npy),
  a model that never saw fold k's rows, so the OOF score stays honest and the run blends with
  others on the same folds. The source must be a finished run on the same folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import artifacts
from ..data.tables import CompetitionData
from ..errors import ComptkError


class NoConfidentRows(ComptkError):
    """No test row reaches the threshold (``comptk auto`` then plans no student)."""


@dataclass(frozen=True)
class PseudoLabels:
    source: str  # the run (or blend) whose test predictions were used
    threshold: float
    rows: np.ndarray  # test row indices, test-CSV order (teacher "fold": empty, see by_fold)
    labels: np.ndarray  # predicted class index of each of those rows
    teacher: str = "run"  # run: rows/labels serve every fold; fold: by_fold[k] serves fold k
    by_fold: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # teacher "fold": (rows, labels) of each fold
    folds_digest: str | None = None  # teacher "fold": the source run's folds, which the new run must share
    folds_seed: int | None = None  # teacher "fold": the source run's folds seed (None: older runs)

    def for_fold(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The test rows and labels that join fold k's training rows."""
        return self.by_fold[k] if self.teacher == "fold" else (self.rows, self.labels)

    def summary(self, classes: tuple[str, ...], n_test: int) -> dict:
        """What the new run's sidecar records."""
        if self.teacher == "fold":
            return self._fold_summary(classes, n_test)
        counts = np.bincount(self.labels, minlength=len(classes))
        return {
            "run": self.source,
            "threshold": self.threshold,
            "n_rows": len(self.rows),
            "n_test": int(n_test),
            "per_class": {name: int(n) for name, n in zip(classes, counts)},
            "note": "test rows added to every fold's training rows with their predicted label; never to validation",
        }

    def _fold_summary(self, classes: tuple[str, ...], n_test: int) -> dict:
        """Teacher "fold": what each fold trained on (n_rows: the most rows a fold added)."""
        by_class = [np.bincount(labels, minlength=len(classes)) for _, labels in self.by_fold]
        return {
            "run": self.source,
            "teacher": "fold",
            "threshold": self.threshold,
            "n_rows": max((len(rows) for rows, _ in self.by_fold), default=0),
            "n_rows_by_fold": [len(rows) for rows, _ in self.by_fold],
            "n_test": int(n_test),
            "per_class_by_fold": [{name: int(n) for name, n in zip(classes, counts)} for counts in by_class],
            "note": "test rows added to fold k's training rows with the label fold k of the source run predicted "
                    "(a model that never saw fold k's rows); never to validation",
        }


def _source_oof(workdir: Path, run: str) -> Path:
    """A run name in the work directory, or a path to a run's oof/RUN.npy."""
    given = Path(run)
    if given.suffix == ".npy" and given.is_file():
        return given
    oof = artifacts.RunPaths(workdir, run).oof
    if oof.is_file():
        return oof
    raise ComptkError(
        f"pseudo-labels: unknown run '{run}' (no finished run {oof}); give the name of a finished run or blend "
        "in this work directory, or the path of its oof/RUN.npy"
    )


def _confident(proba: np.ndarray, threshold: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(proba.max(1) >= threshold)
    return rows, proba[rows].argmax(1).astype(dtype)


def select_pseudo_labels(workdir: str | Path, run: str, threshold: float, data: CompetitionData,
                         teacher: str = "run") -> PseudoLabels:
    """Test rows whose top probability in ``run`` is at least ``threshold``, with that class; with
    ``teacher`` fold, the same from each of the source's folds (PseudoLabels.for_fold)."""
    if not 0 < threshold <= 1:
        raise ComptkError(f"setting 'pseudo_threshold' must be in (0, 1], got {threshold}")
    oof_path = _source_oof(Path(workdir), run)
    source = artifacts.load_run(oof_path)
    record = source.record
    comp = data.competition.name
    if record.competition != comp:
        raise ComptkError(
            f"pseudo-labels: run '{source.name}' is of competition '{record.competition}', not '{comp}'"
        )
    if record.test_ids_digest != artifacts.digest(data.test.ids) or len(source.preds) != len(data.test.ids):
        raise ComptkError(
            f"pseudo-labels: run '{source.name}' predicted other test rows than {comp}'s test table now has "
            "(test_ids_digest differs)"
        )
    if sorted(record.classes) != sorted(data.classes):
        raise ComptkError(f"pseudo-labels: run '{source.name}' has other classes than {comp}'s")
    order = [list(record.classes).index(c) for c in data.classes]  # columns in this run's class order
    if teacher == "fold":  # the run's own folder: pseudo_run may be the path of another work directory's run
        by_fold, highest = _fold_teachers(artifacts.RunPaths(oof_path.parent.parent, source.name), source, order,
                                          threshold, data)
        rows, labels = np.empty(0, np.int64), np.empty(0, data.train.labels.dtype)
        found = any(len(r) for r, _ in by_fold)
    else:
        proba = source.preds[:, order]
        rows, labels = _confident(proba, threshold, data.train.labels.dtype)
        by_fold, highest, found = (), float(proba.max()), len(rows) > 0
    if not found:
        raise NoConfidentRows(
            f"pseudo-labels: no test row of run '{source.name}' reaches probability {threshold} "
            f"(the highest is {highest:.4f}{' in any of its folds' if by_fold else ''}); lower --pseudo-threshold"
        )
    return PseudoLabels(source.name, threshold, rows, labels, teacher=teacher, by_fold=by_fold,
                        folds_digest=record.folds_digest if by_fold else None,
                        folds_seed=record.folds_seed if by_fold else None)


def _fold_teachers(paths: artifacts.RunPaths, source: artifacts.RunArtifacts, order: list[int], threshold: float,
                   data: CompetitionData) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], float]:
    """(rows, labels) from each fold's test predictions of a finished run (runs/SRC/foldK/test.npy), and the
    highest probability among them."""
    record = source.record
    if record.kind != "run" or not record.n_folds or record.is_partial or not record.folds_digest:
        raise ComptkError(
            f"pseudo-labels: pseudo_teacher 'fold' needs a finished K-fold run, and '{source.name}' is "
            f"{'a blend' if record.kind != 'run' else 'a partial run' if record.is_partial else 'not one'}; "
            "give such a run, or pseudo_teacher = 'run'"
        )
    if record.pseudo_labels and record.pseudo_labels.get("teacher", "run") != "fold":  # "run" wrote no teacher
        raise ComptkError(
            f"pseudo-labels: run '{source.name}' was itself pseudo-labelled by a whole run's test predictions "
            "(pseudo_teacher 'run'), whose models saw every fold's rows, so it cannot teach fold by fold honestly; "
            "give another run, or pseudo_teacher = 'run'"
        )
    by_fold, highest = [], 0.0
    for k in range(record.n_folds):
        file = paths.fold_test(k)
        if not file.is_file():
            raise ComptkError(f"pseudo-labels: pseudo_teacher 'fold' needs {file} (fold {k} of run "
                              f"'{source.name}'), which is missing; give pseudo_teacher = 'run'")
        proba = artifacts.load_npy(file)
        if proba.shape != (len(data.test.ids), len(order)):
            raise ComptkError(f"pseudo-labels: {file} holds {proba.shape} probabilities, not one row per test "
                              f"image and one column per class")
        by_fold.append(_confident(proba[:, order], threshold, data.train.labels.dtype))
        highest = max(highest, float(proba.max()))
    return tuple(by_fold), highest


def check_same_folds(pseudo: PseudoLabels | None, folds_digest: str | None, n_folds: int,
                     folds_seed: int | None = None) -> None:
    """A run taught fold by fold must be on the folds its teacher was trained on: K and the folds seed are
    checked before anything is read (``folds_digest`` None), the fold assignment itself once it is made."""
    if pseudo is None or pseudo.teacher != "fold":
        return
    other_seed = folds_seed is not None and pseudo.folds_seed is not None and folds_seed != pseudo.folds_seed
    if len(pseudo.by_fold) != n_folds or other_seed or (folds_digest is not None
                                                        and pseudo.folds_digest != folds_digest):
        raise ComptkError(
            f"pseudo-labels: pseudo_teacher 'fold' needs the folds of run '{pseudo.source}' "
            f"({len(pseudo.by_fold)} folds), and this run has other folds ({n_folds} folds, or another fold "
            "seed or data); train with its n_folds and folds_seed, or pseudo_teacher = 'run'"
        )
