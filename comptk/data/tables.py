"""Reading and checking a competition's CSV tables: the train/test tables every later step uses.

Rows keep the CSV's order; ids are unique and non-empty (kept exactly as written: they must match
the sample submission); image paths resolve to files inside the image folder; labels are stripped
of surrounding spaces, checked for junk and encoded to class indices in the competition's class
order; [label_fixes] are applied here.
"""

from __future__ import annotations

import logging
import math
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..competition import Competition, template_fields
from ..errors import ComptkError, did_you_mean
from .images import IMAGE_EXTENSIONS

log = logging.getLogger("comptk")
# Spellings of "no value" that spreadsheets and pandas write; compared after stripping, ignoring case.
MISSING_LABELS = frozenset({"nan", "na", "n/a", "null", "none", "-"})
NEWLINE = b"\n"


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
    except UnicodeDecodeError:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
            start = None
        except UnicodeDecodeError as exc:
            start = exc.start
        where = "" if start is None else f" line {raw[:start].count(NEWLINE) + 1} (byte 0x{raw[start]:02x})"
        raise ComptkError(f"{path}{where}: not UTF-8 text (e.g. saved by Excel in a local encoding such as cp949 "
                          f"or cp1252); save it as UTF-8 (Excel: 'CSV UTF-8')") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ComptkError(f"{path}: cannot read as CSV: {str(exc).splitlines()[0]}") from None
    if len(frame.columns) == 1 and any(sep in str(frame.columns[0]) for sep in ";\t"):
        sep = ";" if ";" in str(frame.columns[0]) else "tab"
        raise ComptkError(f"{path}: its columns are separated by '{sep}', not commas (header "
                          f"{str(frame.columns[0])[:60]!r}); save it as comma-separated values")
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


def image_columns(comp: Competition) -> dict[str, str]:
    """role -> column the image paths come from: the image column, or the columns of [columns] image_template."""
    if comp.columns.image_template:
        return {f"image_template '{comp.columns.image_template}'": f
                for f in template_fields(comp.columns.image_template)}
    return {"image": comp.columns.image}


def image_values(comp: Competition, frame: pd.DataFrame) -> list[str]:
    """Each row's image path as written in the CSV, or built from [columns] image_template."""
    template = comp.columns.image_template
    if not template:
        return frame[comp.columns.image].tolist()
    fields = template_fields(template)
    return [template.format(**dict(zip(fields, values))) for values in zip(*(frame[f] for f in fields))]


def first_repeat(values) -> tuple[int, int] | None:
    """(earlier, later) positions of the first value seen twice, or None when all differ."""
    seen: dict = {}
    for i, value in enumerate(values):
        if value in seen:
            return seen[value], i
        seen[value] = i
    return None


def check_ids(ids: np.ndarray, path: Path) -> None:
    """Ids unique and not blank; spaces inside or around an id are kept (the sample submission's ids
    must match them exactly)."""
    seen: dict[str, int] = {}
    for row, value in enumerate(ids):
        if value.strip() == "":
            raise ComptkError(f"{path} line {row + 2}: empty id")
        if value in seen:
            raise ComptkError(f"{path} line {row + 2}: id '{value}' repeats line {seen[value] + 2}")
        seen[value] = row


def inside(candidate: str | Path, folder: str | Path) -> bool:
    """Whether ``candidate`` lies in ``folder``, judged on the path's text (os.path.normpath of
    the absolute paths: '..' is resolved, symbolic links are not followed)."""
    folder = os.path.normpath(os.path.abspath(folder))
    candidate = os.path.normpath(os.path.abspath(candidate))
    return os.path.commonpath([folder, candidate]) == folder


def check_image_values(values: list[str], ids: np.ndarray, path: Path) -> None:
    """No blank image path: joined to the image folder it would name the folder itself."""
    for row, (value, id_) in enumerate(zip(values, ids)):
        if not str(value).strip():
            raise ComptkError(f"{path} line {row + 2} (id '{id_}'): empty image path")


