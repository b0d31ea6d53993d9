"""The local leaderboard: every finished run and blend of a work directory as one table.

Rows come from the run records (oof/NAME.json, artifacts.read_record); nothing else is needed, and a
record written by an older comptk (missing fields) gives blanks, not an error. A blend's record names its
members, so each run's row lists the blends it is in. The test score is filled in when the answers are known:
``answers=`` or an ``answers.csv`` next to the run's data (what ``comptk prepare`` writes).

    table = collect("work")                         # pandas DataFrame, one row per run/blend
    table = select(table, where=["model=small_resnet", "cv>0.9"], sort="train_s", top=10)
    print(to_text(table))
    print(diff_text(diff("work", "run_a", "run_b"), "run_a", "run_b"))
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import artifacts
from ..data.tables import read_csv
from ..errors import ComptkError, did_you_mean
from ..submission import score_frames

log = logging.getLogger("comptk")

COLUMNS = ("name", "competition", "model", "img_size", "epochs", "folds", "cv", "cv_folds", "test", "train_s",
           "wall_s", "img_s", "date", "blends")
DESCENDING = ("cv", "cv_mean", "test", "img_s", "date")  # best / newest first
ANSWERS = "answers.csv"  # held-out test labels next to the data (comptk prepare writes it)
DIFF_KEYS = ("kind", "competition", "metric", "n_folds", "folds_trained", "classes", "train_ids_digest",
             "test_ids_digest", "train_labels_digest", "folds_digest", "method", "members")
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(>=|<=|!=|==|=|>|<)\s*(.*?)\s*$")


def _submission_path(workdir: Path, record: artifacts.RunRecord) -> Path:
    if record.is_blend:
        saved = record.artifacts.get("submission")
        if saved:
            return Path(saved) if Path(saved).is_absolute() else Path(workdir) / saved
    return artifacts.RunPaths(workdir, record.name).submission


def score_on_answers(workdir: Path, record: artifacts.RunRecord, answers: Path | None = None,
                     cache: dict[Path, pd.DataFrame] | None = None) -> float:
    """The run's submission scored against the answers (NaN when they are unknown or do not fit)."""
    if answers is None:
        answers = Path(record.data_dir) / ANSWERS if record.data_dir else None
    submission = _submission_path(workdir, record)
    metric = record.metric
    if answers is None or not answers.is_file() or not submission.is_file() or not metric:
        return math.nan
    cache = {} if cache is None else cache
    try:
        if answers not in cache:
            cache[answers] = read_csv(answers)
        ans, sub = cache[answers], read_csv(submission)
        classes = list(record.classes)
        id_col, label_col = ans.columns[0], ans.columns[-1]
        if classes and set(classes) <= set(sub.columns) and id_col in sub.columns:
            # A probability submission (one column per class): score its predicted classes.
            sub = pd.DataFrame({id_col: sub[id_col], label_col: np.array(classes)[sub[classes].to_numpy().argmax(1)]})
        return float(score_frames(sub, ans, metric, classes=classes or None, submission=submission,
                                  answers=answers))
    except ComptkError as exc:  # e.g. answers of other test rows: leave the cell blank, keep the table
        log.debug("%s: no test score (%s)", submission, exc)
        return math.nan


def _row(workdir: Path, record: artifacts.RunRecord, answers: Path | None, cache: dict) -> dict[str, Any]:
    config = record.config
    blend = record.is_blend
    n_folds = record.n_folds if record.n_folds is not None else config.get("n_folds")
    trained, partial = record.trained_folds, record.is_partial
    cv = record.cv or artifacts.CVScores()
    finished = str(record.finished_at or "")
    row = {
        **{k: v for k, v in config.items() if isinstance(v, (str, int, float, bool)) or v is None},
        "name": record.name,
        "kind": "blend" if blend else "run",
        "competition": record.competition,
        "metric": record.metric,
        "model": f"blend:{record.method or '?'}" if blend else config.get("model"),
        "img_size": None if blend else config.get("img_size"),
        "epochs": None if blend else config.get("epochs"),
        "n_folds": n_folds,
        "folds": (f"{len(trained)}/{n_folds}" if partial else str(n_folds)) if n_folds else None,
        "partial": partial,
        "cv": cv.oof,
        "cv_mean": cv.mean_of_folds,
        "cv_std": cv.std_of_folds,
        "cv_folds": " ".join(f"{s:.4f}" for s in cv.per_fold if isinstance(s, (int, float))),
        "test": score_on_answers(workdir, record, answers, cache),
        "train_s": record.timings.get("train_seconds"),
        "wall_s": record.timings.get("wall_seconds" if blend else "wall_seconds_this_session"),
        "img_s": record.timings.get("train_images_per_s"),
        "date": f"{finished[:10]} {finished[11:16]}".strip() if finished else None,
        "members": ",".join(str(m.get("name", "?")) for m in record.members or () if isinstance(m, dict)),
        "seed": record.seed if record.seed is not None else config.get("seed"),
        "torch_threads": record.torch_threads,
    }
    if blend:
        row["train_s"] = None  # a blend's fit time is not training time
    return row


def load_records(workdir: str | Path = ".") -> list[artifacts.RunRecord]:
    """Every readable run record under WORKDIR/oof; unreadable ones are skipped with a warning."""
    found = []
    for name in artifacts.run_names(workdir):
        path = artifacts.RunPaths(Path(workdir), name).sidecar
        try:
            found.append(artifacts.read_record(path))
        except ComptkError as exc:
            log.warning("skipped %s", exc)
    return found


