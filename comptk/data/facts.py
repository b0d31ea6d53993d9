"""Cheap facts about a competition's images, from file headers: how many, how big, which modes,
the classes and their counts. ``comptk init`` explains them and the fitted recipe
(``train/recipe.py``, settings ``"auto"``) is chosen from them.

Only the headers of a seeded sample of at most ``max_images`` images per split are opened (PIL
reads the size and mode without decoding the pixels), so measuring a 60,000-image set costs
about as much as listing it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..competition import Competition
from .layouts import read_data
from .tables import CompetitionData

MAX_IMAGES = 500  # headers opened per split
CROP_MAX_RATIO = 0.9  # test images at most this fraction of the train side (median) ...
CROP_MIN_SHARE = 0.8  # ... and this share of them smaller than the train median: test-time crops


@dataclass(frozen=True)
class SplitImages:
    """Sizes and modes of one split's images, from a sample of their headers."""

    n_images: int
    n_sampled: int
    median_width: int
    median_height: int
    median_side: float  # median over images of sqrt(width * height): the side of a square of the same pixels
    sides: tuple[float, ...]  # each sampled image's sqrt(width * height)
    modes: tuple[tuple[str, int], ...]  # PIL mode -> sampled images, most common first
    unreadable: tuple[str, ...] = ()  # sampled paths whose header PIL could not read

    def describe(self) -> str:
        modes = ", ".join(f"{mode} {n}" for mode, n in self.modes) or "none readable"
        sampled = "all" if self.n_sampled == self.n_images else f"{self.n_sampled} sampled"
        bad = (f"; {len(self.unreadable)} unreadable, e.g. {self.unreadable[0]} (training stops on them; "
               f"`comptk inspect` lists all)" if self.unreadable else "")
        return (f"{self.n_images} images, median {self.median_width}x{self.median_height} px, "
                f"modes {modes} ({sampled}){bad}")


@dataclass(frozen=True)
class DataFacts:
    n_train: int
    n_test: int
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]  # train rows per class, in class order
    train: SplitImages
    test: SplitImages

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def imbalance(self) -> float:
        """Largest class / smallest class (inf when a class has no rows)."""
        smallest = min(self.class_counts)
        return float("inf") if smallest == 0 else max(self.class_counts) / smallest

    @property
    def test_scale(self) -> float:
        """Median test side / median train side."""
        return self.test.median_side / self.train.median_side if self.train.median_side else 1.0

    @property
    def test_crop(self) -> float | None:
        """The fraction of each side the test images show, when they are systematically smaller
        than the train images (median ratio <= 0.9 and >= 80 % of them below the train median);
        else None. Size alone cannot tell a crop from a downscaled picture: say so where it is used."""
        if not self.test.sides or not self.train.median_side:
            return None
        smaller = np.mean(np.array(self.test.sides) < self.train.median_side)
        if self.test_scale <= CROP_MAX_RATIO and smaller >= CROP_MIN_SHARE:
            return round(self.test_scale, 2)
        return None


def empty_classes_note(classes: Sequence[str], counts: Sequence[int]) -> str | None:
    """What inspect, train and init say of declared classes with no training image (None: there are none)."""
    empty = [c for c, n in zip(classes, counts) if n == 0]
    return f"{len(empty)} declared class(es) with no training image, e.g. '{empty[0]}'" if empty else None


def train_counts(data: CompetitionData) -> tuple[int, ...]:
    """Train rows per class, in class order."""
    return tuple(int(c) for c in np.bincount(data.train.labels, minlength=data.n_classes))


def sample_paths(paths: tuple[Path, ...] | list[Path], max_images: int = MAX_IMAGES, seed: int = 0) -> list[Path]:
    """A seeded sample (in row order) of at most max_images paths: the same files every time."""
    if len(paths) <= max_images:
        return list(paths)
    rows = np.sort(np.random.default_rng(seed).choice(len(paths), max_images, replace=False))
    return [paths[i] for i in rows]


def split_images(paths: tuple[Path, ...] | list[Path], max_images: int = MAX_IMAGES, seed: int = 0) -> SplitImages:
    """Sizes and modes from the headers of a seeded sample of the images (no pixels decoded)."""
    sizes, modes, unreadable = [], Counter(), []
    for path in sample_paths(paths, max_images, seed):
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
                modes[img.mode] += 1
        except (UnidentifiedImageError, OSError, ValueError):
            unreadable.append(str(path))
    widths = np.array([w for w, _ in sizes], dtype=float)
    heights = np.array([h for _, h in sizes], dtype=float)
    sides = np.sqrt(widths * heights)
    return SplitImages(
        n_images=len(paths),
        n_sampled=len(sample_paths(paths, max_images, seed)),
        median_width=int(np.median(widths)) if sizes else 0,
        median_height=int(np.median(heights)) if sizes else 0,
        median_side=float(np.median(sides)) if sizes else 0.0,
        sides=tuple(float(s) for s in sides),
        modes=tuple(modes.most_common()),
        unreadable=tuple(unreadable),
    )


def data_facts(data: CompetitionData, max_images: int = MAX_IMAGES, seed: int = 0) -> DataFacts:
    """Facts of a competition's data already read (train/test tables, classes)."""
    return DataFacts(
        n_train=len(data.train.ids),
        n_test=len(data.test.ids),
        classes=data.classes,
        class_counts=train_counts(data),
        train=split_images(data.train.paths, max_images, seed),
        test=split_images(data.test.paths, max_images, seed),
    )


_FACTS_CACHE: dict[tuple, DataFacts] = {}


def competition_facts(comp: Competition, data_dir: str | Path, max_images: int = MAX_IMAGES) -> DataFacts:
    """Read the competition's data (read_data: every check) and measure it. Repeated calls on unchanged
    files (same declaration, same modification times of the data folder and its CSVs) reuse the result,
    so a sweep resolving many settings measures once."""
    data_dir = Path(data_dir)
    stamp = tuple(_mtime(p) for p in (data_dir, data_dir / comp.files.train, data_dir / comp.files.test))
    key = (str(comp.source), comp.name, comp.layout, comp.files, comp.columns, comp.classes,
           tuple(comp.label_fixes.items()), str(data_dir.resolve()), stamp, max_images)
    if key not in _FACTS_CACHE:
        if len(_FACTS_CACHE) >= 8:
            _FACTS_CACHE.pop(next(iter(_FACTS_CACHE)))
        _FACTS_CACHE[key] = data_facts(read_data(comp, data_dir), max_images)
    return _FACTS_CACHE[key]


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
