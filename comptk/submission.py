"""Submissions in the sample submission's exact format, and scoring them against answers."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from .data.tables import CompetitionData, nfc, read_csv, sample_format, unicode_form
from .errors import ComptkError
from .metrics import get_metric

log = logging.getLogger(__name__)


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
    out = sample.copy()
    if sample_format(list(sample.columns), id_col, classes, "sample submission") == "proba":
        for c in sample.columns:
            if c != id_col:
                out[c] = proba[order, classes.index(c)]
    else:
        label = next(c for c in sample.columns if c != id_col)
        out[label] = np.array(classes)[proba[order].argmax(1)]
    return out


def submission_metric(submission: Path) -> str:
    """The metric of the run or blend that wrote submissions/NAME.csv (from its oof/NAME.json sidecar)."""
    sidecar = artifacts.sidecar_of_submission(submission)
    if not sidecar.is_file():
        raise ComptkError(f"cannot tell the metric of {submission} (no run sidecar {sidecar}); pass --metric")
    return artifacts.read_record(sidecar).metric


def score_submission(submission: Path, answers: Path, metric: str | None = None, id_column: str | None = None,
                     classes: list[str] | tuple[str, ...] | None = None) -> float:
    """The metric of a submission against an answers CSV (id, label); ``metric`` None: the one of the run that
    wrote it (submission_metric). A submission of one probability column per class is scored by its most
    probable class.

    ``classes``: the labels a prediction may take besides the answers' own; default: the class
    list of the comptk run that wrote the submission (``submissions/RUN.csv`` -> ``oof/RUN.json``)."""
    metric = metric or submission_metric(submission)
    if classes is None:
        sidecar = artifacts.sidecar_of_submission(Path(submission))
        if sidecar.is_file():
            classes = [str(c) for c in artifacts.load_json(sidecar).get("classes", [])]
    return score_frames(read_csv(Path(submission)), read_csv(Path(answers)), metric, id_column, classes=classes,
                        submission=submission, answers=answers)


def _some(values: list[str], n: int, *, quote: bool = True) -> str:
    """The first ``n`` values, quoted, then '...' if there are more."""
    shown = [f"'{v}'" if quote else v for v in values[:n]]
    return ", ".join(shown) + (", ..." if len(values) > n else "")


def _label_column(sub: pd.DataFrame, ans: pd.DataFrame, id_col: str, submission: Path | str,
                  answers: Path | str) -> str:
    """The answers' label column (its only non-id column, else the one the submission shares); the
    submission must have it by name, never just its first other column."""
    others = [c for c in ans.columns if c != id_col]
    if len(others) > 1:
        others = [c for c in others if c in sub.columns] or others
    if len(others) != 1:
        raise ComptkError(f"{answers}: cannot tell its label column among {', '.join(others)}; "
                          f"keep only the id column and the label column")
    label_col = others[0]
    if label_col not in sub.columns:
        raise ComptkError(f"{submission}: no column '{label_col}' (the label column of {answers}); its columns "
                          f"are: {', '.join(sub.columns)}")
    return label_col


def _labels_of_probabilities(sub: pd.DataFrame, ans: pd.DataFrame, id_col: str, classes, submission) -> pd.DataFrame:
    """A submission of one probability column per class (a sample submission asking for probabilities) as
    labels: each row's most probable class. Any other submission is returned as it is."""
    answer_cols = [c for c in ans.columns if c != id_col]
    cols = [c for c in sub.columns if c != id_col]
    if len(answer_cols) != 1 or answer_cols[0] in sub.columns or len(cols) < 2:
        return sub
    if not set(cols) <= set(ans[answer_cols[0]]) | set(classes or ()):
        return sub
    try:
        values = sub[cols].astype(float)
    except ValueError:
        raise ComptkError(f"{submission}: its class columns {', '.join(cols[:4])}{', ...' if len(cols) > 4 else ''} "
                          f"hold values that are not numbers") from None
    return pd.DataFrame({id_col: sub[id_col], answer_cols[0]: values.idxmax(axis=1)})


def _plain_label(label: str) -> str:
    """A label as compared for a respelling: trimmed, and a whole number as its value ('007', ' 7', '7.0' -> '7');
    case is kept ('A' and 'a' may be two classes)."""
    text = nfc(str(label)).strip()
    found = re.fullmatch(r"([+-]?[0-9]+)(?:\.0*)?", text)
    return str(int(found.group(1))) if found else text


