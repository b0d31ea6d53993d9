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
    with pytest.raises(ComptkError, match="--folds 1: the folds must be at least 2"):
        make_folds(np.array([0, 1] * 5), 1, seed=0)


# --- reading a folds file: data.folds.read_folds, used by train, ensemble and inspect ---------------------------

def _table(n: int = 12):
    from comptk.data.tables import Table

    return Table(ids=np.array([f"r{i}" for i in range(n)]), paths=(), labels=np.arange(n) % 3)


def _write(path, text: str):
    path.write_text(text)
    return path


def _rows(ids, folds) -> str:
    return "id,fold\n" + "".join(f"{i},{f}\n" for i, f in zip(ids, folds))


def test_a_good_folds_file_reads_back_in_train_order(tmp_path):
    from comptk.data.folds import read_folds

    train = _table()
    fold = np.arange(12) % 3
    order = np.arange(12)[::-1]  # any row order: rows are matched by id
    path = _write(tmp_path / "f.csv", _rows(train.ids[order], fold[order]))
    assert read_folds(path, train, 3).tolist() == fold.tolist()
    assert read_folds(path, train).tolist() == fold.tolist()  # K from the file


@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows.replace("r5,2\n", "r5,7\n"), r"id 'r5' has fold 7, but folds are 0\.\.2"),
    (lambda rows: rows.replace("r5,2\n", "r5,-1\n"), r"line 7: fold '-1' is not a fold number"),
    (lambda rows: rows.replace("r5,2\n", "r5,\n"), r"line 7: fold '' is not a fold number"),
    (lambda rows: rows.replace("r5,2\n", "r5,1.5\n"), r"line 7: fold '1.5' is not a fold number"),
    (lambda rows: rows.replace(",2\n", ",1\n"), r"fold 2 of 0\.\.2 has no rows"),
    (lambda rows: rows.replace("r5,", "r4,"), r"id 'r4' is listed twice"),
    (lambda rows: rows.replace("r5,", "x5,"), r"train id 'r5' is missing"),
    (lambda rows: rows + "x99,0\n", r"13 rows for 12 train rows; id 'x99' is not a train id"),
    (lambda rows: rows[: rows.index("r7,")], r"7 rows for 12 train rows; train id 'r7' is missing"),  # truncated
    (lambda rows: rows[: rows.index("r7,") + 2], r"line 9: fold '' is not a fold number"),  # cut in a line
    (lambda rows: rows.replace("id,fold", "id,split"), "has the columns id,fold, this one id,split"),
    (lambda rows: "", "not a readable folds file"),
])
def test_a_damaged_folds_file_is_one_line_naming_the_file_and_the_fix(tmp_path, edit, message):
    from comptk.data.folds import read_folds

    train = _table()
    path = _write(tmp_path / "f.csv", edit(_rows(train.ids, np.arange(12) % 3)))
    with pytest.raises(ComptkError, match=message) as caught:
        read_folds(path, train, 3)
    text = str(caught.value)
    assert "\n" not in text and str(path) in text and "delete it to make folds anew" in text


def test_the_folds_file_is_keyed_by_the_labels_too():
    from dataclasses import replace

    from comptk.data.folds import folds_key

    train = _table()
    relabelled = replace(train, labels=np.where(np.arange(12) == 4, 2, train.labels))
    assert folds_key(train) != folds_key(relabelled)
    assert folds_key(train) == folds_key(_table())
