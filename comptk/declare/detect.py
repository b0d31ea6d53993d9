"""What a downloaded contest folder holds, found from the files' content (names only break ties).

- layout: a train CSV (a CSV named *train*, or the only CSV besides test and sample) makes the csv layout; else a
  folder whose sub-folders hold images (train/CLASS/*.jpg) makes the folders layout;
- id column: the sample submission's column whose values are the test table's ids;
- label column: the column the sample submission predicts (its non-id column), found in the train CSV by name,
  else by content (a class-like column holding the sample's placeholder values);
- image column: the train column whose values resolve to image files under the data folder or one of its
  sub-folders (the one that resolves is ``[files] train_images``); ids that are file stems (``id`` +
  ``train/{id}.png``, as in many Kaggle contests) become ``[columns] image_template = "{id}.png"``.

Every guess comes with a one-line reason (``Detection.notes``); anything that cannot be settled is a
ComptkError naming the option that settles it (--id-col, --image-col, --label-col, --train, --test,
--sample-submission).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..data.images import IMAGE_EXTENSIONS, images_in, is_visible
from ..data.tables import ImageStems, read_csv
from ..errors import ComptkError

N_PROBE = 30  # values of a column checked against the files
MAX_BASES = 200  # folders tried as the base of image paths
VALIDATION_NAMES = ("val", "valid", "validation", "dev")


@dataclass(frozen=True)
class Detection:
    root: Path  # the data folder (unwrapped when the files sat in one sub-folder)
    layout: str
    files: dict[str, str]  # the [files] table
    columns: dict[str, str]  # the [columns] table
    notes: dict[str, str] = field(default_factory=dict)  # topic -> why (layout, files, id, image, label, ...)


def _dirs(root: Path, depth: int = 2) -> list[Path]:
    """Visible sub-folders of root, breadth first, at most ``depth`` deep."""
    found, level = [], [root]
    for _ in range(depth):
        level = sorted(d for parent in level for d in parent.iterdir()
                       if d.is_dir() and is_visible(d) and d.name != "__MACOSX")
        found += level
        if len(found) > MAX_BASES:
            break
    return found[:MAX_BASES]


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


DOCUMENT_SUFFIXES = (".md", ".txt", ".pdf", ".html", ".htm", ".rst", ".docx")


def unwrap(root: Path) -> tuple[Path, str]:
    """A folder holding nothing but one sub-folder (a download unpacked into its own folder), besides documents
    (README.md, LICENSE, rules.pdf): use the sub-folder."""
    entries = [p for p in root.iterdir() if is_visible(p) and p.name != "__MACOSX"]
    folders = [p for p in entries if p.is_dir()]
    others = [p for p in entries if not p.is_dir()
              and not (p.suffix.lower() in DOCUMENT_SUFFIXES
                       or (p.suffix == "" and p.stem.upper() in ("README", "LICENSE", "LICENCE")))]
    if len(folders) == 1 and not others:
        beside = len(entries) - 1
        return folders[0], (f"the files sit in '{folders[0].name}/'" + (f" (beside {beside} document(s))" if beside
                                                                         else "") + ": that folder is the data folder")
    return root, ""


def _probe(series: pd.Series) -> list[str]:
    """Up to N_PROBE non-empty values, evenly spread over the rows."""
    values = [v for v in series.tolist() if v != ""]
    step = max(1, len(values) // N_PROBE)
    return values[::step][:N_PROBE]


def _is_image_name(value: str) -> bool:
    return Path(value).suffix.lower() in IMAGE_EXTENSIONS


def _suffixes(base: Path, limit: int = 500) -> list[str]:
    """Image extensions of files directly in base (as written, e.g. '.png', '.JPG'), most common first."""
    seen: Counter = Counter()
    with os.scandir(base) as entries:
        for i, entry in enumerate(entries):
            if i >= limit:
                break
            suffix = os.path.splitext(entry.name)[1]
            if suffix.lower() in IMAGE_EXTENSIONS:
                seen[suffix] += 1
    return [s for s, _ in seen.most_common()]


def _resolve(values: list[str], bases: list[Path], *, suffix: str | None, prefer: str,
             avoid: Path | None = None) -> tuple[Path, str] | None:
    """(base, suffix) under which every value names an image file: values as paths (suffix ''), or with
    ``suffix`` appended (None: try each base's image extensions). A folder other than ``avoid`` first (the
    train images' folder, when looking for the test images: test ids that repeat train ids name train files
    there too), then the data folder, then a folder whose name holds ``prefer`` (train / test), then the first."""
    hits = [(base, ext) for base, ext, missing in _lookups(values, bases, suffix) if not missing]
    if not values or not hits:
        return None
    hits.sort(key=lambda hit: (hit[0] == avoid, hit[0] != bases[0], prefer not in hit[0].name.lower()))
    return hits[0]


def _lookups(values: list[str], bases: list[Path], suffix: str | None) -> list[tuple[Path, str, list[str]]]:
    """(base, suffix, values naming no image file there) for each base, with its best suffix. Values that are
    stems (``suffix`` not '') also find the stem's only image file under another extension (x.JPG beside y.jpg),
    as reading the data does (tables.resolve_paths)."""
    out, stems = [], ImageStems()
    for base in bases:
        tries = ([""] if suffix == "" else [suffix] if suffix else _suffixes(base) or [""])

        def lacking(ext: str) -> list[str]:
            return [v for v in values if not (_is_image_name(v + ext) and ((base / (v + ext)).is_file()
                                                                          or (ext and stems.only(base / (v + ext)))))]

        missing = {ext: lacking(ext) for ext in tries}
        ext = min(tries, key=lambda e: len(missing[e]))
        out.append((base, ext, missing[ext]))
    return out


def _missing_note(values: list[str], bases: list[Path], suffix: str | None, root: Path) -> str:
    """Where most of ``values`` name image files but some do not: one of those, as a path (else '')."""
    if not values:
        return ""
    base, ext, missing = min(_lookups(values, bases, suffix), key=lambda hit: len(hit[2]))
    if not missing or len(missing) > len(values) / 2:
        return ""
    return (f"; {len(values) - len(missing)} of the {len(values)} values looked at name image files under "
            f"{_rel(base, root) if base != root else 'the data folder'}, but not {missing[0]!r} "
            f"({base / (missing[0] + ext)} is missing)")


def _one(found: list[Path], role: str, option: str, words: str) -> Path | None:
    if len(found) > 1:
        raise ComptkError(f"several CSVs look like the {role} ({', '.join(p.name for p in found)}: {words}); "
                          f"pass {option} FILE")
    return found[0] if found else None


def _given(root: Path, value: str | None, option: str) -> Path | None:
    if value is None:
        return None
    path = root / value
    if not path.exists():
        raise ComptkError(f"{option} {value}: not found under the data folder {root}")
    return path


def _lists_test_ids(csv: Path, sample_csv: Path | None, test_csv: Path | None) -> bool:
    """True when ``csv``'s first column holds the test ids (e.g. answers or a second sample file): taking it
    as the train table would train on the test set's labels."""
    test_ids: set[str] = set()
    for path in (sample_csv, test_csv):
        if path is not None and path.is_file():
            test_ids |= set(read_csv(path).iloc[:, 0])
    return bool(test_ids) and len(set(read_csv(csv).iloc[:, 0]) & test_ids) > 0