def score_frames(sub: pd.DataFrame, ans: pd.DataFrame, metric: str, id_column: str | None = None, *,
                 classes: list[str] | tuple[str, ...] | None = None,
                 submission: Path | str = "submission", answers: Path | str = "answers") -> float:
    """score_submission on tables already read (``submission``/``answers`` name them in errors).

    A predicted label must be one of ``classes`` or of the answers' labels, exactly as written:
    'cat', '7.0' or ' 7' among classes '0'..'9' is an error naming them, not a wrong answer.

    With ``classes`` (the run's): answers of a held-out set may lack a class (a rare one), so a prediction of a
    class that no answer has is merely wrong. An answer that is no class of the run cannot be predicted at all:
    when it is a class of the run spelled otherwise ('00', ' 0' or '0.0' for '0', 'Cat' for 'cat'), or when such
    answers are half the rows or more, the two files spell the labels differently: an error naming them rather
    than a score near 0. A few answers of a class the run never saw (a held-out class) are scored as wrong,
    with a warning."""
    id_col = id_column or ans.columns[0]
    for frame, path in ((sub, submission), (ans, answers)):
        if id_col not in frame.columns or len(frame.columns) < 2:
            raise ComptkError(f"{path}: needs the id column '{id_col}' and a label column")
    sub = _labels_of_probabilities(sub, ans, id_col, classes, submission)
    label_col = _label_column(sub, ans, id_col, submission, answers)
    for frame, path in ((sub, submission), (ans, answers)):
        repeated = frame[id_col][frame[id_col].duplicated()]
        if len(repeated):
            raise ComptkError(f"{path}: id '{repeated.iloc[0]}' appears more than once ({len(repeated)} repeats)")
    predicted = dict(zip(sub[id_col], sub[label_col]))
    missing = [i for i in ans[id_col] if i not in predicted]
    if missing:
        raise ComptkError(f"{submission}: no prediction for id '{missing[0]}' ({len(missing)} answer ids missing)")
    answer_ids = set(ans[id_col])
    extra = [i for i in sub[id_col] if i not in answer_ids]
    if extra:
        raise ComptkError(f"{submission}: id '{extra[0]}' is not in {answers} ({len(extra)} such ids)")
    answer_form = {nfc(a): a for a in set(ans[label_col])}
    other_form = sorted(v for v in set(sub[label_col]) - set(ans[label_col]) if nfc(v) in answer_form)
    if other_form:  # the same label in another Unicode form (composed vs decomposed): would score as wrong
        v = other_form[0]
        raise ComptkError(f"{submission}: label '{v}' is written in {unicode_form(v)} Unicode, {answers} writes it "
                          f"{unicode_form(answer_form[nfc(v)])} ({len(other_form)} such label(s)); write the labels "
                          f"as the answers do")
    not_classes = sorted(set(ans[label_col]) - set(classes or ans[label_col]))
    if not_classes:
        n_rows = int(ans[label_col].isin(not_classes).sum())
        what = (f"{answers}: {n_rows} answers are not among the run's classes: {_some(not_classes, 5)} "
                f"(classes: {_some(sorted(classes), 10)})")
        plain = {_plain_label(c): c for c in classes}
        respelled = [(a, plain[_plain_label(a)]) for a in not_classes if _plain_label(a) in plain]
        if respelled or 2 * n_rows >= len(ans):  # the same labels spelled otherwise ('00' for '0'): not a score
            like = f"; '{respelled[0][0]}' is the run's '{respelled[0][1]}'" if respelled else ""
            raise ComptkError(f"{what}{like}; spell the labels as the run that wrote {submission} does"
                              + ("" if respelled else f", or check that {answers} holds this contest's answers"))
        log.warning("%s; they count as wrong (a class the run never saw)", what)
    known = set(ans[label_col]) | set(classes or ())
    unknown = sorted(set(sub[label_col]) - known)
    if unknown:
        n_rows = int(sub[label_col].isin(unknown).sum())
        raise ComptkError(f"{submission}: {n_rows} predictions are not class labels: {_some(unknown, 5)} (labels "
                          f"are: {_some(sorted(known), 10, quote=False)}); write the class names exactly")
    names = sorted(set(ans[label_col]) | set(sub[label_col]))
    index = {n: i for i, n in enumerate(names)}
    y_true = np.array([index[v] for v in ans[label_col]])
    y_pred = np.array([index[predicted[i]] for i in ans[id_col]])
    return get_metric(metric)(y_true, y_pred, len(names))
