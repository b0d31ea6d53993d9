"""Local data sources ``comptk prepare`` builds competitions from: ``fashion`` (Debian's
dataset-fashion-mnist package), ``fashion-lt`` (a harder long-tailed variant with
test-time crops, built from it) and ``digits`` (scikit-learn's 8x8 digits). Each source
returns (x_train, y_train, x_test, y_test, classes) as uint8 image arrays and int labels.

"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

from ..errors import ComptkError
from ..registry import Registry

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
def read_fashion(seed: int = 0):
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
    x_train, y_train, x_test, y_test, classes = read_fashion()
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