def _class_splits(root: Path) -> dict[Path, dict[str, int]]:
    """Folders of class folders: folder -> {class: images}."""
    splits = {}
    for folder in _dirs(root, depth=1):
        classes = {sub.name: len(images_in(sub)) for sub in sorted(folder.iterdir())
                   if sub.is_dir() and is_visible(sub)}
        classes = {name: n for name, n in classes.items() if n}
        if len(classes) >= 2:
            splits[folder] = classes
    return splits


def detect(root: Path, *, id_col: str | None = None, image_col: str | None = None, label_col: str | None = None,
           train: str | None = None, test: str | None = None, sample: str | None = None) -> Detection:
    """The layout, files and columns of the contest in ``root``, each with its reason."""
    root = Path(root)
    if not root.is_dir():
        raise ComptkError(f"--data {root}: not a folder or a .zip file")
    notes = {}
    if not any(v is not None for v in (train, test, sample)):
        root, note = unwrap(root)
        if note:
            notes["data"] = note
    csvs = [p for p in sorted(root.glob("*.csv")) if is_visible(p)]
    sample_csv = _given(root, sample, "--sample-submission") or _one(
        [p for p in csvs if "sample" in p.name.lower() or "submission" in p.name.lower()],
        "sample submission", "--sample-submission", "named *sample* or *submission*")
    test_path = _given(root, test, "--test")
    if test_path is None:
        test_path = _one([p for p in csvs if "test" in p.stem.lower() and p != sample_csv], "test table", "--test",
                         "named *test*")
    train_path = _given(root, train, "--train")
    if train_path is None:
        named = [p for p in csvs if "train" in p.stem.lower() and p not in (sample_csv, test_path)]
        train_path = _one(named, "train table", "--train", "named *train*")
        others = [p for p in csvs if p not in (sample_csv, test_path)]
        if train_path is None and len(others) == 1 and not _class_splits(root) \
                and not _lists_test_ids(others[0], sample_csv, test_path):
            train_path = others[0]
            notes["train"] = f"{train_path.name}: the only CSV besides the test table and the sample submission"
    if train_path is not None and train_path.is_file():
        return _detect_csv(root, train_path, test_path, sample_csv, notes, id_col, image_col, label_col)
    return _detect_folders(root, train_path, test_path, sample_csv, notes, id_col, label_col)


