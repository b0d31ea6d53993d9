"""The fashion-lt generator: long-tailed training set, 56 px images, test images that are 0.6 crops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comptk.competition import load_competition
from comptk.data.layouts import read_data
from comptk.datasets import prepare
from comptk.datasets.sources import (
    FASHION_DIR,
    LT_RATIO,
    SOURCES,
    _upscale,
    long_tail_counts,
    read_fashion,
)

needs_fashion = pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                   reason="Fashion-MNIST not installed")


def test_long_tail_profile_has_the_declared_ratio():
    counts = long_tail_counts(10)
    assert counts[0] == 1000 and counts[-1] == 50 and counts.max() / counts.min() == LT_RATIO
    assert np.all(np.diff(counts) < 0)


@needs_fashion
def test_fashion_lt_is_long_tailed_upscaled_and_its_test_images_are_crops(tmp_path):
    target = prepare("fashion-lt", tmp_path, train_n=400, test_n=60)
    train = pd.read_csv(target / "train.csv", dtype=str)
    test = pd.read_csv(target / "test.csv", dtype=str)
    answers = pd.read_csv(target / "answers.csv", dtype=str)
    counts = train["label"].value_counts()
    assert len(train) == 400 and len(test) == len(answers) == 60 and len(counts) == 10
    assert 14 <= counts.max() / counts.min() <= 28  # about 20 after the stratified subset
    assert Image.open(target / train["img_path"][0]).size == (56, 56)
    assert {Image.open(target / p).size for p in test["img_path"]} == {(34, 34)}  # 0.6 of 56 px
    comp = load_competition("fashion-lt")
    assert comp.test_crop == 0.6 and comp.metric == "macro_f1"
    data = read_data(comp, target)
    assert data.n_classes == 10 and len(data.test.ids) == 60


@needs_fashion
def test_fashion_lt_test_crops_are_windows_of_the_upscaled_test_images():
    _, _, crops, _, _ = SOURCES.get("fashion-lt")(0)
    originals = _upscale(read_fashion()[2][:5], 56)
    for crop, big in zip(crops[:5], originals):
        windows = np.lib.stride_tricks.sliding_window_view(big, crop.shape)
        assert np.any(np.all(windows == crop, axis=(2, 3)))
