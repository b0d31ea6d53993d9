"""The three data layouts a competition can declare, read into train/test tables:

- ``csv``: train and test CSVs with id, image path and (train) label columns;
- ``folders``: one folder per class (train, and optional extra labelled splits), a folder of test images;
- ``person-folders``: the train CSV has one row per person, each with a folder of photos (the mask
  contest); each photo becomes one train row, grouped by person, labelled by a registered labeler
  (labelers.py).

``read_data`` reads whichever is declared, plus the sample submission.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..competition import Competition
from ..errors import ComptkError
from .images import IMAGE_EXTENSIONS, images_in, is_visible
from .labelers import LABELERS, PersonLabeler
from .tables import (
    CompetitionData,
    Table,
    apply_label_fixes,
    check_ids,
    check_label_values,
    encode_labels,
    first_repeat,
    image_columns,
    image_dir,
    image_values,
    inside,
    nfc,
    normalise_labels,
    read_csv,
    require_columns,
    resolve_paths,
    sample_format,
)


def read_csv_test(comp: Competition, data_dir: Path) -> Table:
    """The test CSV: id and image columns; images under [files] test_images (default data_dir)."""
    cols = comp.columns
    test_path = data_dir / comp.files.test
    test = read_csv(test_path)
    require_columns(test, test_path, {"id": cols.id, **image_columns(comp)})
    test_ids = test[cols.id].to_numpy(dtype=str)
    check_ids(test_ids, test_path)
    base = image_dir(data_dir, comp.files.test_images)
    return Table(ids=test_ids, paths=resolve_paths(image_values(comp, test), test_ids, base, test_path,
                                                   other_suffix=bool(comp.columns.image_template)))


def _read_csv_layout(comp: Competition, data_dir: Path) -> tuple[Table, Table, tuple[str, ...]]:
    cols = comp.columns
    train_path = data_dir / comp.files.train
    train = read_csv(train_path)
    wanted = {"id": cols.id, **image_columns(comp), "label": cols.label}
    if cols.group:
        wanted["group"] = cols.group
    require_columns(train, train_path, wanted)
    train_ids = train[cols.id].to_numpy(dtype=str)
    check_ids(train_ids, train_path)
    label_names = normalise_labels(train[cols.label].tolist(), train_path, comp.classes)
    label_names, fixes = apply_label_fixes(comp, train_ids, label_names, train_path)
    check_label_values(label_names, train_ids, train_path, comp.classes)  # after the fixes: they may mend junk
    classes = comp.classes or tuple(sorted(set(label_names)))
    base = image_dir(data_dir, comp.files.train_images)
    train_table = Table(
        ids=train_ids,
        paths=resolve_paths(image_values(comp, train), train_ids, base, train_path,
                            other_suffix=bool(comp.columns.image_template)),
        labels=encode_labels(label_names, classes, train_ids, train_path),
        groups=train[cols.group].to_numpy(dtype=str) if cols.group else None,
        label_fixes=fixes,
    )
    return train_table, read_csv_test(comp, data_dir), classes


def _class_folder_rows(split_dir: Path, classes: tuple[str, ...],
                       prefix: str) -> tuple[list[Path], list[int], list[str]]:
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and is_visible(p))
    folder_of: dict[str, str] = {}  # a class (composed Unicode form) -> its folder's name as on disk
    known = {nfc(c) for c in classes}
    for name in found:
        if nfc(name) in folder_of:
            raise ComptkError(f"{split_dir}: class folders '{folder_of[nfc(name)]}' and '{name}' differ only in "
                              f"their Unicode form; merge them")
        folder_of[nfc(name)] = name
        if nfc(name) not in known:
            raise ComptkError(f"{split_dir / name}: class folder '{name}' is not in the class list")
    paths, labels = [], []
    for index, name in enumerate(classes):
        folder = split_dir / folder_of.get(nfc(name), name)
        files = images_in(folder) if folder.is_dir() else []
        paths += files
        labels += [index] * len(files)
    ids = [prefix + str(p.relative_to(split_dir).with_suffix("")) for p in paths]
    _check_stems(ids, paths)
    return paths, labels, ids


def _check_stems(ids: list[str], paths: list[Path]) -> None:
    """Folder layouts name rows by path without extension: 'a.jpg' beside 'a.png' would share an id."""
    repeat = first_repeat(ids)
    if repeat is not None:
        first, path = paths[repeat[0]], paths[repeat[1]]
        raise ComptkError(f"{path.parent}: images '{first.name}' and '{path.name}' differ only in their "
                          f"extension, so both would be id '{ids[repeat[1]]}'; rename or remove one")


def _read_folder_layout(comp: Competition, data_dir: Path) -> tuple[Table, Table, tuple[str, ...]]:
    train_dir, test_dir = data_dir / comp.files.train, data_dir / comp.files.test
    extra_dirs = [data_dir / name for name in comp.files.extra_train]
    for folder in (train_dir, test_dir, *extra_dirs):
        if not folder.is_dir():
            raise ComptkError(f"folder not found: {folder}")
    # class names in the composed Unicode form: folder names unpacked on macOS are decomposed
    classes = comp.classes or tuple(sorted({nfc(p.name) for d in (train_dir, *extra_dirs)
                                            for p in d.iterdir() if p.is_dir() and is_visible(p)}))
    paths, labels, ids = _class_folder_rows(train_dir, classes, "")
    if not paths:
        raise ComptkError(f"{train_dir}: no images in class folders")
    for name, folder in zip(comp.files.extra_train, extra_dirs):  # ids keep the split's name: "val/kimchi/001"
        more = _class_folder_rows(folder, classes, f"{name}/")
        paths, labels, ids = paths + more[0], labels + more[1], ids + more[2]
    test_paths = images_in(test_dir)
    if not test_paths:
        raise ComptkError(f"{test_dir}: no test images")
    train_ids = np.array(ids, dtype=str)
    label_names, fixes = apply_label_fixes(comp, train_ids, [classes[i] for i in labels], train_dir, classes)
    test_ids = [str(p.relative_to(test_dir).with_suffix("")) for p in test_paths]
    _check_stems(test_ids, test_paths)
    test_ids = np.array(test_ids, dtype=str)
    return (
        Table(ids=train_ids, paths=tuple(paths), labels=encode_labels(label_names, classes, train_ids, train_dir),
              label_fixes=fixes),
        Table(ids=test_ids, paths=tuple(test_paths)),
        classes,
    )


def _match_sample_ids(comp: Competition, data_dir: Path, test: Table, sample_ids: set[str]) -> Table:
    """Folder layouts name test rows by file stem ('0001'); a sample submission may use the file
    name ('0001.jpg') instead: then test rows take the sample's form."""
    if comp.layout != "folders" or sample_ids == set(test.ids):
        return test
    test_dir = data_dir / comp.files.test
    names = np.array([str(p.relative_to(test_dir)) for p in test.paths], dtype=str)
    return Table(ids=names, paths=test.paths) if sample_ids == set(names) else test