def _detect_folders(root: Path, train_dir: Path | None, test_dir: Path | None, sample_csv: Path | None,
                    notes: dict[str, str], id_col: str | None, label_col: str | None) -> Detection:
    splits = _class_splits(root)
    if train_dir is None:
        named = [d for d in splits if d.name.lower().startswith("train")]
        if not splits:
            raise ComptkError(f"{root}: found no train CSV (a CSV named *train*) and no folder of class folders "
                              f"(train/CLASS/*.jpg); pass --train FILE_OR_FOLDER (relative to the data folder)")
        train_dir = named[0] if len(named) == 1 else max(splits, key=lambda d: sum(splits[d].values()))
    elif train_dir not in splits:
        raise ComptkError(f"--train {_rel(train_dir, root)}: not a folder of class folders holding images")
    extra = [d for d in splits if d != train_dir and d.name.lower() in VALIDATION_NAMES]
    if test_dir is None or test_dir.suffix.lower() == ".csv":
        tests = [d for d in _dirs(root, depth=1) if "test" in d.name.lower() and d not in splits and images_in(d)]
        if len(tests) != 1:
            found = ", ".join(_rel(d, root) for d in tests) or "none"
            raise ComptkError(f"{root}: cannot tell the folder of test images (folders named *test* holding images: "
                              f"{found}); pass --test FOLDER")
        test_dir = tests[0]
    classes = splits[train_dir]
    files = {"train": _rel(train_dir, root), "test": _rel(test_dir, root)}
    notes["layout"] = (f"folders: {files['train']}/ holds {len(classes)} class folders of images, "
                       f"{files['test']}/ the unlabelled test images")
    if extra:
        files["extra_train"] = [_rel(d, root) for d in extra]
        notes["extra_train"] = (f"{', '.join(files['extra_train'])}: the same class folders, labelled too: "
                                f"merged into the K-fold training rows")
    columns = {}
    if sample_csv is not None:
        sample_df = read_csv(sample_csv)
        files["sample_submission"] = _rel(sample_csv, root)
        columns["id"] = id_col or sample_df.columns[0]
        others = [c for c in sample_df.columns if c != columns["id"]]
        if len(others) == 1:
            columns["label"] = label_col or others[0]
        notes["id"] = (f"'{columns['id']}': the sample submission's first column (test image file names)"
                       if not id_col else f"'{id_col}': given")
        if len(others) == 1:
            notes["label"] = f"'{columns['label']}': the column the sample submission predicts"
        else:
            notes["label"] = f"the sample submission has one probability column per class ({len(others)})"
    else:
        notes["id"] = "no sample submission: the submission is id,label with the test file names without extension"
    return Detection(root, "folders", files, columns, notes)


