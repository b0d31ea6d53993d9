"""Reading and checking a competition's CSV tables: the train/test tables every later step uses.

Rows keep the CSV's order; ids are unique and non-empty; image paths resolve to files; labels
are encoded to class indices in the competition's class order; [label_fixes] are applied here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..competition import Competition
from ..errors import ComptkError, did_you_mean


@dataclass(frozen=True)
class Table:
    ids: np.ndarray  # str, unique
    paths: tuple[Path, ...]
    labels: np.ndarray | None = None  # int class index per row (train only)
    groups: np.ndarray | None = None  # str group per row, when declared
    label_fixes: tuple[tuple[str, str, str], ...] = ()  # (id, label in the data, label used): [label_fixes]


@dataclass(frozen=True)
class CompetitionData:
    competition: Competition
    data_dir: Path
    classes: tuple[str, ...]
    train: Table
    test: Table
    sample_submission: pd.DataFrame | None  # read as strings, in its own row order

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ComptkError(f"file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ComptkError(f"{path}: cannot read as CSV: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise ComptkError(f"{path}: has no rows")
    return frame


def require_columns(frame: pd.DataFrame, path: Path, columns: dict[str, str]) -> None:
    for role, column in columns.items():
        if column not in frame.columns:
            raise ComptkError(
                f"{path}: no column '{column}' (declared as the {role} column); "
                f"columns are: {', '.join(frame.columns)}"
            )


def check_ids(ids: np.ndarray, path: Path) -> None:
    seen: dict[str, int] = {}
    for row, value in enumerate(ids):
        if value == "":
            raise ComptkError(f"{path} line {row + 2}: empty id")
        if value in seen:
            raise ComptkError(f"{path} line {row + 2}: id '{value}' repeats line {seen[value] + 2}")
        seen[value] = row


def resolve_paths(values: list[str], ids: np.ndarray, base: Path, path: Path) -> tuple[Path, ...]:
    resolved = []
    for row, (value, id_) in enumerate(zip(values, ids)):
        image = Path(value) if Path(value).is_absolute() else base / value
        if not image.is_file():
            raise ComptkError(f"{path} line {row + 2} (id '{id_}'): image file not found: {image}")
        resolved.append(image)
    return tuple(resolved)


def encode_labels(names: list[str], classes: tuple[str, ...], ids: np.ndarray, path: Path) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    labels = np.empty(len(names), dtype=np.int64)
    for row, name in enumerate(names):
        if name not in index:
            raise ComptkError(
                f"{path} line {row + 2} (id '{ids[row]}'): label '{name}' is not in the class list "
                f"({len(classes)} classes declared in competition.toml)"
            )
        labels[row] = index[name]
    return labels


def image_dir(data_dir: Path, folder: str) -> Path:
    """The folder a CSV's image paths are relative to (data_dir unless declared)."""
    base = data_dir / folder if folder else data_dir
    if folder and not base.is_dir():
        raise ComptkError(f"image folder not found: {base}")
    return base


def apply_label_fixes(comp: Competition, ids: np.ndarray, labels: list[str], where: Path,
                  classes: tuple[str, ...] = ()) -> tuple[list[str], tuple[tuple[str, str, str], ...]]:
    """The train labels with the declaration's [label_fixes] applied (id -> right label), and
    the fixes as (id, label in the data, label used). ``classes``: the layout's class list when it
    knows one (class folders, a labeler), so a fix may name a class that has no images yet."""
    if not comp.label_fixes:
        return labels, ()
    row_of = {id_: row for row, id_ in enumerate(ids)}
    known = set(comp.classes or classes or labels)
    fixed, applied = list(labels), []
    for id_, label in comp.label_fixes.items():
        if id_ not in row_of:
            raise ComptkError(
                f"{comp.source} [label_fixes]: id '{id_}' is not a train id of {where}{did_you_mean(id_, row_of)}"
            )
        if label not in known:
            raise ComptkError(
                f"{comp.source} [label_fixes]: id '{id_}' -> '{label}' is not a label of {where}"
                f"{did_you_mean(label, known)}"
            )
        applied.append((id_, labels[row_of[id_]], label))
        fixed[row_of[id_]] = label
    return fixed, tuple(applied)