def resolve_paths(values: list[str], ids: np.ndarray, base: Path, path: Path, *,
                  other_suffix: bool = False) -> tuple[Path, ...]:
    """The image file of each row: relative to ``base`` (the declared image folder), or absolute.

    Every path must lie inside ``base``: '../x.png' or an absolute path elsewhere would train on
    files outside the competition's data. The check is lexical (see :func:`inside`), so a symbolic
    link the user placed inside the folder is followed wherever it points. ``other_suffix`` (paths built
    from an image_template): a missing 'x.jpg' is the stem's only image file under another extension
    ('x.JPG', 'x.png'), as downloads mixing extensions have them."""
    check_image_values(values, ids, path)
    resolved, stems = [], ImageStems()
    for row, (value, id_) in enumerate(zip(values, ids)):
        image = Path(value) if Path(value).is_absolute() else base / value
        if not inside(image, base):
            raise ComptkError(f"{path} line {row + 2} (id '{id_}'): image path '{value}' leads outside the image "
                              f"folder {base}; give a path inside it (relative to it)")
        if not image.is_file() and other_suffix:
            image = stems.only(image) or image
        if not image.is_file():
            several = stems.candidates(image) if other_suffix else []
            which = (f" ({' and '.join(p.name for p in several)} have its stem: which is meant cannot be told)"
                     if len(several) > 1 else "")
            raise ComptkError(f"{path} line {row + 2} (id '{id_}'): image file not found: {image}{which}")
        resolved.append(image)
    return tuple(resolved)


class ImageStems:
    """The image files of a folder by stem, listed once per folder (on its first lookup)."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, list[Path]]] = {}

    def only(self, image: Path) -> Path | None:
        """The one image file with ``image``'s stem in its folder, whatever its extension; None when none or
        several (x.jpg beside x.png: which one is meant cannot be told)."""
        found = self.candidates(image)
        return found[0] if len(found) == 1 else None

    def candidates(self, image: Path) -> list[Path]:
        """The image files with ``image``'s stem in its folder, whatever their extensions."""
        folder = image.parent
        if folder not in self._folders:
            stems: dict[str, list[Path]] = {}
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    for entry in entries:
                        stem, suffix = os.path.splitext(entry.name)
                        if suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                            stems.setdefault(stem, []).append(folder / entry.name)
            self._folders[folder] = stems
        return sorted(self._folders[folder].get(image.stem, []))


def normalise_labels(names: list[str], path: Path, declared: tuple[str, ...] | None) -> list[str]:
    """Train labels with surrounding spaces stripped ('3 ' -> '3'), so they do not become extra
    classes; one warning line gives the count and an example. A label written exactly as a declared
    class is kept; a stripped label takes the declared spelling it matches. Stripping that cannot
    tell two declared classes apart ('cat' and 'cat ' both declared) is an error naming the line."""
    exact = set(declared or ())
    by_stripped: dict[str, list[str]] = {}
    for name in declared or ():
        by_stripped.setdefault(name.strip(), []).append(name)
    out, changed = list(names), []
    for row, name in enumerate(names):
        if name in exact or name == name.strip() or name.strip().lower() in ("", *MISSING_LABELS):
            continue  # nothing to strip, or junk that check_label_values reports
        matches = by_stripped.get(name.strip(), [name.strip()])
        if len(matches) > 1:
            raise ComptkError(f"{path} line {row + 2}: label '{name}' has surrounding spaces, and stripped it "
                              f"matches the declared classes {', '.join(repr(m) for m in matches)}; write it "
                              f"exactly as one of them")
        out[row] = matches[0]
        changed.append(row)
    if changed:
        row = changed[0]
        log.warning("%s: stripped surrounding spaces from %d label%s (e.g. line %d: '%s' -> '%s')", path,
                    len(changed), "" if len(changed) == 1 else "s", row + 2, names[row], out[row])
    return _one_unicode_form(out, path, declared)


def nfc(text: str) -> str:
    """``text`` in Unicode's composed form (NFC): how most files write '김치'; macOS file names and text
    copied from them use the decomposed form (NFD), which looks the same and compares unequal."""
    return unicodedata.normalize("NFC", text)


def unicode_form(text: str) -> str:
    """'composed' or 'decomposed': how to tell two spellings apart that print the same."""
    return "composed" if nfc(text) == text else "decomposed"