def _class_like(series: pd.Series) -> bool:
    n = series.nunique()
    return 2 <= n <= max(2, len(series) // 2) and not (series == "").any()


def _image_like(series: pd.Series) -> bool:
    values = _probe(series)
    return bool(values) and sum(_is_image_name(v) for v in values) > len(values) / 2


def _detect_csv(root: Path, train_csv: Path, test_csv: Path | None, sample_csv: Path | None, notes: dict[str, str],
                id_col: str | None, image_col: str | None, label_col: str | None) -> Detection:
    train = read_csv(train_csv)
    sample = read_csv(sample_csv) if sample_csv is not None else None
    if test_csv is None or test_csv.is_dir():
        if sample is None:
            raise ComptkError(f"{root}: found {train_csv.name} but no test CSV and no sample submission; "
                              f"pass --test FILE")
        test_csv = sample_csv
        notes["test"] = f"no test CSV: {sample_csv.name} lists the test ids"
    test = read_csv(test_csv)
    files = {"train": _rel(train_csv, root), "test": _rel(test_csv, root)}
    if sample_csv is not None:
        files["sample_submission"] = _rel(sample_csv, root)
    id_name = _id_column(train, test, sample, train_csv, test_csv, sample_csv, id_col, notes)
    label = _label_column(train, test, sample, id_name, train_csv, sample_csv, label_col, notes)
    columns = {"id": id_name}
    image, template, train_base, test_base = _image_column(root, train, test, id_name, label, train_csv, test_csv,
                                                           image_col, notes)
    if template:
        columns["image_template"] = template
    else:
        columns["image"] = image
    columns["label"] = label
    if train_base != root:
        files["train_images"] = _rel(train_base, root)
    if test_base != root:
        files["test_images"] = _rel(test_base, root)
    notes["layout"] = f"csv: {train_csv.name} lists the train images and their labels, {test_csv.name} the test images"
    return Detection(root, "csv", files, columns, notes)


def _id_column(train: pd.DataFrame, test: pd.DataFrame, sample: pd.DataFrame | None, train_csv: Path,
               test_csv: Path, sample_csv: Path | None, id_col: str | None, notes: dict[str, str]) -> str:
    if id_col is not None:
        for frame, path in ((train, train_csv), (test, test_csv)):
            if id_col not in frame.columns:
                raise ComptkError(f"--id-col {id_col}: {path.name} has no such column (columns: "
                                  f"{', '.join(frame.columns)})")
        notes["id"] = f"'{id_col}': given"
        return id_col
    if sample is not None and test_csv != sample_csv:
        matches = [c for c in sample.columns if c in test.columns and set(sample[c]) == set(test[c])]
        if not matches:
            _check_nearly_same_ids(sample, test, sample_csv, test_csv)
            raise ComptkError(f"no column of {sample_csv.name} holds the ids of {test_csv.name} (columns "
                              f"{', '.join(sample.columns)} vs {', '.join(test.columns)}); pass --id-col")
        name = matches[0]
        why = f"the sample submission's {'first ' if name == sample.columns[0] else ''}column whose values are " \
              f"{test_csv.name}'s ids"
    elif sample is not None:
        name, why = sample.columns[0], "the sample submission's first column"
    else:
        unique = [c for c in test.columns if c in train.columns and test[c].is_unique and train[c].is_unique]
        if len(unique) != 1:
            raise ComptkError(f"no sample submission, and {len(unique)} columns of {test_csv.name} could be the id "
                              f"({', '.join(unique) or 'none unique in both tables'}); pass --id-col")
        name, why = unique[0], f"the one column unique in both {train_csv.name} and {test_csv.name}"
    if name not in train.columns:
        raise ComptkError(f"{train_csv.name} has no column '{name}' (the id column of {test_csv.name}); comptk reads "
                          f"one id column name in both tables: rename it in one of them or pass --id-col")
    notes["id"] = f"'{name}': {why}"
    return name


def _check_nearly_same_ids(sample: pd.DataFrame, test: pd.DataFrame, sample_csv: Path, test_csv: Path) -> None:
    """Where a column of the sample and one of the test table share most of their values but not all, an error
    saying which value is in one table only (they differ by a few rows; no other id column would do)."""
    shared, column = max(((len(set(sample[c]) & set(test[c])), c) for c in sample.columns if c in test.columns),
                         default=(0, ""))
    if not column or shared < 0.5 * max(len(set(sample[column])), len(set(test[column]))):
        return
    only_sample = sorted(set(sample[column]) - set(test[column]))
    only_test = sorted(set(test[column]) - set(sample[column]))
    example = (f"'{only_sample[0]}' is in {sample_csv.name} only" if only_sample
               else f"'{only_test[0]}' is in {test_csv.name} only")
    raise ComptkError(f"{sample_csv.name} and {test_csv.name} list other test images: their '{column}' columns share "
                      f"{shared} ids, {len(only_sample)} are in {sample_csv.name} only and {len(only_test)} in "
                      f"{test_csv.name} only (e.g. {example}); both must list the same test images")


def _label_column(train: pd.DataFrame, test: pd.DataFrame, sample: pd.DataFrame | None, id_name: str,
                  train_csv: Path, sample_csv: Path | None, label_col: str | None, notes: dict[str, str]) -> str:
    if label_col is not None:
        if label_col not in train.columns:
            raise ComptkError(f"--label-col {label_col}: {train_csv.name} has no such column "
                              f"(columns: {', '.join(train.columns)})")
        notes["label"] = f"'{label_col}': given"
        return label_col
    pool = [c for c in train.columns if c != id_name and not _image_like(train[c])]
    predicted = [c for c in sample.columns if c != id_name] if sample is not None else []
    if len(predicted) == 1 and predicted[0] in train.columns:
        notes["label"] = f"'{predicted[0]}': the column {sample_csv.name} predicts; {train_csv.name} has it"
        return predicted[0]
    if len(predicted) > 1:  # one probability column per class
        onehot = [c for c in predicted if c in train.columns]
        if len(onehot) == len(predicted):
            raise ComptkError(f"{train_csv.name} gives the labels as one column per class ({', '.join(predicted[:4])}"
                              f"{', ...' if len(predicted) > 4 else ''}); comptk reads one label column: add one "
                              f"holding the class name (pandas: frame[cols].idxmax(axis=1)) and pass --label-col")
        found = [c for c in pool if _class_like(train[c]) and set(train[c]) <= set(predicted)]
        why = f"its values are the class columns of {sample_csv.name}"
    elif predicted:
        placeholders = set(sample[predicted[0]])
        found = [c for c in pool if _class_like(train[c]) and placeholders <= set(train[c])]
        why = f"{sample_csv.name} predicts '{predicted[0]}' (not a column of {train_csv.name}); this class-like " \
              f"column holds its values"
        if not found:
            found = [c for c in pool if _class_like(train[c]) and c not in test.columns]
            why = f"{sample_csv.name} predicts '{predicted[0]}'; this is the one class-like column the test lacks"
    else:
        found = [c for c in pool if _class_like(train[c]) and c not in test.columns]
        why = f"no sample submission; the one class-like column of {train_csv.name} the test table lacks"
    if len(found) != 1:
        what = f"columns {', '.join(found)} could each be" if found else "found no column that is"
        raise ComptkError(f"{train_csv.name}: {what} the label column; pass --label-col "
                          f"(columns: {', '.join(train.columns)})")
    notes["label"] = f"'{found[0]}': {why}"
    return found[0]


def _image_column(root: Path, train: pd.DataFrame, test: pd.DataFrame, id_name: str, label: str, train_csv: Path,
                  test_csv: Path, image_col: str | None, notes: dict[str, str]) -> tuple[str, str, Path, Path]:
    """(column, template or '', train base folder, test base folder)."""
    bases = [root, *_dirs(root)]
    candidates = [image_col] if image_col else [c for c in train.columns if c != label]
    if image_col and image_col not in train.columns:
        raise ComptkError(f"--image-col {image_col}: {train_csv.name} has no such column "
                          f"(columns: {', '.join(train.columns)})")
    direct, stems = [], []
    for column in candidates:
        values = _probe(train[column])
        hit = _resolve(values, bases, suffix="", prefer="train")
        if hit:
            direct.append((column, hit))
        elif hit := _resolve(values, bases, suffix=None, prefer="train"):
            stems.append((column, hit))
    if len(direct) > 1:  # an id that is a file name as well as a path column: the path column says more
        direct = [d for d in direct if d[0] != id_name] or direct
    found = direct or stems
    if len(found) != 1:
        if found:
            raise ComptkError(f"{train_csv.name}: columns {', '.join(c for c, _ in found)} all name image files; "
                              f"pass --image-col")
        near = next((note for c in candidates for note in (_missing_note(_probe(train[c]), bases, "", root),
                                                             _missing_note(_probe(train[c]), bases, None, root))
                     if note), "")
        example = _probe(train[candidates[0]])[:1]
        raise ComptkError(f"{train_csv.name}: no column names image files under {root} or its sub-folders (tried "
                          f"{', '.join(candidates)}; e.g. '{candidates[0]}' = {example[0]!r} is no image file there"
                          f"{near}); " + ("restore the file or remove its row" if near else
                                          "pass --image-col, or put the images under the data folder") if example else
                          f"{train_csv.name}: no column names image files; pass --image-col")
    column, (train_base, suffix) = found[0]
    if column not in test.columns:
        raise ComptkError(f"{test_csv.name} has no column '{column}' ({train_csv.name}'s image column); comptk reads "
                          f"one image column (or one image_template) for both tables; pass --image-col")
    test_hit = _resolve(_probe(test[column]), bases, suffix=suffix, prefer="test", avoid=train_base)
    if test_hit is None:
        missing = _missing_note(_probe(test[column]), bases, suffix, root)
        raise ComptkError(f"{test_csv.name}: the values of '{column}' name no image files under {root} or its "
                          f"sub-folders (as {train_csv.name}'s do{' with ' + suffix if suffix else ''}"
                          f"{missing}); " + ("restore the file or remove its row" if missing else "pass --image-col"))
    where = (f"under {_rel(train_base, root)}/" if train_base != root else "under the data folder")
    test_where = (f"under {_rel(test_hit[0], root)}/" if test_hit[0] != root else "under the data folder")
    if suffix:
        template = f"{{{column}}}{suffix}"
        notes["image"] = (f"image_template \"{template}\": the values of '{column}' are file stems; with {suffix} they "
                          f"name image files {where} (train) and {test_where} (test)")
        return column, template, train_base, test_hit[0]
    notes["image"] = f"'{column}': its values name image files {where} (train) and {test_where} (test)"
    return column, "", train_base, test_hit[0]
