"""Tiny competitions the tests build themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comptk.datasets import prepare

TOML = """\
name = "tiny"
metric = "{metric}"
layout = "csv"
data_dir = "data"

[files]
train = "train.csv"
test = "test.csv"
sample_submission = "sample_submission.csv"

[columns]
id = "id"
image = "img_path"
label = "label"
{group}
[train]
model = "small_resnet"
img_size = 12
epochs = 1
batch_size = 8
augment = "none"
tta = "none"
"""


def make_tiny(root: Path, *, n_per_class: int = 6, classes=("cat", "dog", "fox"), metric: str = "accuracy",
              groups: bool = False) -> Path:
    """A CSV-layout competition in root/: coloured 12x12 PNGs whose colour gives the class."""
    data = root / "data"
    (data / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for c, name in enumerate(classes):
        for i in range(n_per_class):
            pixels = np.full((12, 12, 3), 40, np.uint8)
            pixels[..., c % 3] = 200
            pixels = np.clip(pixels + rng.integers(0, 30, pixels.shape), 0, 255).astype(np.uint8)
            path = f"img/{name}_{i}.png"
            Image.fromarray(pixels).save(data / path)
            rows.append({"id": f"{name}_{i}", "img_path": path, "label": name, "person": f"p{i // 2}_{c}"})
    train = pd.DataFrame(rows)
    if not groups:
        train = train.drop(columns="person")
    train.to_csv(data / "train.csv", index=False)
    test = train[["id", "img_path"]].iloc[::2].copy()
    test["id"] = "t_" + test["id"]
    for i, path in zip(test.index, list(test["img_path"])):  # copies: a test image is never a train row's file
        test.loc[i, "img_path"] = path.replace("img/", "img/t_")
        shutil.copyfile(data / path, data / test.loc[i, "img_path"])
    test.to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "label": classes[0]}).to_csv(data / "sample_submission.csv", index=False)
    group = 'group = "person"\n' if groups else ""
    (root / "competition.toml").write_text(TOML.format(metric=metric, group=group))
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tiny(tmp_path / "tiny")


@pytest.fixture(scope="session")
def digits_workdir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("digits")
    prepare("digits", workdir)
    return workdir


def assert_real_png(path, min_side=200):
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_side
        pixels = np.asarray(image.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # not one flat colour


def assert_cv_is_pooled_oof(result, labels) -> None:
    """The run's CV is the metric of its pooled OOF rows (the one to select on), and the mean of
    folds is the mean of the per-fold scores: recomputed here from the saved arrays and folds."""
    from comptk.metrics import get_metric

    side = result.sidecar
    metric = get_metric(side["metric"])
    oof = np.load(result.paths.oof)
    fold = pd.read_csv(side["folds_file"], dtype={"id": str})["fold"].to_numpy()
    rows = np.isin(fold, side["folds_trained"])
    labels = np.asarray(labels)
    assert np.isclose(side["cv"]["oof"], metric.score_proba(labels[rows], oof[rows]))
    per_fold = [metric.score_proba(labels[fold == k], oof[fold == k]) for k in side["folds_trained"]]
    assert np.allclose(side["cv"]["per_fold"], per_fold)
    assert np.isclose(side["cv"]["mean_of_folds"], np.mean(per_fold))
