"""``comptk prepare NAME``: build a local competition (a data source or a contest stand-in).

Each writes the Dacon/Kaggle CSV layout under WORKDIR/data/NAME: train.csv
(id,img_path,label), test.csv (id,img_path), sample_submission.csv, PNG images,
and answers.csv with the held-out test labels (the local "leaderboard").
The folder is built beside its target and renamed into place when complete.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import train_test_split

from ..artifacts import atomic_folder
from ..errors import ComptkError, did_you_mean
from .sources import SOURCES
from .standins import STANDINS, build_standin
from .target import check_target


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
    """Names ``prepare`` can build: local data sets and the contest stand-ins (standins/)."""
    return sorted([*SOURCES.names(), *STANDINS.names()])


def prepare(name: str, workdir: str | Path = ".", *, train_n: int | None = None, seed: int = 0,
            force: bool = False, test_n: int | None = None, out: str | Path | None = None) -> Path:
    """Build WORKDIR/data/NAME (or ``out``); ``train_n`` / ``test_n`` keep stratified subsets of the
    training / test images (class proportions kept, so fashion-lt stays long-tailed). For a contest
    stand-in (artist, kfood, mask, cifar10, illustration) they set its approximate size."""
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
