"""Bad input: one line naming the problem, exit code 2, no traceback, nothing written."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from comptk.cli import main


def run_train(root, *extra):
    args = ["train", str(root), "--workdir", str(root), "--quiet", *extra]
    return CliRunner().invoke(main, args)


def _set(root, file, fn):
    path = root / "data" / file
    fn(pd.read_csv(path, dtype=str)).to_csv(path, index=False)


def _toml(root, old, new):
    path = root / "competition.toml"
    path.write_text(path.read_text().replace(old, new))


CASES = {
    "missing key": (lambda r: _toml(r, 'layout = "csv"', ""), [], "missing required key 'layout'"),
    "unknown key": (lambda r: _toml(r, "[files]", "colour = 1\n[files]"), [], "unknown key 'colour'"),
    "missing column": (lambda r: _set(r, "test.csv", lambda f: f.drop(columns="img_path")), [],
                       "test.csv: no column 'img_path'"),
    "missing image": (lambda r: _set(r, "test.csv", lambda f: f.assign(img_path="img/gone.png")), [],
                      "test.csv line 2 (id 't_cat_0'): image file not found"),
    "corrupt image": (lambda r: (r / "data/img/dog_1.png").write_bytes(b"\x89PNG broken"), [],
                      "cannot read image"),
    "label outside classes": (lambda r: _toml(r, "[files]", 'classes = ["cat", "dog"]\n[files]'), [],
                              "label 'fox' is not in the class list"),
    "empty test csv": (lambda r: (r / "data/test.csv").write_text("id,img_path\n"), [], "test.csv: has no rows"),
    "one fold": (lambda r: None, ["--folds", "1"], "setting 'n_folds' must be at least 2"),
    "too many folds": (lambda r: None, ["--folds", "7"], "class 'cat' has 6 training images, fewer than --folds 7"),
    "unknown model": (lambda r: None, ["--model", "resnet181"], "unknown model 'resnet181'"),
    "unknown augment": (lambda r: None, ["--augment", "basik"], "unknown augment preset 'basik' (did you mean 'basic'?)"),
    "unknown tta": (lambda r: None, ["--tta", "five"], "unknown TTA preset 'five'"),
    "missing weights": (lambda r: None, ["--weights", "nope.pth"], "weights file not found"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(tiny, case):
    breaker, extra, message = CASES[case]
    breaker(tiny)
    result = run_train(tiny, *extra)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert not (tiny / "oof").exists() and not (tiny / "runs").exists()
    if case not in ("one fold", "too many folds", "corrupt image"):  # folds come before decoding
        assert not (tiny / "folds").exists()


def test_unknown_competition(tmp_path):
    result = CliRunner().invoke(main, ["train", "fashon", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown competition 'fashon' (did you mean 'fashion'?)" in result.output


def test_data_folder_missing_says_how_to_build_it(tmp_path):
    result = CliRunner().invoke(main, ["train", "fashion", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "comptk prepare fashion" in result.output


def test_pretrained_without_network_or_cache(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import time otherwise
    result = run_train(tiny, "--model", "resnet18", "--pretrained")
    assert result.exit_code == 2
    assert "cannot load pretrained weights for 'resnet18'" in result.output and "--weights" in result.output


def test_groups_are_kept_together_end_to_end(tmp_path):
    from tests.conftest import make_tiny

    root = make_tiny(tmp_path / "g", n_per_class=8, groups=True)
    result = run_train(root, "--folds", "2", "--name", "g1")
    assert result.exit_code == 0, result.output
    folds = pd.read_csv(next((root / "folds").glob("*.csv")), dtype=str)
    train = pd.read_csv(root / "data/train.csv", dtype=str)
    assert (folds.groupby(train["person"])["fold"].nunique() == 1).all()


def test_score_rejects_missing_ids(tmp_path):
    (tmp_path / "sub.csv").write_text("id,label\na,x\n")
    (tmp_path / "ans.csv").write_text("id,label\na,x\nb,y\n")
    result = CliRunner().invoke(main, ["score", str(tmp_path / "sub.csv"), "--answers", str(tmp_path / "ans.csv"),
                                       "--metric", "accuracy"])
    assert result.exit_code == 2 and "no prediction for id 'b'" in result.output
