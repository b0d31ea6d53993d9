"""comptk predict / export and comptk.load_predictor: a run's fold models with its TTA on new images,
reproducing the run's own test predictions; bundles that work without the work directory."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from tests.conftest import make_tiny
from PIL import Image

import comptk
from comptk import ComptkError, load_predictor, run_cv
from comptk.cli import main
from comptk.predict.bundle import find_recipe, read_bundle, write_bundle

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 2-fold run with TTA on a competition whose test images are crops (test_crop 0.5):
    validation on crops, test images predicted whole, which predict must repeat."""
    root = make_tiny(tmp_path_factory.mktemp("predict") / "tiny", n_per_class=6)
    toml = root / "competition.toml"
    toml.write_text(toml.read_text() + "\n[test_time]\ncrop = 0.5\n")
    run_cv(root, {"n_folds": 2, "epochs": 1, "tta": "hflip"}, workdir=root, name="r", progress=False, plots=False)
    return root


def _table(path_or_text: Path | str) -> pd.DataFrame:
    """A CSV file, or CSV text (a command's standard output)."""
    source = path_or_text if isinstance(path_or_text, Path) else io.StringIO(path_or_text)
    return pd.read_csv(source, dtype={"id": str, "label": str})


def _proba(frame: pd.DataFrame, classes) -> np.ndarray:
    return frame[[f"proba_{c}" for c in classes]].to_numpy(dtype=np.float64)


def test_predict_on_the_runs_test_csv_reproduces_its_preds_and_submission(run, tmp_path):
    out = tmp_path / "p.csv"
    result = invoke("predict", "r", "--workdir", run, "--csv", run / "data" / "test.csv", "--out", out)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((run / "oof" / "r.json").read_text())
    frame = _table(out)
    assert list(frame.columns) == ["id", "label", *[f"proba_{c}" for c in sidecar["classes"]]]
    test = pd.read_csv(run / "data" / "test.csv", dtype=str)
    assert frame["id"].tolist() == test["id"].tolist()
    preds = np.load(run / "preds" / "r.npy")
    assert np.abs(_proba(frame, sidecar["classes"]) - preds).max() <= TOLERANCE
    submission = pd.read_csv(run / "submissions" / "r.csv", dtype=str).set_index("id")["label"]
    assert frame.set_index("id")["label"].equals(submission.loc[frame["id"]])


def test_submission_flag_writes_the_competitions_submission(run, tmp_path):
    out = tmp_path / "s.csv"
    result = invoke("predict", "r", "--workdir", run, "--csv", run / "data" / "test.csv", "--submission", "--out", out)
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype=str), pd.read_csv(run / "submissions" / "r.csv", dtype=str))


def test_predict_refuses_to_overwrite_an_out_file_without_force(run, tmp_path):
    out = tmp_path / "mine.csv"
    out.write_text("keep me")
    image = next((run / "data" / "img").glob("*.png"))
    refused = invoke("predict", "r", image, "--workdir", run, "--out", out)
    assert refused.exit_code == 2 and refused.output.strip() == \
        f"error: --out {out} exists; pass --force to replace it, or choose another --out"
    assert out.read_text() == "keep me"
    assert invoke("predict", "r", image, "--workdir", run, "--out", out, "--force").exit_code == 0
    assert _table(out)["id"].tolist() == [str(image)]


