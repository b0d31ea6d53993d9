"""Stand-in for the illustration contest (``illustration``): 20 classes of flat-coloured drawings
in the CSV layout (train.csv ``id,img_path,label``, test.csv ``id,img_path``), with heavy class
imbalance, real photos mixed in under random labels (Fashion-MNIST photos when the Debian package
is installed, else noisy grayscale digit photos), PNGs with transparency or a palette, and
duplicates: copies of training images among the test images and within the training set.
``standin_truth.csv`` lists the planted photos and duplicates (for ``comptk inspect``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from . import draw
from .base import STANDINS, StandIn

SHAPES = ("circle", "square", "triangle", "cross", "ring")
PALETTES = ("warm", "cool", "earth", "neon")
CLASSES = tuple(f"{shape}-{palette}" for shape in SHAPES for palette in PALETTES)
PALETTE_HUES = {"warm": 0.02, "cool": 0.6, "earth": 0.1, "neon": 0.85}
TRAIN_N, TEST_N = 400, 120
LARGEST, SMALLEST = 100, 4  # the heaviest class has 25x the images of the lightest
PHOTO_SHARE, TEST_DUPLICATE_SHARE, TRAIN_DUPLICATES = 0.08, 0.1, 4
SIZE = 48


def _drawing(rng: np.random.Generator, cls: int) -> np.ndarray:
    shape, palette = SHAPES[cls // len(PALETTES)], PALETTES[cls % len(PALETTES)]
    y, x = (np.mgrid[0:SIZE, 0:SIZE] - SIZE / 2) / (SIZE / 2)
    y, x = y + rng.normal(0, 0.06), x + rng.normal(0, 0.06)
    r = rng.uniform(0.5, 0.8)
    inside = {
        "circle": x**2 + y**2 < r**2,
        "square": (np.abs(x) < r * 0.8) & (np.abs(y) < r * 0.8),
        "triangle": (y < r * 0.7) & (y > 2 * np.abs(x) - r),
        "cross": ((np.abs(x) < r * 0.25) | (np.abs(y) < r * 0.25)) & (np.abs(x) < r) & (np.abs(y) < r),
        "ring": (x**2 + y**2 < r**2) & (x**2 + y**2 > (r * 0.6) ** 2),
    }[shape]
    pixels = np.broadcast_to(draw.hue_rgb(rng.random(), 0.15, 0.97), (SIZE, SIZE, 3)).copy()
    pixels[inside] = draw.hue_rgb(PALETTE_HUES[palette] + rng.normal(0, 0.02), 0.85, 0.9)
    return pixels.astype(np.uint8)


def _photo_source(rng: np.random.Generator):
    """Grayscale 'real photos': Fashion-MNIST when installed, else digits with photo-like noise."""
    from ..sources import FASHION_DIR, read_fashion

    if (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pool = read_fashion()[2]
    else:
        from sklearn.datasets import load_digits

        pool = (load_digits().images * 15).astype(np.uint8)
    while True:
        small = pool[rng.integers(len(pool))]
        big = np.asarray(Image.fromarray(small).resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
        yield np.clip(big + rng.normal(0, 20, big.shape), 0, 255).astype(np.uint8)


def _save(rng: np.random.Generator, pixels: np.ndarray, path: Path) -> None:
    """Drawings as PNGs: some RGBA with a transparent background, some palette images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    kind = rng.random()
    if pixels.ndim == 3 and kind < 0.2:
        alpha = np.where((pixels == pixels[0, 0]).all(-1), 0, 255).astype(np.uint8)
        image = Image.fromarray(np.dstack([pixels, alpha]), "RGBA")
    elif pixels.ndim == 3 and kind < 0.4:
        image = image.quantize(16)
    image.save(path)


