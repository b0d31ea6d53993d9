"""Submissions in the sample submission's exact format, and scoring them against answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from .data.tables import CompetitionData, read_csv
from .errors import ComptkError
from .metrics import get_metric


def make_submission(data: CompetitionData, proba: np.ndarray) -> pd.DataFrame:
    """Rows in the sample submission's id order (test order without one).

    A sample whose other columns are the class names gets probabilities;
    one with a single other column gets the predicted class name.
    """
    id_col = data.competition.columns.id
    classes = list(data.classes)
    if data.sample_submission is None:
        return pd.DataFrame({id_col: data.test.ids, data.competition.columns.label: np.array(classes)[proba.argmax(1)]})
    sample = data.sample_submission
    row_of = {id_: i for i, id_ in enumerate(data.test.ids)}
    order = np.array([row_of[id_] for id_ in sample[id_col]])
    other = [c for c in sample.columns if c != id_col]
    out = sample.copy()
    if sorted(other) == sorted(classes):
        for c in other:
            out[c] = proba[order, classes.index(c)]
    elif len(other) == 1:
        out[other[0]] = np.array(classes)[proba[order].argmax(1)]
    else:
        raise ComptkError(
            f"sample submission columns {', '.join(sample.columns)}: expected the id column and either "
            f"one label column or one column per class"
        )
    return out


def submission_metric(submission: Path) -> str:
    """The metric of the run or blend that wrote submissions/NAME.csv (from its oof/NAME.json sidecar)."""
    sidecar = artifacts.sidecar_of_submission(submission)
    if not sidecar.is_file():
        raise ComptkError(f"cannot tell the metric of {submission} (no run sidecar {sidecar}); pass --metric")
    return artifacts.read_record(sidecar).metric


def score_submission(submission: Path, answers: Path, metric: str | None = None, id_column: str | None = None) -> float:
    """The metric of a label submission against an answers CSV (id, label); ``metric`` None: the one of
    the run that wrote it (submission_metric)."""
    metric = metric or submission_metric(submission)
    return score_frames(read_csv(Path(submission)), read_csv(Path(answers)), metric, id_column,
                        submission=submission, answers=answers)


def score_frames(sub: pd.DataFrame, ans: pd.DataFrame, metric: str, id_column: str | None = None, *,
                 submission: Path | str = "submission", answers: Path | str = "answers") -> float:
    """score_submission on tables already read (``submission``/``answers`` name them in errors)."""
    id_col = id_column or ans.columns[0]
    for frame, path in ((sub, submission), (ans, answers)):
        if id_col not in frame.columns or len(frame.columns) < 2:
            raise ComptkError(f"{path}: needs the id column '{id_col}' and a label column")
    label_col = [c for c in ans.columns if c != id_col][0]
    sub_label = label_col if label_col in sub.columns else [c for c in sub.columns if c != id_col][0]
    predicted = dict(zip(sub[id_col], sub[sub_label]))
    if len(predicted) != len(sub):
        raise ComptkError(f"{submission}: repeated ids")
    missing = [i for i in ans[id_col] if i not in predicted]
    if missing:
        raise ComptkError(f"{submission}: no prediction for id '{missing[0]}' ({len(missing)} answer ids missing)")
    extra = len(set(predicted) - set(ans[id_col]))
    if extra:
        raise ComptkError(f"{submission}: {extra} ids that {answers} does not have")
    names = sorted(set(ans[label_col]) | set(sub[sub_label]))
    index = {n: i for i, n in enumerate(names)}
    y_true = np.array([index[v] for v in ans[label_col]])
    y_pred = np.array([index[predicted[i]] for i in ans[id_col]])
    return get_metric(metric)(y_true, y_pred, len(names))