def _photos(folder: Path, labeler: PersonLabeler, where: str) -> list[tuple[str, Path]]:
    """(stem, path) of a person folder's photos in the labeler's order; anything missing,
    repeated or unexpected is an error naming the folder."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (is_visible(path) and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()):
            continue
        if path.stem in found:
            raise ComptkError(f"{where}: person folder {folder} has photo '{path.stem}' twice "
                              f"({found[path.stem].name}, {path.name})")
        found[path.stem] = path
    unexpected = sorted(set(found) - set(labeler.photos))
    if unexpected:
        raise ComptkError(f"{where}: person folder {folder} has an unexpected photo '{found[unexpected[0]].name}' "
                          f"(expected {', '.join(labeler.photos)})")
    missing = [stem for stem in labeler.photos if stem not in found]
    if missing:
        raise ComptkError(f"{where}: person folder {folder} lacks photo '{missing[0]}' "
                          f"({len(found)} of {len(labeler.photos)} photos: {', '.join(labeler.photos)})")
    return [(stem, found[stem]) for stem in labeler.photos]


def read_person_folders(comp: Competition, data_dir: Path) -> tuple[Table, tuple[str, ...]]:
    """One train row per photo; labels from the declared labeler, then [label_fixes]."""
    labeler = LABELERS.get(comp.person_labels)
    if comp.classes is not None and comp.classes != labeler.classes:
        raise ComptkError(f"{comp.source}: 'classes' differs from the classes of labeler '{comp.person_labels}'; "
                          f"leave it out")
    train_path = data_dir / comp.files.train
    people = read_csv(train_path)
    folder_col = comp.columns.group
    require_columns(people, train_path, {"group (person folder)": folder_col,
                                          **{f"'{comp.person_labels}'": c for c in labeler.columns}})
    root = image_dir(data_dir, comp.files.train_images)
    ids, paths, labels, groups, seen = [], [], [], [], {}
    for row, person in enumerate(people.to_dict("records")):
        where = f"{train_path} line {row + 2}"
        name = person[folder_col]
        if name == "":
            raise ComptkError(f"{where}: empty person folder in column '{folder_col}'")
        if name in seen:
            raise ComptkError(f"{where}: person folder '{name}' repeats line {seen[name] + 2}")
        seen[name] = row
        folder = root / name
        if not inside(folder, root) or os.path.normpath(name) in (".", ""):
            raise ComptkError(f"{where}: person folder '{name}' is not a folder inside {root}; name a folder in it")
        if not folder.is_dir():
            raise ComptkError(f"{where}: person folder not found: {folder}")
        for stem, path in _photos(folder, labeler, where):
            try:
                labels.append(labeler.classes[labeler.label(stem, person)])
            except ValueError as exc:
                raise ComptkError(f"{where} (person '{name}'): {exc}") from None
            ids.append(f"{name}/{stem}")
            paths.append(path)
            groups.append(name)
    train_ids = np.array(ids, dtype=str)
    names, fixes = apply_label_fixes(comp, train_ids, labels, train_path, labeler.classes)
    table = Table(ids=train_ids, paths=tuple(paths),
                  labels=encode_labels(names, labeler.classes, train_ids, train_path),
                  groups=np.array(groups, dtype=str), label_fixes=fixes)
    return table, labeler.classes


def _read_person_folders(comp: Competition, data_dir: Path) -> tuple[Table, Table, tuple[str, ...]]:
    train, classes = read_person_folders(comp, data_dir)
    return train, read_csv_test(comp, data_dir), classes


_READERS = {"csv": _read_csv_layout, "folders": _read_folder_layout, "person-folders": _read_person_folders}


def read_data(comp: Competition, data_dir: Path) -> CompetitionData:
    """Read and check the train table (with [label_fixes] applied), the test table and the sample submission."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ComptkError(
            f"data folder not found: {data_dir} (put the contest's data there or pass --data DIR; "
            f"`comptk prepare {comp.name}` builds it if it is one of comptk's local data sets or stand-ins)"
        )
    train, test, classes = _READERS[comp.layout](comp, data_dir)
    sample = None
    if comp.files.sample_submission:
        sample_path = data_dir / comp.files.sample_submission
        sample = read_csv(sample_path)
        require_columns(sample, sample_path, {"id": comp.columns.id})
        sample_format(list(sample.columns), comp.columns.id, classes, sample_path)
        check_ids(sample[comp.columns.id].to_numpy(dtype=str), sample_path)
        test = _match_sample_ids(comp, data_dir, test, set(sample[comp.columns.id]))
        missing = set(sample[comp.columns.id]) ^ set(test.ids)
        if missing:
            raise ComptkError(
                f"{sample_path}: ids differ from the test table's "
                f"(e.g. '{sorted(missing)[0]}'; {len(missing)} ids in one but not the other)"
            )
    _check_test_is_not_train(train, test, comp)
    return CompetitionData(comp, data_dir, classes, train, test, sample)


def _check_test_is_not_train(train: Table, test: Table, comp: Competition) -> None:
    """A test row whose image file is a train row's: predicting it would score a model on an image it trained
    on, and the submission would be junk (e.g. test images looked up in the train folder because test ids repeat
    train ids)."""
    train_files = {os.path.normpath(os.path.abspath(p)): i for i, p in enumerate(train.paths)}
    for i, path in enumerate(test.paths):
        j = train_files.get(os.path.normpath(os.path.abspath(path)))
        if j is not None:
            raise ComptkError(f"{comp.source or comp.name}: test row '{test.ids[i]}' and train row "
                              f"'{train.ids[j]}' are the same image file {path}; declare the folder of the test "
                              f"images ([files] test_images or test)")
