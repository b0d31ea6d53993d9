"""The ``person-folders`` layout: the train CSV has one row per person, and each person has a
folder of photos (the mask contest: train/train.csv ``id,gender,race,age,path`` and
train/images/<path>/{mask1..mask5,incorrect_mask,normal}.<jpg|png|jpeg>).

Each photo becomes one train row: id ``<folder>/<photo stem>``, group ``<folder>`` (so the
photos of one person never straddle folds), class from a *labeler* — a registry entry that
knows which photos a folder holds and how a photo's name and its person's columns give the
class. Declared with ``layout = "person-folders"``, ``[columns] group`` (the folder column)
and ``[person_folders] labels = "NAME"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .competition import Competition
from .data import IMAGE_EXTENSIONS, Table, _encode_labels, _fixed_labels, _image_dir, _is_visible, _require_columns
from .data import read_csv
from .errors import ComptkError
from .registry import Registry


@dataclass(frozen=True)
class PersonLabeler:
    classes: tuple[str, ...]  # class names, in probability-column order
    columns: tuple[str, ...]  # the person columns it reads
    photos: tuple[str, ...]  # file stems every person folder holds (any image extension)
    label: Callable[[str, Mapping[str, str]], int]  # (photo stem, person row) -> class index; ValueError: bad value
    description: str = ""


LABELERS: Registry[PersonLabeler] = Registry("person labeler")

MASK_PHOTOS = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
GENDERS = ("male", "female")


def age_band(age: int) -> int:
    """Under 30 -> 0, 30 to 59 -> 1, 60 and over -> 2."""
    return 0 if age < 30 else 1 if age < 60 else 2


def mask_class(mask: int, gender: int, age: int) -> int:
    """mask (wear 0, incorrect 1, not worn 2) x gender (male 0, female 1) x age band."""
    return mask * 6 + gender * 3 + age_band(age)


def _mask_label(stem: str, person: Mapping[str, str]) -> int:
    mask = 0 if stem.startswith("mask") else 1 if stem == "incorrect_mask" else 2
    gender = person["gender"].strip().lower()
    if gender not in GENDERS:
        raise ValueError(f"gender '{person['gender']}' is not one of {', '.join(GENDERS)}")
    try:
        age = int(person["age"])
    except ValueError:
        raise ValueError(f"age '{person['age']}' is not a whole number") from None
    if age < 0:
        raise ValueError(f"age {age} is negative")
    return mask_class(mask, GENDERS.index(gender), age)


LABELERS.add("mask-gender-age", PersonLabeler(
    classes=tuple(str(i) for i in range(18)), columns=("gender", "age"), photos=MASK_PHOTOS, label=_mask_label,
    description="18 classes = mask (mask1-5: wear 0, incorrect_mask 1, normal 2) * 6 + gender (male 0, "
                "female 1) * 3 + age band (<30 0, 30-59 1, >=60 2)",
))


def _photos(folder: Path, labeler: PersonLabeler, where: str) -> list[tuple[str, Path]]:
    """(stem, path) of a person folder's photos in the labeler's order; anything missing,
    repeated or unexpected is an error naming the folder."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not (_is_visible(path) and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()):
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
    _require_columns(people, train_path, {"group (person folder)": folder_col,
                                          **{f"'{comp.person_labels}'": c for c in labeler.columns}})
    root = _image_dir(data_dir, comp.files.train_images)
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
    names, fixes = _fixed_labels(comp, train_ids, labels, train_path, labeler.classes)
    table = Table(ids=train_ids, paths=tuple(paths),
                  labels=_encode_labels(names, labeler.classes, train_ids, train_path),
                  groups=np.array(groups, dtype=str), label_fixes=fixes)
    return table, labeler.classes