def _one_unicode_form(names: list[str], path: Path, declared: tuple[str, ...] | None) -> list[str]:
    """Labels spelled in two Unicode forms (composed and decomposed '김치') would be two classes: each such
    label takes its declared spelling, else the composed one (NFC), with one warning line. Labels written in one
    form only are kept exactly as written (the answers were likely written the same way)."""
    exact = set(declared or ())
    forms: dict[str, set[str]] = {}
    for name in {*names, *exact}:
        forms.setdefault(nfc(name), set()).add(name)
    target: dict[str, str] = {}
    for composed, spellings in forms.items():
        if len(spellings) < 2:
            continue
        chosen = sorted(spellings & exact)
        if len(chosen) > 1:
            raise ComptkError(f"{path}: the declared classes {', '.join(repr(c) for c in chosen)} differ only in "
                              f"their Unicode form (composed vs decomposed); declare each class once")
        for spelling in spellings:
            target[spelling] = chosen[0] if chosen else composed
    out = [target.get(name, name) for name in names]
    changed = [row for row, (a, b) in enumerate(zip(names, out)) if a != b]
    if changed:
        row = changed[0]
        log.warning("%s: %d label%s written in another Unicode form than the same label elsewhere, made one "
                    "(e.g. line %d: '%s' %s -> %s)", path, len(changed), "" if len(changed) == 1 else "s", row + 2,
                    names[row], unicode_form(names[row]), unicode_form(out[row]))
    return out


def check_label_values(names: list[str], ids: np.ndarray, path: Path, declared: tuple[str, ...] | None) -> None:
    """Junk labels are errors naming the line: empty, or a missing-value spelling (NaN, NA, N/A,
    null, None, -) unless declared as a class; one number spelled two ways ('3' and '3.0') would
    be two classes, so it is an error naming both spellings (unless both are declared)."""
    exact = set(declared or ())
    first_row: dict[str, int] = {}
    for row, name in enumerate(names):
        if name in first_row:
            continue
        first_row[name] = row
        where = f"{path} line {row + 2} (id '{ids[row]}')"
        if name.strip() == "":
            raise ComptkError(f"{where}: empty label")
        if name.strip().lower() in MISSING_LABELS and name not in exact:
            raise ComptkError(f"{where}: label '{name}' reads as a missing value; give the row its label (or fix it "
                              f"in [label_fixes]), or, if '{name}' is a real class, list it in 'classes'")
    spellings: dict[float, list[str]] = {}
    for name in first_row:
        try:
            value = float(name)
        except ValueError:
            continue
        if math.isfinite(value):
            spellings.setdefault(value, []).append(name)
    for found in spellings.values():
        if len(found) > 1 and not set(found) <= exact:
            a, b = found[:2]
            raise ComptkError(f"{path}: labels '{a}' (line {first_row[a] + 2}) and '{b}' (line {first_row[b] + 2}) "
                              f"are one number spelled two ways and would be two classes; write it one way "
                              f"(if they are distinct classes, list both in 'classes')")


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


def sample_format(columns: list[str], id_col: str, classes: tuple[str, ...] | list[str], path: Path | str) -> str:
    """How a submission in the sample submission's format gives its answer: "label" (one column besides the
    id, the predicted class name) or "proba" (one column per class, exactly the class names). Any other
    set of columns is an error naming what does not match, raised when the data is read, before training."""
    other = [c for c in columns if c != id_col]
    if len(other) == 1:
        return "label"
    if len(other) > 1 and sorted(other) == sorted(classes):
        return "proba"
    if not other:
        raise ComptkError(f"{path}: needs a label column (or one column per class) besides the id column "
                          f"'{id_col}'")
    strangers = [c for c in other if c not in set(classes)]
    lacking = [c for c in classes if c not in set(other)]
    parts = []
    if strangers:
        parts.append(f"{len(strangers)} column(s) not a class: " + ", ".join(f"'{c}'" for c in strangers[:5])
                     + (", ..." if len(strangers) > 5 else ""))
    if lacking:
        parts.append(f"{len(lacking)} class(es) without a column: " + ", ".join(f"'{c}'" for c in lacking[:5])
                     + (", ..." if len(lacking) > 5 else ""))
    raise ComptkError(f"{path}: columns {', '.join(columns)}: besides the id column '{id_col}' a submission needs "
                      f"either one label column or one column per class, named as the classes ({'; '.join(parts)}); "
                      f"declare 'classes' with the column names, or remove the columns the contest does not score")


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