def collect(workdir: str | Path = ".", *, competition: str | None = None, answers: str | Path | None = None,
            names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per finished run or blend (columns: COLUMNS, then the rest incl. every config key)."""
    workdir = Path(workdir)
    if answers is not None and not Path(answers).is_file():
        raise ComptkError(f"--answers {answers}: file not found")
    everything = load_records(workdir)
    in_blends: dict[str, list[str]] = {}
    for r in everything:
        if r.is_blend:
            for member in r.members or ():
                if isinstance(member, dict) and member.get("name"):
                    in_blends.setdefault(member["name"], []).append(r.name)
    records = everything
    if competition is not None:
        known = sorted({str(r.competition) for r in everything})
        if competition not in known:
            raise ComptkError(f"no runs of competition '{competition}' in {workdir / 'oof'}"
                              f"{did_you_mean(competition, known)}")
        records = [r for r in records if r.competition == competition]
    if names is not None:
        records = [r for r in records if r.name in set(names)]
    rows, cache = [], {}
    for record in records:
        row = _row(workdir, record, Path(answers) if answers else None, cache)
        row["blends"] = ",".join(in_blends.get(row["name"], []))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else list(COLUMNS))
    rest = [c for c in frame.columns if c not in COLUMNS]
    frame = frame[[*COLUMNS, *rest]]
    return frame.sort_values("cv", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def _condition(frame: pd.DataFrame, text: str) -> pd.Series:
    match = _CONDITION.match(text)
    if not match:
        raise ComptkError(f"--where '{text}': expected KEY=VALUE (or KEY!=, >, >=, <, <= VALUE), e.g. model=resnet18")
    key, op, value = match.groups()
    if key not in frame.columns:
        raise ComptkError(f"--where '{text}': no column '{key}'{did_you_mean(key, frame.columns)}; "
                          f"columns: {', '.join(map(str, frame.columns))}")
    column = frame[key]
    try:
        number = float(value)
    except ValueError:
        number = None
    numeric = pd.to_numeric(column, errors="coerce")
    if number is not None and column.dtype != bool and numeric.notna().any():
        left = numeric
    else:
        if op in (">", ">=", "<", "<="):
            raise ComptkError(f"--where '{text}': '{key}' values are not numbers; use = or !=")
        left = column.map(lambda v: "" if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))
                          else str(v).lower() if isinstance(v, bool) else str(v))
        number = value.lower() if value.lower() in ("true", "false") else value
    ops = {"=": left.eq, "==": left.eq, "!=": left.ne, ">": left.gt, ">=": left.ge, "<": left.lt, "<=": left.le}
    return ops[op](number).fillna(False).astype(bool)


def select(frame: pd.DataFrame, *, where: Sequence[str] = (), sort: str | None = None,
           reverse: bool = False, top: int | None = None) -> pd.DataFrame:
    """Filter rows (all ``where`` conditions), sort (scores and dates best/newest first), keep ``top``."""
    for text in where:
        frame = frame[_condition(frame, text)]
    key = sort or "cv"
    if key not in frame.columns:
        raise ComptkError(f"--sort '{key}': no such column{did_you_mean(key, frame.columns)}")
    ascending = key not in DESCENDING
    if reverse:
        ascending = not ascending
    frame = frame.sort_values(key, ascending=ascending, na_position="last", kind="stable")
    if top is not None:
        if top < 1:
            raise ComptkError(f"--top must be at least 1, got {top}")
        frame = frame.head(top)
    return frame.reset_index(drop=True)


def _fmt(column: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value == "":
        return "-"
    if isinstance(value, float):
        if column in ("cv", "cv_mean", "cv_std", "test"):
            return f"{value:.4f}"
        if column in ("train_s", "wall_s", "img_s"):
            return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
        return f"{value:g}"
    return str(value)


def to_text(frame: pd.DataFrame, columns: Sequence[str] = COLUMNS) -> str:
    """A plain aligned table (blank cells as '-')."""
    if frame.empty:
        return "no finished runs"
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ComptkError(f"--columns: no column '{missing[0]}'{did_you_mean(missing[0], frame.columns)}")
    shown = pd.DataFrame({c: [_fmt(c, v) for v in frame[c]] for c in columns})
    return shown.to_string(index=False)


def diff(workdir: str | Path, a: str, b: str) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for the config keys and the identity fields that differ."""
    known = artifacts.run_names(workdir)
    records = []
    for name in (a, b):
        path = artifacts.RunPaths(Path(workdir), artifacts.check_run_name(name)).sidecar
        if not path.is_file():
            raise ComptkError(f"no finished run '{name}' in {Path(workdir) / 'oof'}{did_you_mean(name, known)}")
        records.append(artifacts.read_record(path))
    left, right = records
    out = []
    for key in DIFF_KEYS:
        va, vb = getattr(left, key), getattr(right, key)
        if key == "folds_trained":
            va, vb = left.trained_folds, right.trained_folds
        if key == "members":
            va, vb = ([m.get("name") for m in v] if isinstance(v, tuple) else v for v in (va, vb))
        if key == "classes":
            va, vb = list(va), list(vb)
        if va != vb:
            out.append((key, va, vb))
    ca, cb = left.config, right.config
    for key in [*ca, *[k for k in cb if k not in ca]]:
        if ca.get(key, "<absent>") != cb.get(key, "<absent>"):
            out.append((f"config.{key}", ca.get(key, "<absent>"), cb.get(key, "<absent>")))
    return out


def diff_text(rows: list[tuple[str, Any, Any]], a: str, b: str) -> str:
    if not rows:
        return f"runs '{a}' and '{b}' have the same settings"

    def show(value: Any) -> str:
        text = str(value)
        return f"{text[:12]}..." if re.fullmatch(r"[0-9a-f]{64}", text) else text

    return pd.DataFrame({"key": [k for k, _, _ in rows], a: [show(v) for _, v, _ in rows],
                         b: [show(v) for _, _, v in rows]}).to_string(index=False)