def write(folder: Path, rng: np.random.Generator, train_n: int | None, test_n: int | None) -> str:
    counts = draw.long_tail(len(CLASSES), train_n or TRAIN_N, LARGEST, SMALLEST, minimum=3)
    counts = counts[rng.permutation(len(CLASSES))]
    labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), counts))
    photos = _photo_source(rng)
    is_photo = rng.random(len(labels)) < PHOTO_SHARE
    truth, train_rows = [], []
    for i, (label, photo) in enumerate(zip(labels, is_photo)):
        id_, path = f"TRAIN_{i:05d}", f"train/TRAIN_{i:05d}.png"
        _save(rng, next(photos) if photo else _drawing(rng, label), folder / path)
        train_rows.append({"id": id_, "img_path": path, "label": CLASSES[label]})
        truth.append({"id": id_, "split": "train", "kind": "photo" if photo else "drawing", "duplicate_of": ""})
    for j in range(TRAIN_DUPLICATES):  # same picture, same label, another row
        source = train_rows[int(rng.integers(len(train_rows)))]
        id_, path = f"TRAIN_{len(train_rows):05d}", f"train/TRAIN_{len(train_rows):05d}.png"
        shutil.copyfile(folder / source["img_path"], folder / path)
        train_rows.append({"id": id_, "img_path": path, "label": source["label"]})
        truth.append({"id": id_, "split": "train", "kind": truth[int(source["id"][6:])]["kind"],
                      "duplicate_of": source["id"]})
    pd.DataFrame(train_rows).to_csv(folder / "train.csv", index=False)

    n_test = test_n or TEST_N
    test_rows, answers = [], []
    (folder / "test").mkdir()
    for i in range(n_test):
        id_, path = f"TEST_{i:05d}", f"test/TEST_{i:05d}.png"
        kind, duplicate_of = "drawing", ""
        if rng.random() < TEST_DUPLICATE_SHARE:
            source = train_rows[int(rng.integers(len(train_rows)))]
            shutil.copyfile(folder / source["img_path"], folder / path)
            label, duplicate_of = source["label"], source["id"]
            kind = truth[int(source["id"][6:])]["kind"]
        elif rng.random() < PHOTO_SHARE:
            label, kind = CLASSES[int(rng.integers(len(CLASSES)))], "photo"
            _save(rng, next(photos), folder / path)
        else:
            label = CLASSES[int(rng.choice(len(CLASSES), p=counts / counts.sum()))]
            _save(rng, _drawing(rng, CLASSES.index(label)), folder / path)
        test_rows.append({"id": id_, "img_path": path})
        answers.append({"id": id_, "label": label})
        truth.append({"id": id_, "split": "test", "kind": kind, "duplicate_of": duplicate_of})
    pd.DataFrame(test_rows).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": [r["id"] for r in test_rows], "label": CLASSES[0]}).to_csv(
        folder / "sample_submission.csv", index=False)
    pd.DataFrame(answers).to_csv(folder / "answers.csv", index=False)
    truth = pd.DataFrame(truth)
    truth.to_csv(folder / "standin_truth.csv", index=False)
    n_photo = int((truth.kind == "photo").sum())
    n_dup = int((truth.duplicate_of != "").sum())
    return f"""# Stand-in for `illustration` (generated by `comptk prepare illustration`; not the contest data)

- {len(train_rows)} training and {n_test} test images, {SIZE}x{SIZE} PNGs (some with transparency, some palette
  images) of {len(CLASSES)} classes (shape x palette); class sizes {counts.min()} to {counts.max()}.
- Pollution: {n_photo} grayscale "real photos" with random labels among the drawings.
- Duplicates: {n_dup} images are byte copies of a training image ({TRAIN_DUPLICATES} within train, the rest in test).
- standin_truth.csv (`id,split,kind,duplicate_of`) lists them; answers.csv holds the test labels
  (`comptk score`). Files: train.csv `id,img_path,label`, test.csv `id,img_path`, sample_submission.csv `id,label`.
"""


STANDINS.add("illustration", StandIn(write, "20 imbalanced illustration classes polluted with photos and duplicates"))
