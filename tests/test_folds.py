import numpy as np
import pytest

from comptk import ComptkError
from comptk.data.folds import make_folds


def test_stratified_folds_are_balanced_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    fold = make_folds(labels, 5, seed=1)
    assert set(fold) == set(range(5))
    for c in range(4):
        counts = np.bincount(fold[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(fold, make_folds(labels, 5, seed=1))
    assert not np.array_equal(fold, make_folds(labels, 5, seed=2))


def test_groups_never_straddle_folds():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 7)  # 7 photos per person
    labels = np.repeat(rng.integers(0, 3, 40), 7)
    fold = make_folds(labels, 5, seed=0, groups=groups.astype(str))
    for g in range(40):
        assert len(set(fold[groups == g])) == 1


def test_too_few_images_for_the_folds_names_the_class():
    labels = np.array([0] * 10 + [1] * 3)
    with pytest.raises(ComptkError, match="class 'rare' has 3 training images, fewer than --folds 5"):
        make_folds(labels, 5, seed=0, classes=("common", "rare"))


def test_one_fold_is_an_error():
    with pytest.raises(ComptkError, match="--folds must be at least 2"):
        make_folds(np.array([0, 1] * 5), 1, seed=0)
