"""Pseudo-labelling: a finished run's confident test predictions become extra training rows.

The rows join every fold's training rows and never its validation rows, so the OOF
predictions are still made on real labelled rows only. (The source run's test
predictions were made by models that saw all the train rows, so a little of each
fold's validation rows reaches its training through the pseudo-labels: the new OOF
score can be slightly optimistic. Compare runs on the leaderboard too.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import artifacts
from ..data.tables import CompetitionData
from ..errors import ComptkError


@dataclass(frozen=True)
class PseudoLabels:
    source: str  # the run (or blend) whose test predictions were used
    threshold: float
    rows: np.ndarray  # test row indices, test-CSV order
    labels: np.ndarray  # predicted class index of each of those rows

    def summary(self, classes: tuple[str, ...], n_test: int) -> dict:
        """What the new run's sidecar records."""
        counts = np.bincount(self.labels, minlength=len(classes))
        return {
            "run": self.source,
            "threshold": self.threshold,
            "n_rows": len(self.rows),
            "n_test": int(n_test),
            "per_class": {name: int(n) for name, n in zip(classes, counts)},
            "note": "test rows added to every fold's training rows with their predicted label; never to validation",
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


def select_pseudo_labels(workdir: str | Path, run: str, threshold: float, data: CompetitionData) -> PseudoLabels:
    """Test rows whose top probability in ``run`` is at least ``threshold``, with that class."""
    if not 0 < threshold <= 1:
        raise ComptkError(f"setting 'pseudo_threshold' must be in (0, 1], got {threshold}")
    source = artifacts.load_run(_source_oof(Path(workdir), run))
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
    proba = source.preds[:, order]
    rows = np.flatnonzero(proba.max(1) >= threshold)
    if len(rows) == 0:
        raise ComptkError(
            f"pseudo-labels: no test row of run '{source.name}' reaches probability {threshold} "
            f"(the highest is {proba.max():.4f}); lower --pseudo-threshold"
        )
    return PseudoLabels(source.name, threshold, rows, proba[rows].argmax(1).astype(data.train.labels.dtype))
