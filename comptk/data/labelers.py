"""Labelers of the ``person-folders`` layout (read in layouts.py): the train CSV has one row per
person, and each person has a folder of photos (the mask contest: train/train.csv ``id,gender,race,age,path`` and
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

from ..registry import Registry


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