def test_files_folders_and_arrays_give_the_same_probabilities(run, tmp_path):
    predictor = load_predictor("r", workdir=run)
    test = pd.read_csv(run / "data" / "test.csv", dtype=str)
    files = [run / "data" / p for p in test["img_path"]]
    preds = np.load(run / "preds" / "r.npy")
    by_file = predictor.predict(files)
    assert by_file.ids == tuple(str(f) for f in files)
    assert np.abs(by_file.proba - preds).max() <= TOLERANCE
    # decoded and predicted a chunk at a time (memory): the same numbers
    chunked = load_predictor("r", workdir=run, batch_size=2)
    chunked.chunk = 4
    assert np.abs(chunked.predict(files).proba - by_file.proba).max() <= 1e-6
    # decoded arrays (one, a list, an N x H x W x 3 array), including one at another size: resized as files are
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    assert np.array_equal(predictor.predict_proba(np.stack(arrays)), by_file.proba)
    assert np.array_equal(predictor.predict_proba(arrays[0]), by_file.proba[:1])
    big = np.repeat(np.repeat(arrays[0], 3, axis=0), 2, axis=1)  # 36 x 24: not square, not img_size
    Image.fromarray(big).save(tmp_path / "big.png")
    mixed = predictor.predict([big, tmp_path / "big.png"], ids=["array", "file"])
    assert mixed.ids == ("array", "file") and np.array_equal(mixed.proba[0], mixed.proba[1])
    # a folder: its images named by their path inside it, without extension
    result = invoke("predict", "r", "--workdir", run, run / "data" / "img", "--no-proba")
    assert result.exit_code == 0, result.output
    frame = _table(result.stdout)
    n_images = len(list((run / "data" / "img").glob("*.png")))  # 18 train images and the 9 test images' copies
    assert list(frame.columns) == ["id", "label"] and len(frame) == n_images == 27 and "cat_0" in set(frame["id"])
    for bad in (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ComptkError, match=r"uint8 array of shape \(H, W, 3\)"):
            predictor.predict(bad)


def _no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a bundle must load without unpickling")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)


def test_exported_bundle_predicts_without_the_workdir_competition_or_network(run, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(run, work)
    bundle = tmp_path / "bundle"
    result = invoke("export", "r", "--workdir", work, "--out", bundle)
    assert result.exit_code == 0, result.output
    # What a Kaggle notebook has: the test CSV and images (elsewhere), the bundle, nothing else.
    inputs = tmp_path / "input"
    inputs.mkdir()
    shutil.copy(work / "data" / "test.csv", inputs / "test.csv")
    shutil.copytree(work / "data" / "img", inputs / "img")
    preds = np.load(work / "preds" / "r.npy")
    submission = pd.read_csv(work / "submissions" / "r.csv", dtype=str)
    shutil.rmtree(work)  # the work directory, the competition declaration and the data, all gone
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "comptk", "predict", str(bundle), "--csv", str(inputs / "test.csv"),
                           "--out", "out.csv"], cwd=fresh, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    frame = _table(fresh / "out.csv")
    classes = read_bundle(bundle).classes
    diff = np.abs(_proba(frame, classes) - preds).max()
    assert diff <= TOLERANCE, diff
    assert frame["label"].tolist() == submission["label"].tolist()
    # the Python API, with unpickling made impossible
    _no_unpickling(monkeypatch)
    monkeypatch.chdir(fresh)
    predictor = comptk.load_predictor(bundle)
    arrays = [np.asarray(Image.open(inputs / p).convert("RGB")) for p in pd.read_csv(inputs / "test.csv")["img_path"]]
    assert np.abs(predictor.predict(arrays).proba - preds).max() <= TOLERANCE
    assert predictor.predict(arrays).labels.tolist() == submission["label"].tolist()


