"""Competitions whose test images are crops: training default, validation on crops, sidecar record."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from tests.conftest import make_tiny
from safetensors.torch import load_file

from comptk import ComptkError, run_cv
from comptk.cli import main
from comptk.competition import load_competition
from comptk.config import resolve
from comptk.data.images import load_images
from comptk.data.layouts import read_data
from comptk.train.engine import predict_proba
from comptk.train.models import Classifier, create_model


def _tiny_with_crop(root, crop="0.5", augment_line=True):
    make_tiny(root, n_per_class=8)
    toml = root / "competition.toml"
    text = toml.read_text()
    if not augment_line:
        text = text.replace('augment = "none"\n', "")
    toml.write_text(text + f"\n[test_time]\ncrop = {crop}\n")
    return root


@pytest.fixture(scope="module")
def crop_run(tmp_path_factory):
    root = _tiny_with_crop(tmp_path_factory.mktemp("crop") / "tiny", augment_line=False)
    return root, run_cv(root, {"n_folds": 2, "epochs": 1}, workdir=root, name="crop", progress=False)


def test_test_crop_run_trains_on_crops_and_records_crop_validation(crop_run):
    _, result = crop_run
    meta = json.loads(result.paths.sidecar.read_text())
    assert meta["config"]["augment"] == "crop-to-test"  # the default when test images are crops
    assert meta["config"]["valid_crop"] == "five"
    record = meta["test_time"]
    assert record["test_crop"] == 0.5 and record["valid_crop"] == 0.5 and record["valid_crop_mode"] == "five"
    assert "five crops" in record["valid"] and "already crops" in record["test"]


def test_oof_is_the_mean_of_five_crops_and_test_images_are_predicted_whole(crop_run):
    root, result = crop_run
    comp = load_competition(root)
    data = read_data(comp, comp.data_path(root))
    cfg = resolve(comp.train_defaults(), {"n_folds": 2, "epochs": 1})
    fold = pd.read_csv(result.sidecar["folds_file"], dtype={"id": str})["fold"].to_numpy()
    model = Classifier(create_model(cfg, data.n_classes))
    model.load_state_dict(load_file(str(result.paths.checkpoint(0))))
    images = load_images(data.train.paths, cfg.img_size)[fold == 0]
    cpu = torch.device("cpu")
    saved = np.load(result.paths.fold_oof(0))
    assert np.abs(saved - predict_proba(model, images, device=cpu, crop=0.5)).max() < 1e-6
    assert np.abs(saved - predict_proba(model, images, device=cpu)).max() > 1e-4  # whole images differ
    test = load_images(data.test.paths, cfg.img_size)
    assert np.allclose(np.load(result.paths.fold_test(0)), predict_proba(model, test, device=cpu), atol=1e-5)


def test_an_augment_chosen_in_the_declaration_is_kept_and_whole_validation_is_recorded(tmp_path):
    root = _tiny_with_crop(tmp_path / "tiny")  # [train] says augment = "none"
    result = run_cv(root, {"n_folds": 2, "epochs": 1, "valid_crop": "whole"}, workdir=root, name="whole", progress=False)
    assert result.sidecar["config"]["augment"] == "none"
    assert result.sidecar["test_time"]["valid_crop"] is None and result.sidecar["test_time"]["valid"].startswith("whole")


def test_crop_to_test_without_a_declared_crop_fails_before_anything_is_written(tmp_path):
    root = make_tiny(tmp_path / "tiny")
    result = CliRunner().invoke(main, ["train", str(root), "--workdir", str(root), "--augment", "crop-to-test",
                                       "--quiet"])
    assert result.exit_code == 2 and "needs the competition to declare [test_time] crop" in result.output
    assert not (root / "runs").exists() and not (root / "folds").exists()


def test_tta_merge_and_valid_crop_are_validated():
    with pytest.raises(ComptkError, match="'tta_merge' must be one of mean, gmean"):
        resolve(None, {"tta_merge": "tsharpen"})
    with pytest.raises(ComptkError, match="'valid_crop' must be one of five, center, whole"):
        resolve(None, {"valid_crop": "ten"})


def test_a_model_or_tta_preset_that_cannot_take_the_images_fails_before_anything_is_written(tmp_path):
    root = make_tiny(tmp_path / "tiny")
    with pytest.raises(ComptkError, match="model 'test_vit' cannot take 12 px images"):
        run_cv(root, {"model": "test_vit"}, workdir=root, progress=False)
    with pytest.raises(ComptkError, match="TTA preset 'multi-scale' does not work with model 'test_vit3' at 160 px"):
        run_cv(root, {"model": "test_vit3", "img_size": 160, "tta": "multi-scale"}, workdir=root, progress=False)
    assert not (root / "runs").exists() and not (root / "folds").exists()
