"""The typed run record (artifacts.RunRecord): old sidecars load, new ones round-trip and record the
data digests and torch's thread count; a resume refuses changed labels or images; sweep and train share
one "same run?" check and one pre-flight."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from comptk import ComptkError, artifacts, run_cv
from comptk.cli import main
from comptk.experiments import leaderboard
from comptk.experiments.sweep import sweep

OLD = Path(__file__).parent / "fixtures" / "cfba1c9"  # sidecars as comptk wrote them at commit cfba1c9
FAST = {"n_folds": 2, "epochs": 1}


# --- reading and writing ----------------------------------------------------------------------------------------

def _old_workdir(tmp_path: Path) -> Path:
    """A work directory holding the cfba1c9 run and blend sidecars with arrays of their shapes."""
    for name, sidecar in (("old", "run.json"), ("oldblend", "blend.json")):
        paths = artifacts.RunPaths(tmp_path, name)
        paths.sidecar.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(OLD / sidecar, paths.sidecar)
        artifacts.save_npy(paths.oof, np.full((18, 3), 1 / 3, np.float32))
        artifacts.save_npy(paths.preds, np.full((9, 3), 1 / 3, np.float32))
    return tmp_path


def test_a_run_sidecar_written_by_cfba1c9_loads(tmp_path):
    work = _old_workdir(tmp_path)
    loaded = artifacts.load_run(artifacts.RunPaths(work, "old").oof)
    record = loaded.record
    assert record.version == 1 and record.kind == "run" and not record.is_blend
    assert record.name == "old" and record.competition == "tiny" and record.classes == ("cat", "dog", "fox")
    assert record.trained_folds == [0, 1, 2] and not record.is_partial and record.n_folds == 3
    assert record.cv.oof == pytest.approx(4 / 9) and record.cv.per_fold == pytest.approx((1 / 3, 2 / 3, 1 / 3))
    assert record.config["img_size"] == 12 and record.folds[1]["score"] == pytest.approx(2 / 3)
    # what v1 did not record reads as unknown, not as a value
    assert record.train_labels_digest is None and record.train_images_digest is None and record.torch_threads is None
    # written again, the old keys keep their values (tools reading the JSON see the same file, plus new keys)
    old = json.loads((OLD / "run.json").read_text())
    again = record.to_json()
    assert {k: again[k] for k in old} == old


def test_a_blend_sidecar_written_by_cfba1c9_loads(tmp_path):
    work = _old_workdir(tmp_path)
    record = artifacts.load_run(artifacts.RunPaths(work, "oldblend").oof).record
    assert record.is_blend and record.method == "hill" and [m["name"] for m in record.members] == ["old", "old2"]
    assert record.cv.in_sample is not None and record.cv.n_rows is None and record.config["method"] == "hill"
    old = json.loads((OLD / "blend.json").read_text())
    again = record.to_json()
    assert {k: again[k] for k in old} == old and "folds_trained" not in again


def test_the_leaderboard_lists_cfba1c9_sidecars(tmp_path):
    table = leaderboard.collect(_old_workdir(tmp_path))
    rows = {r["name"]: r for r in table.to_dict("records")}
    assert rows["old"]["cv"] == pytest.approx(4 / 9) and rows["old"]["model"] == "small_resnet"
    assert rows["oldblend"]["model"] == "blend:hill" and rows["old"]["blends"] == "oldblend"


@pytest.mark.parametrize("payload, message", [
    ({"version": 3}, "record version 3 is newer than this comptk reads"),
    ([1, 2], "not a run record"),
    ({"classes": "cat"}, "'classes' must be a list"),
    ({"n_folds": "5"}, "'n_folds' must be an integer"),
    ({"cv": 0.5}, "'cv' must be a JSON object"),
])
def test_a_record_that_cannot_be_read_is_one_line(tmp_path, payload, message):
    path = tmp_path / "oof" / "x.json"
    artifacts.save_json(path, payload)
    with pytest.raises(ComptkError, match=message):
        artifacts.read_record(path)


def test_a_record_lacking_what_a_blend_needs_names_the_key(tmp_path):
    paths = artifacts.RunPaths(tmp_path, "bare")
    artifacts.save_json(paths.sidecar, {"competition": "tiny", "classes": ["a", "b"]})
    artifacts.save_npy(paths.oof, np.full((4, 2), 0.5, np.float32))
    artifacts.save_npy(paths.preds, np.full((2, 2), 0.5, np.float32))
    with pytest.raises(ComptkError, match="no 'train_ids_digest' key; is it a finished comptk run"):
        artifacts.load_run(paths.oof)


@pytest.fixture
def started(tiny):
    """A partial run of the tiny competition: fold 0 of 2 trained."""
    result = run_cv(tiny, FAST, workdir=tiny, name="r", folds_subset=[0], progress=False, plots=False)
    return tiny, result


def test_a_new_record_holds_version_digests_and_threads_and_reads_back_equal(started):
    _, result = started
    record = result.record
    assert record.version == artifacts.RECORD_VERSION == 2 and record.kind == "run"
    assert record.torch_threads == torch.get_num_threads()
    for digest in (record.train_labels_digest, record.train_images_digest, record.test_images_digest):
        assert isinstance(digest, str) and len(digest) == 64
    assert artifacts.read_record(result.paths.sidecar) == record
    saved = json.loads(result.paths.sidecar.read_text())
    assert saved["version"] == 2 and saved["torch_threads"] == record.torch_threads
    assert saved["partial"] is True and saved["folds_trained"] == [0] and saved["cv"]["oof"] == record.cv.oof
    start = json.loads(result.paths.config.read_text())  # runs/RUN/config.json: the identity a resume compares
    assert set(start) <= set(artifacts.IDENTITY_KEYS) and start["train_labels_digest"] == record.train_labels_digest


# --- a resume checks the data (issue 15 item 3) -------------------------------------------------------------------

def test_a_resume_refuses_changed_train_labels(started):
    root, result = started
    train = pd.read_csv(root / "data" / "train.csv", dtype=str)
    train.loc[0, "label"] = "fox" if train.loc[0, "label"] != "fox" else "cat"
    train.to_csv(root / "data" / "train.csv", index=False)
    with pytest.raises(ComptkError, match=r"run 'r' exists .* with other data: train labels \(train_labels_digest\)"):
        run_cv(root, FAST, workdir=root, name="r", progress=False, plots=False)
    assert not result.paths.fold_dir(1).exists()  # nothing trained on the new labels
    assert len(list((root / "folds").glob("*.csv"))) == 2  # the new labels got folds of their own
    cli = CliRunner().invoke(main, ["train", str(root), "--workdir", str(root), "--name", "r", "--folds", "2",
                                    "--epochs", "1", "--quiet", "--no-plots"])
    assert cli.exit_code == 2 and cli.output.count("\n") == 1 and "train labels (train_labels_digest)" in cli.output


def test_a_resume_refuses_changed_image_contents(started):
    root, result = started
    image = root / "data" / "img" / "dog_3.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[:6] = 255 - pixels[:6]
    Image.fromarray(pixels).save(image)
    with pytest.raises(ComptkError, match=r"other data: train image contents \(train_images_digest\)") as caught:
        run_cv(root, FAST, workdir=root, name="r", progress=False, plots=False)
    assert "labels" not in str(caught.value) and "\n" not in str(caught.value)
    assert not result.paths.fold_dir(1).exists()


def test_a_resume_with_the_same_data_trains_the_other_folds(started):
    root, result = started
    again = run_cv(root, FAST, workdir=root, name="r", progress=False, plots=False)
    assert again.record.trained_folds == [0, 1] and not again.partial
    assert again.record.train_images_digest == result.record.train_images_digest  # the cache gives the same pixels


def test_a_run_started_before_the_data_digests_existed_resumes(started):
    root, result = started
    saved = json.loads(result.paths.config.read_text())
    for key in artifacts.ADDED_IN_V2:
        del saved[key]
    artifacts.save_json(result.paths.config, saved)
    result.paths.sidecar.unlink()
    again = run_cv(root, FAST, workdir=root, name="r", progress=False, plots=False)
    assert again.record.trained_folds == [0, 1]


# --- sweep and train: one "same run?" check, one pre-flight ------------------------------------------------------

def test_sweep_counts_a_setting_added_since_as_its_default_like_train(tiny):
    grid = {"lr": [0.001, 0.003]}
    first = sweep(tiny, grid, name="s", workdir=tiny, folds_subset=[0], progress=False, plots=False, **FAST)
    for name in first.run_names:  # as if written before 'ema_decay' existed
        paths = artifacts.RunPaths(tiny, name)
        for path in (paths.config, paths.sidecar):
            saved = json.loads(path.read_text())
            del saved["config"]["ema_decay"]
            artifacts.save_json(path, saved)
    stamps = {n: artifacts.RunPaths(tiny, n).sidecar.stat().st_mtime_ns for n in first.run_names}
    sweep(tiny, grid, name="s", workdir=tiny, folds_subset=[0], progress=False, plots=False, **FAST)
    assert {n: artifacts.RunPaths(tiny, n).sidecar.stat().st_mtime_ns for n in first.run_names} == stamps
    train = pd.read_csv(tiny / "data" / "train.csv", dtype=str)
    train.loc[2, "label"] = "fox" if train.loc[2, "label"] != "fox" else "cat"
    train.to_csv(tiny / "data" / "train.csv", index=False)
    with pytest.raises(ComptkError, match=r"with other data: train labels .*; use another sweep --name"):
        sweep(tiny, grid, name="s", workdir=tiny, folds_subset=[0], progress=False, plots=False, **FAST)


def test_sweep_runs_the_preflight_on_every_planned_run_before_the_first_trains(tiny):
    with pytest.raises(ComptkError, match="'nope'"):
        sweep(tiny, {"tta": ["none", "nope"]}, name="s", workdir=tiny, progress=False, **FAST)
    with pytest.raises(ComptkError, match="pseudo-labels: unknown run 'gone'"):
        sweep(tiny, {"lr": [0.001, 0.003]}, name="s", workdir=tiny, progress=False, pseudo_run="gone", **FAST)
    assert not (tiny / "runs").exists() and not (tiny / "sweeps").exists()


def test_tune_runs_the_preflight_on_its_base_settings(tiny):
    from comptk.tune import tune

    with pytest.raises(ComptkError, match="'nope'"):
        tune(tiny, workdir=tiny, n_trials=1, pins={"tta": "nope"}, echo=lambda _: None)
    assert not (tiny / "tune").exists()


def test_a_damaged_folds_file_stops_train_ensemble_and_inspect_with_one_line(tiny):
    from comptk.ensemble import blend
    from comptk.inspect.inspector import inspect_competition

    a = run_cv(tiny, FAST, workdir=tiny, name="a", progress=False, plots=False)
    b = run_cv(tiny, {**FAST, "lr": 3e-3}, workdir=tiny, name="b", progress=False, plots=False)
    folds = Path(a.record.folds_file)
    folds.write_text("".join(folds.read_text().splitlines(keepends=True)[:-3]))  # truncated
    calls = {
        "train": lambda: run_cv(tiny, FAST, workdir=tiny, name="c", progress=False, plots=False),
        "ensemble": lambda: blend([a.paths.oof, b.paths.oof], out=tiny / "submissions" / "x.csv", workdir=tiny),
        "inspect --run": lambda: inspect_competition(tiny, workdir=tiny, run="a", outliers=False),
        "inspect": lambda: inspect_competition(tiny, workdir=tiny),
    }
    for what, call in calls.items():
        with pytest.raises(ComptkError, match=re.escape(str(folds)) + ": its ids do not match") as caught:
            call()
        assert "delete it to make folds anew" in str(caught.value), what
    assert not artifacts.RunPaths(tiny, "c").run_dir.exists() and not (tiny / "submissions" / "x.csv").exists()


def test_a_fold_number_out_of_range_is_refused_not_trained_into_nan_rows(tiny):
    first = run_cv(tiny, FAST, workdir=tiny, name="a", progress=False, plots=False)
    folds = Path(first.record.folds_file)
    frame = pd.read_csv(folds, dtype=str)
    frame.loc[3, "fold"] = "7"
    frame.to_csv(folds, index=False)
    with pytest.raises(ComptkError, match=rf"id '{frame.loc[3, 'id']}' has fold 7, but folds are 0\.\.1"):
        run_cv(tiny, FAST, workdir=tiny, name="b", progress=False, plots=False)
    assert not artifacts.RunPaths(tiny, "b").run_dir.exists()


def test_a_run_recorded_before_folds_seed_existed_counts_its_seed_as_the_folds_seed():
    """Before folds belonged to the competition, a run's --seed also made its folds: resuming such a run
    with that folds seed is the same run, and with another it is not."""
    saved = {"config": {"seed": 7, "n_folds": 5}}
    assert artifacts.run_differences(saved, {"config": {"seed": 7, "n_folds": 5, "folds_seed": 7}}) == []
    diffs = artifacts.run_differences(saved, {"config": {"seed": 7, "n_folds": 5, "folds_seed": 42}})
    assert diffs == [("settings", "folds_seed (7 -> 42)")]