def test_bundle_is_json_and_safetensors_with_the_whole_recipe(run, tmp_path):
    bundle = tmp_path / "b"
    assert invoke("export", "r", "--workdir", run, "--out", bundle).exit_code == 0
    assert sorted(p.name for p in bundle.iterdir()) == ["bundle.json", "fold0.safetensors", "fold1.safetensors"]
    meta = json.loads((bundle / "bundle.json").read_text())
    sidecar = json.loads((run / "oof" / "r.json").read_text())
    assert meta["format"] == "comptk-bundle" and meta["format_version"] == 1
    assert meta["comptk_version"] == comptk.__version__ and meta["run"] == "r" and meta["competition"] == "tiny"
    assert meta["classes"] == sidecar["classes"]
    assert meta["model"]["name"] == "small_resnet" and meta["model"]["create_kwargs"]["num_classes"] == 3
    assert meta["model"]["create_kwargs"]["pretrained"] is False
    assert meta["img_size"] == 12 and meta["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    assert meta["tta"]["preset"] == "hflip" and meta["tta"]["merge"] == "mean"
    assert meta["test_time"]["test_crop"] == 0.5 and "as they are" in meta["test_time"]["predict"]
    assert meta["precision"]["setting"] == "auto" and meta["precision"]["training_autocast"]
    assert meta["cv"] == sidecar["cv"] and meta["metric"] == "accuracy"
    assert [f["fold"] for f in meta["folds"]] == [0, 1] and not meta["partial"]
    assert meta["inputs"]["image_column"] == "img_path" and meta["submission"]["kind"] == "label"


def test_export_refuses_to_overwrite_and_is_atomic(run, tmp_path):
    bundle = tmp_path / "b"
    assert invoke("export", "r", "--workdir", run, "--out", bundle).exit_code == 0
    again = invoke("export", "r", "--workdir", run, "--out", bundle)
    assert again.exit_code == 2 and "--force" in again.output
    assert invoke("export", "r", "--workdir", run, "--out", bundle, "--force").exit_code == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    refused = invoke("export", "r", "--workdir", run, "--out", other, "--force")
    assert refused.exit_code == 2 and "not a comptk bundle" in refused.output
    assert (other / "notes.txt").read_text() == "keep me"

    def fail(folder):
        raise ComptkError("check failed")

    with pytest.raises(ComptkError, match="check failed"):
        write_bundle(find_recipe("r", run), tmp_path / "half", check=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "mine"]  # no half bundle, no temporary folder


def test_bad_images_are_one_line_errors_or_skipped(run, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    good = run / "data" / "img" / "cat_0.png"
    csv = tmp_path / "list.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "img_path": [str(good), "broken.png", "missing.png"]}).to_csv(csv, index=False)
    result = invoke("predict", "r", "--workdir", run, "--csv", csv, "--image-dir", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("error:"))
    assert str(tmp_path / "broken.png") in line and str(tmp_path / "missing.png") in line and "--skip-bad" in line
    skipped = invoke("predict", "r", "--workdir", run, "--csv", csv, "--image-dir", tmp_path, "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert _table(skipped.stdout)["id"].tolist() == ["a"]
    assert "skipped 2 unreadable image(s)" in skipped.stderr and "broken.png" in skipped.stderr
    # a truncated file has a valid header: caught at decoding, with the same message
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cut = invoke("predict", "r", "--workdir", run, tmp_path / "cut.png")
    assert cut.exit_code == 2 and "cut.png" in cut.output and "Traceback" not in cut.output


@pytest.mark.parametrize("limit", [100, 60])  # 144 pixels: above the limit (Pillow warns), above twice (it refuses)
def test_images_above_the_decompression_bomb_limit_are_named(run, monkeypatch, limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    result = invoke("predict", "r", "--workdir", run, run / "data" / "img" / "cat_0.png")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cat_0.png: 144 pixels, above Pillow's decompression-bomb limit" in result.output


def test_usage_mistakes_are_one_line_errors(run, tmp_path):
    test_csv = run / "data" / "test.csv"
    cases = [
        (("predict", "rr", "--workdir", run, "--csv", test_csv), "did you mean 'r'?"),
        (("predict", "r", "--workdir", run), "one of the two"),
        (("predict", "r", "--workdir", run, test_csv), "pass --csv"),
        (("predict", "r", "--workdir", run, "--csv", test_csv, "--id-col", "nope"), "no id column 'nope'"),
        (("predict", tmp_path, "--csv", test_csv), "neither a bundle nor a run"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_partial_and_unfinished_runs_predict_with_their_trained_folds(run, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(run, work)
    run_cv(work, {"n_folds": 2, "epochs": 1, "tta": "hflip"}, workdir=work, name="part", progress=False, plots=False,
           folds_subset=[1])
    result = invoke("predict", "part", "--workdir", work, "--csv", work / "data" / "test.csv")
    assert result.exit_code == 0, result.output
    assert "folds 1 of 2 (partial run" in result.stderr
    classes = json.loads((work / "oof" / "part.json").read_text())["classes"]
    assert np.abs(_proba(_table(result.stdout), classes) - np.load(work / "preds" / "part.npy")).max() <= TOLERANCE
    # interrupted before the sidecar: the finished folds (result.json) predict, as their mean
    (work / "oof" / "r.json").unlink()
    shutil.rmtree(work / "runs" / "r" / "fold0")
    predictor = load_predictor("r", workdir=work)
    assert predictor.recipe.folds == (1,) and not predictor.recipe.finished
    test = pd.read_csv(work / "data" / "test.csv", dtype=str)
    proba = predictor.predict_proba([work / "data" / p for p in test["img_path"]])
    assert np.abs(proba - np.load(work / "runs" / "r" / "fold1" / "test.npy")).max() <= TOLERANCE


def test_factorised_heads_drop_rates_and_gmean_survive_the_bundle(tmp_path):
    root = make_tiny(tmp_path / "heads", n_per_class=4, classes=("a", "b", "c", "d"))
    run_cv(root, {"n_folds": 2, "epochs": 1, "heads": "2x2", "drop_rate": 0.2, "tta": "flip", "tta_merge": "gmean"},
           workdir=root, name="h", progress=False, plots=False)
    assert invoke("export", "h", "--workdir", root, "--out", tmp_path / "b").exit_code == 0
    meta = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert meta["model"]["heads"] == "2x2" and meta["model"]["create_kwargs"] == {
        "pretrained": False, "num_classes": 4, "drop_rate": 0.2}
    assert meta["tta"] == {**meta["tta"], "preset": "flip", "merge": "gmean"}
    test = pd.read_csv(root / "data" / "test.csv", dtype=str)
    proba = load_predictor(tmp_path / "b").predict_proba([root / "data" / p for p in test["img_path"]])
    assert np.abs(proba - np.load(root / "preds" / "h.npy")).max() <= TOLERANCE


def test_a_damaged_copy_of_a_bundle_is_refused_by_its_checksums(run, tmp_path):
    bundle = tmp_path / "b"
    assert invoke("export", "r", "--workdir", run, "--out", bundle).exit_code == 0
    weights = sorted(bundle.glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the last tensor: still parses, other numbers
    weights.write_bytes(bytes(data))
    result = invoke("predict", bundle, "--csv", run / "data" / "test.csv", "--out", tmp_path / "p.csv")
    assert result.exit_code == 2 and "sha256 mismatch" in result.output and weights.name in result.output


def test_the_same_image_given_twice_is_one_line_naming_the_id(run, tmp_path):
    image = next((run / "data" / "img").glob("*.png"))
    result = invoke("predict", "r", image, image, "--workdir", run, "--out", tmp_path / "p.csv")
    assert result.exit_code == 2 and f"two images would both get id '{image}'" in result.output


def test_a_csv_of_stems_finds_each_stems_image_under_another_extension(tmp_path):
    """As reading the competition's data does: '{id}.jpg' finds x.JPG or x.png when it is the stem's only image."""
    from comptk.predict.inputs import images_from_csv

    (tmp_path / "test").mkdir()
    for name in ("a.jpg", "b.JPG", "c.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / "test" / name, format="PNG" if name.endswith("png") else "JPEG")
    pd.DataFrame({"id": ["a", "b", "c"]}).to_csv(tmp_path / "test.csv", index=False)
    found = images_from_csv(tmp_path / "test.csv", defaults={"image_template": "{id}.jpg", "image_dir": "test"})
    assert [p.name for p in found.paths] == ["a.jpg", "b.JPG", "c.png"]


def test_an_empty_image_path_in_a_csv_names_the_line_and_id_not_the_folder(tmp_path):
    from comptk.predict.inputs import images_from_csv

    Image.new("RGB", (4, 4)).save(tmp_path / "d.png")
    pd.DataFrame({"name": ["d", "c"], "file": ["d.png", ""]}).to_csv(tmp_path / "blank.csv", index=False)
    with pytest.raises(ComptkError, match=r"blank.csv line 3 \(id 'c'\): empty image path$"):
        images_from_csv(tmp_path / "blank.csv", image_column="file", id_column="name", image_dir=tmp_path)
