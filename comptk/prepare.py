"""Build local competitions from data on this machine: ``fashion`` (Debian's
dataset-fashion-mnist package), ``fashion-lt`` (a harder long-tailed variant with
test-time crops, built from it) and ``digits`` (scikit-learn's 8x8 digits); and the
five reference contests' stand-ins (comptk.standins), each in its contest's own layout.

Each writes the Dacon/Kaggle CSV layout under WORKDIR/data/NAME: train.csv
(id,img_path,label), test.csv (id,img_path), sample_submission.csv, PNG images,
and answers.csv with the held-out test labels (the local "leaderboard").
The folder is built beside its target and renamed into place when complete.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import train_test_split

from .errors import ComptkError, did_you_mean
from .registry import Registry
from .runs import atomic_folder

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

Source = Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]]
SOURCES: Registry[Source] = Registry("preparable competition")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


@SOURCES.register("fashion")
def _fashion(seed: int = 0):
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    missing = [f for f in files if not (FASHION_DIR / f).is_file()]
    if missing:
        raise ComptkError(
            f"Fashion-MNIST not found at {FASHION_DIR / missing[0]}; install it with "
            f"`apt-get install dataset-fashion-mnist`"
        )
    x_train, y_train, x_test, y_test = (_read_idx(FASHION_DIR / f) for f in files)
    return x_train, y_train, x_test, y_test, FASHION_CLASSES


LT_LARGEST, LT_RATIO = 1000, 20  # fashion-lt: classes of 1000 down to 50 training images
LT_SIZE, LT_CROP = 56, 0.6  # images upscaled to 56 px; test images are crops of 0.6 of each side


def long_tail_counts(n_classes: int, largest: int = LT_LARGEST, ratio: float = LT_RATIO) -> np.ndarray:
    """Exponential profile from ``largest`` down to ``largest / ratio`` images per class."""
    return np.round(largest * ratio ** (-np.arange(n_classes) / (n_classes - 1))).astype(int)


def _upscale(images: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))
                     for img in images])


@SOURCES.register("fashion-lt")
def _fashion_lt(seed: int = 0):
    """Fashion-MNIST made harder: a long-tailed training set (class sizes 1000 .. 50 in a seeded
    class order, largest/smallest = 20), upscaled to 56 px; the test images are random crops of
    0.6 of each side (34 px) of the upscaled test images, at seeded positions."""
    x_train, y_train, x_test, y_test, classes = _fashion()
    rng = np.random.default_rng(seed)
    counts = long_tail_counts(len(classes))[np.argsort(rng.permutation(len(classes)))]
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y_train == c))[:counts[c]]
                                   for c in range(len(classes))]))
    crop = round(LT_CROP * LT_SIZE)
    tops, lefts = rng.integers(0, LT_SIZE - crop + 1, (2, len(x_test)))
    big_test = _upscale(x_test, LT_SIZE)
    crops = np.stack([img[t:t + crop, left:left + crop] for img, t, left in zip(big_test, tops, lefts)])
    return _upscale(x_train[keep], LT_SIZE), y_train[keep], crops, y_test, classes


@SOURCES.register("digits")
def _digits(seed: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=seed
    )
    return x_train, y_train, x_test, y_test, tuple(str(i) for i in range(10))


def _write_split(folder: Path, prefix: str, images: np.ndarray) -> list[str]:
    (folder / prefix).mkdir(parents=True)
    rel = []
    for i, image in enumerate(images):
        path = f"{prefix}/{prefix.upper()}_{i:05d}.png"
        Image.fromarray(image).save(folder / path)
        rel.append(path)
    return rel


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, n_classes: int, seed: int, flag: str):
    if n is None or n == len(x):
        return x, y
    if not n_classes <= n <= len(x):
        raise ComptkError(f"{flag} must be between {n_classes} and {len(x)}, got {n}")
    keep, _ = train_test_split(np.arange(len(x)), train_size=n, stratify=y, random_state=seed)
    keep = np.sort(keep)
    return x[keep], y[keep]


def preparable() -> list[str]:
    """Names ``prepare`` can build: local data sets and the contest stand-ins (comptk.standins)."""
    from .standins import STANDINS

    return sorted([*SOURCES.names(), *STANDINS.names()])


PREPARED_MARKS = ("answers.csv", "STANDIN.md")  # files every prepared data folder has (one of them)


def check_target(target: Path, force: bool) -> Path:
    """The folder ``prepare`` may build (and, with ``force``, replace): never the current folder or one
    of its parents, and ``force`` replaces only an empty folder or one that ``prepare`` made."""
    target = Path(target).resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise ComptkError(f"{target} is the current folder or holds it; name a folder of its own for the data")
    if target.exists():
        if not force:
            raise ComptkError(f"{target} already exists; pass --force to build it again")
        if not target.is_dir() or (any(target.iterdir()) and not any((target / m).exists() for m in PREPARED_MARKS)):
            raise ComptkError(f"{target} exists and was not made by `comptk prepare` (it has no "
                              f"{' or '.join(PREPARED_MARKS)}); --force replaces only prepared data: remove it "
                              f"yourself or choose another folder")
    return target


def prepare(name: str, workdir: str | Path = ".", *, train_n: int | None = None, seed: int = 0,
            force: bool = False, test_n: int | None = None, out: str | Path | None = None) -> Path:
    """Build WORKDIR/data/NAME (or ``out``); ``train_n`` / ``test_n`` keep stratified subsets of the
    training / test images (class proportions kept, so fashion-lt stays long-tailed). For a contest
    stand-in (artist, kfood, mask, cifar10, illustration) they set its approximate size."""
    from .standins import STANDINS, build_standin

    target = Path(out) if out else Path(workdir) / "data" / name
    if name in STANDINS:
        return build_standin(name, target, seed=seed, train_n=train_n, test_n=test_n, force=force)
    if name not in SOURCES:
        raise ComptkError(f"cannot prepare '{name}'{did_you_mean(name, preparable())}; "
                          f"choose one of: {', '.join(preparable())}")
    source = SOURCES.get(name)
    target = check_target(target, force)
    x_train, y_train, x_test, y_test, classes = source(seed)
    x_train, y_train = _subset(x_train, y_train, train_n, len(classes), seed, "--train-n")
    x_test, y_test = _subset(x_test, y_test, test_n, len(classes), seed, "--test-n")
    names = np.array(classes)
    with atomic_folder(target) as building:
        train_ids = [f"TRAIN_{i:05d}" for i in range(len(x_train))]
        test_ids = [f"TEST_{i:05d}" for i in range(len(x_test))]
        train_paths = _write_split(building, "train", x_train)
        test_paths = _write_split(building, "test", x_test)
        pd.DataFrame({"id": train_ids, "img_path": train_paths, "label": names[y_train]}).to_csv(
            building / "train.csv", index=False)
        pd.DataFrame({"id": test_ids, "img_path": test_paths}).to_csv(building / "test.csv", index=False)
        pd.DataFrame({"id": test_ids, "label": names[0]}).to_csv(building / "sample_submission.csv", index=False)
        pd.DataFrame({"id": test_ids, "label": names[y_test]}).to_csv(building / "answers.csv", index=False)
    return target
