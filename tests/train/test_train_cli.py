"""End to end through the CLI on the digits competition (2 folds, 4 epochs, small model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tests.conftest import assert_cv_is_pooled_oof, make_tiny
from safetensors.torch import save_file

from comptk import run_cv
from comptk.artifacts import RunPaths
from comptk.cli import main
from comptk.metrics import get_metric

FAST = ["--folds", "2", "--epochs", "4", "--img-size", "16", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def finished(digits_workdir):
    result = invoke("train", "digits", "--workdir", digits_workdir, "--name", "e2e", *FAST)
    assert result.exit_code == 0, result.output
    return digits_workdir, RunPaths(digits_workdir, "e2e"), result.output


def test_artifacts_have_the_documented_shapes(finished):
    workdir, paths, _ = finished
    oof, preds = np.load(paths.oof), np.load(paths.preds)
    train = pd.read_csv(workdir / "data/digits/train.csv", dtype=str)
    test = pd.read_csv(workdir / "data/digits/test.csv", dtype=str)
    assert oof.shape == (len(train), 10) and preds.shape == (len(test), 10)
    assert oof.dtype == np.float32 and np.allclose(oof.sum(1), 1, atol=1e-4)
    assert np.allclose(preds.sum(1), 1, atol=1e-4)
    for k in range(2):
        assert paths.checkpoint(k).is_file() and paths.fold_metrics(k).is_file()
    assert len(pd.read_csv(paths.metrics)) == 8  # 2 folds x 4 epochs
    assert "fold 2/2 epoch 4/4: loss " in paths.log.read_text()  # the engine's epoch line reaches the run log


def test_sidecar_cv_equals_metric_recomputed_from_saved_oof(finished):
    workdir, paths, output = finished
    meta = json.loads(paths.sidecar.read_text())
    train = pd.read_csv(workdir / "data/digits/train.csv", dtype=str)
    y = np.array([meta["classes"].index(v) for v in train["label"]])
    oof = np.load(paths.oof)
    metric = get_metric(meta["metric"])
    assert meta["metric"] == "macro_f1"
    assert np.isclose(meta["cv"]["oof"], metric.score_proba(y, oof))
    for key in ("folds_file", "data_dir", "competition_file"):  # usable from any directory
        assert Path(meta[key]).is_absolute() and Path(meta[key]).exists()
    folds = pd.read_csv(meta["folds_file"], dtype={"id": str})
    assert folds["id"].tolist() == train["id"].tolist()
    per_fold = [metric.score_proba(y[folds.fold == k], oof[folds.fold == k]) for k in range(2)]
    assert np.allclose(meta["cv"]["per_fold"], per_fold)
    assert np.isclose(meta["cv"]["mean_of_folds"], np.mean(per_fold))
    assert meta["cv"]["oof"] > 0.5  # four epochs on digits learn something
    assert meta["config"]["epochs"] == 4 and meta["config"]["n_folds"] == 2 and meta["seed"] == 42
    assert {"torch", "timm", "albumentations", "ttach"} <= set(meta["versions"])
    assert meta["timings"]["train_images_per_s"] > 0
    assert f"{meta['cv']['oof']:.4f}" in output


def test_submission_has_the_sample_format_and_scores(finished):
    workdir, paths, _ = finished
    sample = pd.read_csv(workdir / "data/digits/sample_submission.csv", dtype=str)
    sub = pd.read_csv(paths.submission, dtype=str)
    assert list(sub.columns) == list(sample.columns) and sub["id"].tolist() == sample["id"].tolist()
    assert set(sub["label"]) <= {str(i) for i in range(10)}
    answers = workdir / "data/digits/answers.csv"
    result = invoke("score", paths.submission, "--answers", answers)
    assert result.exit_code == 0, result.output
    truth = pd.read_csv(answers, dtype=str)
    expected = get_metric("macro_f1")(truth["label"].astype(int).to_numpy(), sub["label"].astype(int).to_numpy(), 10)
    assert result.output.strip() == f"macro_f1 {expected:.4f}"


def test_resume_skips_finished_folds_and_gives_the_same_artifacts(finished, tmp_path):
    workdir, paths, _ = finished
    work = tmp_path / "w"
    shutil.copytree(workdir, work)
    copy = RunPaths(work, "e2e")
    before_oof, before_preds = np.load(copy.oof), np.load(copy.preds)
    fold0_mtime = copy.checkpoint(0).stat().st_mtime_ns
    # Simulate a run killed during fold 2: final artifacts and fold 1's files are gone.
    for path in (copy.oof, copy.preds, copy.sidecar, copy.submission):
        path.unlink()
    shutil.rmtree(copy.fold_dir(1))
    result = invoke("train", "digits", "--workdir", work, "--name", "e2e", *FAST)
    assert result.exit_code == 0, result.output
    assert "fold 1/2: finished earlier, kept" in result.output
    assert copy.checkpoint(0).stat().st_mtime_ns == fold0_mtime
    assert np.allclose(np.load(copy.oof), before_oof, atol=1e-5)
    assert np.allclose(np.load(copy.preds), before_preds, atol=1e-5)


def test_finished_run_is_never_overwritten(finished):
    workdir, paths, _ = finished
    stamp = paths.oof.stat().st_mtime_ns
    result = invoke("train", "digits", "--workdir", workdir, "--name", "e2e", *FAST)
    assert result.exit_code == 2 and "already finished" in result.output
    assert paths.oof.stat().st_mtime_ns == stamp


def test_same_name_with_other_settings_is_refused(finished, tmp_path):
    workdir, _, _ = finished
    work = tmp_path / "w"
    shutil.copytree(workdir, work)
    copy = RunPaths(work, "e2e")
    copy.sidecar.unlink()
    result = invoke("train", "digits", "--workdir", work, "--name", "e2e", *FAST[:-1], "--lr", "0.01", "--quiet")
    assert result.exit_code == 2
    assert "other settings: lr (0.003 -> 0.01)" in result.output


def test_a_declared_class_with_no_training_image_is_said_as_inspect_says_it(tmp_path):
    tiny = make_tiny(tmp_path / "tiny")
    toml = tiny / "competition.toml"
    toml.write_text(toml.read_text().replace('data_dir = "data"', 'data_dir = "data"\nclasses = ["cat", "dog", "fox", '
                                                                  '"star"]'))
    result = invoke("train", tiny, "--workdir", tiny, "--folds", "2", "--quiet", "--no-plots")
    assert result.exit_code == 0, result.output
    assert "tiny: 1 declared class(es) with no training image, e.g. 'star'" in result.output


def test_library_api_any_timm_model_and_a_local_weights_file(digits_workdir, tmp_path):
    weights = tmp_path / "w.safetensors"
    net = __import__("timm").create_model("test_resnet", num_classes=1000)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    settings = {"n_folds": 2, "epochs": 1, "img_size": 32, "batch_size": 128, "model": "test_resnet",
                "weights": str(weights), "tta": "hflip"}
    result = run_cv("digits", settings, workdir=digits_workdir, name="lib", progress=False)
    labels = pd.read_csv(digits_workdir / "data/digits/train.csv", dtype=str)["label"].astype(int)
    assert_cv_is_pooled_oof(result, labels)
    assert result.sidecar["config"]["weights"] == str(weights)
