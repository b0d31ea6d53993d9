"""The five reference contests end to end: `comptk prepare NAME` writes the stand-in in the contest's
layout, `comptk train NAME` (tiny settings) reads it through the shipped declaration, and the
submission has the contest's sample-submission format and scores against the stand-in's answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from comptk.artifacts import RunPaths
from comptk.cli import main
from comptk.competition import BUNDLED_DIR, load_competition
from comptk.data.layouts import read_data
from comptk.metrics import get_metric

TINY = ["--folds", "2", "--epochs", "1", "--img-size", "16", "--model", "small_resnet", "--no-pretrained",
        "--batch-size", "64", "--tta", "none", "--quiet", "--no-plots"]
SIZES = {"artist": (150, 30), "kfood": (84, 30), "mask": (84, 84), "cifar10": (100, 30), "illustration": (120, 30)}
# Where each contest's sample submission is (kfood has none: comptk writes id,label, as the stand-in's file shows).
SAMPLES = {"artist": "sample_submission.csv", "kfood": "sample_submission.csv", "mask": "eval/info.csv",
           "cifar10": "sample_submission.csv", "illustration": "sample_submission.csv"}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def prepared(tmp_path: Path, name: str) -> Path:
    train_n, test_n = SIZES[name]
    result = invoke("prepare", name, "--workdir", tmp_path, "--train-n", train_n, "--test-n", test_n)
    assert result.exit_code == 0, result.output
    assert "stand-in" in result.output and (tmp_path / "data" / name / "STANDIN.md").is_file()
    return tmp_path


def train(workdir: Path, competition: str | Path, *extra) -> tuple[RunPaths, dict]:
    result = invoke("train", competition, "--workdir", workdir, "--name", "e2e", *TINY, *extra)
    assert result.exit_code == 0, result.output
    paths = RunPaths(workdir, "e2e")
    return paths, json.loads(paths.sidecar.read_text())


def check_submission(workdir: Path, name: str, paths: RunPaths, sidecar: dict) -> pd.DataFrame:
    """Same columns, ids in the same order, labels among the classes; `comptk score` agrees with the metric."""
    data = workdir / "data" / name
    sample = pd.read_csv(data / SAMPLES[name], dtype=str, keep_default_na=False)
    sub = pd.read_csv(paths.submission, dtype=str, keep_default_na=False)
    assert list(sub.columns) == list(sample.columns)
    id_col, label_col = sample.columns
    assert sub[id_col].tolist() == sample[id_col].tolist()
    assert set(sub[label_col]) <= set(sidecar["classes"])
    answers = data / "answers.csv"
    result = invoke("score", paths.submission, "--answers", answers)
    assert result.exit_code == 0, result.output
    truth = pd.read_csv(answers, dtype=str).set_index(id_col)[label_col]
    names = sorted(set(truth) | set(sub[label_col]))
    expected = get_metric(sidecar["metric"])(
        np.array([names.index(truth[i]) for i in sub[id_col]]), np.array([names.index(v) for v in sub[label_col]]),
        len(names))
    assert result.output.strip() == f"{sidecar['metric']} {expected:.4f}"
    return sub


def test_artist_end_to_end_with_the_planted_pair_fixed(tmp_path):
    workdir = prepared(tmp_path, "artist")
    data = workdir / "data/artist"
    train_csv = pd.read_csv(data / "train.csv", dtype=str)
    assert list(train_csv.columns) == ["id", "img_path", "artist"] and train_csv["img_path"][0] == "./train/0000.jpg"
    assert train_csv["artist"].nunique() == 50
    assert list(pd.read_csv(data / "test.csv").columns) == ["id", "img_path"]
    # The declaration as shipped, with the stand-in's planted pair added to [label_fixes].
    declaration = tmp_path / "decl" / "artist"
    declaration.mkdir(parents=True)
    text = (BUNDLED_DIR / "artist/competition.toml").read_text()
    fixes = (data / "standin_label_fixes.toml").read_text()
    (declaration / "competition.toml").write_text(text.replace("[label_fixes]\n", fixes))
    comp = load_competition(declaration)
    assert len(comp.label_fixes) == 2 and comp.train["sampler"] == "weighted" and comp.test_crop == 0.5
    loaded = read_data(comp, data)
    for id_, label in comp.label_fixes.items():
        row = loaded.train.ids.tolist().index(id_)
        assert loaded.classes[loaded.train.labels[row]] == label != train_csv.set_index("id")["artist"][id_]

    paths, sidecar = train(workdir, declaration, "--valid-crop", "center")
    assert {(f["id"], f["to"]) for f in sidecar["label_fixes"]} == set(comp.label_fixes.items())
    assert sidecar["config"]["sampler"] == "weighted" and sidecar["config"]["augment"] == "crop-to-test"
    check_submission(workdir, "artist", paths, sidecar)


def test_kfood_end_to_end_val_joins_training(tmp_path):
    workdir = prepared(tmp_path, "kfood")
    data = workdir / "data/kfood"
    n_train = sum(1 for p in (data / "train").rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    n_val = sum(1 for p in (data / "val").rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    assert (data / "train" / "배추김치" / "crop_area.properties").is_file() and n_val > 0
    paths, sidecar = train(workdir, "kfood")
    assert sidecar["n_train"] == n_train + n_val and len(sidecar["classes"]) == 42
    assert sidecar["config"]["augment"] == "geometric"
    folds = pd.read_csv(sidecar["folds_file"], dtype=str)
    assert folds["id"].str.startswith("val/").sum() == n_val
    check_submission(workdir, "kfood", paths, sidecar)


def test_mask_end_to_end_keeps_each_person_in_one_fold(tmp_path):
    workdir = prepared(tmp_path, "mask")
    data = workdir / "data/mask"
    people = pd.read_csv(data / "train/train.csv", dtype=str)
    assert list(people.columns) == ["id", "gender", "race", "age", "path"]
    assert list(pd.read_csv(data / "eval/info.csv").columns) == ["ImageID", "ans"]
    paths, sidecar = train(workdir, "mask")
    assert sidecar["n_train"] == 7 * len(people)  # the ._ resource forks are not photos
    assert sidecar["classes"] == [str(i) for i in range(18)]
    folds = pd.read_csv(sidecar["folds_file"], dtype=str)
    person = folds["id"].str.split("/").str[0]
    assert set(person) == set(people["path"])
    assert (folds.groupby(person)["fold"].nunique() == 1).all()
    sub = check_submission(workdir, "mask", paths, sidecar)
    assert sub["ans"].astype(int).between(0, 17).all()
    # three heads (mask, gender, age band) combined into the 18 classes, on the same person folds
    result = invoke("train", "mask", "--workdir", workdir, "--name", "heads", *TINY, "--heads", "3x2x3")
    assert result.exit_code == 0, result.output
    heads = RunPaths(workdir, "heads")
    meta = json.loads(heads.sidecar.read_text())
    assert meta["config"]["heads"] == "3x2x3" and meta["folds_file"] == sidecar["folds_file"]
    assert np.load(heads.oof).shape == (len(folds), 18)
    check_submission(workdir, "mask", heads, meta)


def test_cifar10_end_to_end_and_pretrained_weights_are_refused(tmp_path):
    workdir = prepared(tmp_path, "cifar10")
    refused = invoke("train", "cifar10", "--workdir", workdir, "--name", "pre", *TINY, "--pretrained")
    assert refused.exit_code == 2 and "forbids pretrained weights" in refused.output
    assert not (workdir / "runs/pre").exists()
    paths, sidecar = train(workdir, "cifar10")
    assert sidecar["config"]["mixup_alpha"] == 0.2 and sidecar["config"]["pretrained"] is False
    sub = check_submission(workdir, "cifar10", paths, sidecar)
    assert sub["id"].str.endswith(".jpg").all()  # the sample's ids are file names, not stems


def test_illustration_end_to_end_with_its_recipe_defaults(tmp_path):
    workdir = prepared(tmp_path, "illustration")
    data = workdir / "data/illustration"
    truth = pd.read_csv(data / "standin_truth.csv", dtype=str, keep_default_na=False)
    assert (truth["kind"] == "photo").any()
    paths_of = {**pd.read_csv(data / "train.csv", dtype=str).set_index("id")["img_path"],
                **pd.read_csv(data / "test.csv", dtype=str).set_index("id")["img_path"]}
    duplicates = truth[truth["duplicate_of"] != ""]
    assert (duplicates["split"] == "test").any() and (duplicates["split"] == "train").any()
    for id_, source in zip(duplicates["id"], duplicates["duplicate_of"]):
        assert (data / paths_of[id_]).read_bytes() == (data / paths_of[source]).read_bytes()
    paths, sidecar = train(workdir, "illustration")
    assert sidecar["config"]["loss"] == "focal" and sidecar["config"]["sampler"] == "weighted"
    check_submission(workdir, "illustration", paths, sidecar)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_real_data_elsewhere_needs_only_data(tmp_path, name):
    """Data outside data/NAME (as a user's download would be) is used with --data and nothing else."""
    train_n, test_n = SIZES[name]
    out = tmp_path / "downloads" / name
    result = invoke("prepare", name, "--out", out, "--train-n", train_n, "--test-n", test_n, "--seed", 1)
    assert result.exit_code == 0, result.output
    comp = load_competition(name)
    loaded = read_data(comp, comp.data_path(tmp_path / "elsewhere", out))
    assert len(loaded.train.ids) >= train_n * 0.9 and len(loaded.test.ids) > 0
    if loaded.sample_submission is not None:
        assert set(loaded.sample_submission[comp.columns.id]) == set(loaded.test.ids)
    shutil.rmtree(out)
