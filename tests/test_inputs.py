"""Issue 15: bad inputs that used to give a silent wrong result or a traceback. Each is now a one-line
ComptkError naming the file (and line), or a documented normalisation with a printed note."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from click.testing import CliRunner
from tests.conftest import make_tiny
from PIL import Image
from safetensors.torch import save_file
from tests.ensemble.test_ensemble import tiny_work  # noqa: F401 - a fixture: a workdir with fake finished runs

from comptk import ComptkError, artifacts, load_competition, resolve
from comptk.cli import main
from comptk.data.image_cache import load_images_cached
from comptk.data.images import decode_image, load_images
from comptk.data.layouts import read_data
from comptk.ensemble import blend
from comptk.ensemble.methods import make_meta
from comptk.errors import WriteError
from comptk.submission import score_submission
from comptk.train.models import Classifier, create_model


def _read(root: Path):
    return read_data(load_competition(root), root / "data")


def _set_train(root: Path, fn) -> None:
    path = root / "data" / "train.csv"
    fn(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)


def _set_cell(root: Path, file: str, row: int, column: str, value: str) -> None:
    path = root / "data" / file
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row, column] = value
    frame.to_csv(path, index=False)


def _declare(root: Path, line: str) -> None:
    path = root / "competition.toml"
    path.write_text(path.read_text().replace('data_dir = "data"', f'data_dir = "data"\n{line}'))


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# ---------------------------------------------------------------- 1. junk labels

@pytest.mark.parametrize("junk", ["NaN", "nan", "NA", "N/A", "null", "None", "-", "   ", ""])
def test_missing_value_labels_are_errors_naming_the_line(tiny, junk):
    _set_cell(tiny, "train.csv", 3, "label", junk)
    with pytest.raises(ComptkError, match=r"train.csv line 5 \(id 'cat_3'\): (empty label|label .* missing value)"):
        _read(tiny)


@pytest.mark.parametrize("file", ["train.csv", "test.csv"])
def test_an_empty_image_path_is_an_error_naming_the_line(tiny, file):
    _set_cell(tiny, file, 2, "img_path", " ")
    with pytest.raises(ComptkError, match=rf"{file} line 4 \(id '.*'\): empty image path$"):
        _read(tiny)


def test_a_declared_class_may_be_spelled_like_a_missing_value(tiny):
    _set_train(tiny, lambda f: f.assign(label=f.label.replace("fox", "None")))
    _declare(tiny, 'classes = ["cat", "dog", "None"]')
    assert _read(tiny).classes == ("cat", "dog", "None")


def test_label_fixes_may_mend_a_junk_label(tiny):
    _set_cell(tiny, "train.csv", 3, "label", "NaN")
    (tiny / "competition.toml").write_text((tiny / "competition.toml").read_text() + '\n[label_fixes]\ncat_3 = "cat"\n')
    data = _read(tiny)
    assert data.classes == ("cat", "dog", "fox") and data.classes[data.train.labels[3]] == "cat"


def test_labels_with_surrounding_spaces_are_stripped_with_one_note(tiny, caplog):
    _set_cell(tiny, "train.csv", 3, "label", "cat ")
    _set_cell(tiny, "train.csv", 8, "label", " dog")
    with caplog.at_level(logging.WARNING, logger="comptk"):
        data = _read(tiny)
    assert data.classes == ("cat", "dog", "fox")  # not 5 classes
    assert data.classes[data.train.labels[3]] == "cat" and data.classes[data.train.labels[8]] == "dog"
    notes = [r.getMessage() for r in caplog.records if "stripped" in r.getMessage()]
    assert len(notes) == 1 and "2 labels" in notes[0] and "line 5: 'cat ' -> 'cat'" in notes[0]


def test_stripping_that_merges_two_declared_classes_is_an_error(tiny):
    _declare(tiny, 'classes = ["cat", "cat ", "dog", "fox"]')
    _set_cell(tiny, "train.csv", 3, "label", " cat")
    with pytest.raises(ComptkError, match=r"line 5: label ' cat' .*declared classes 'cat', 'cat '"):
        _read(tiny)


def test_one_number_spelled_two_ways_is_an_error_naming_both(tmp_path):
    root = make_tiny(tmp_path / "n", classes=("1", "2", "3"))
    _set_cell(root, "train.csv", 14, "label", "3.0")
    with pytest.raises(ComptkError, match=r"labels '3' \(line 14\) and '3.0' \(line 16\) are one number"):
        _read(root)


def test_ids_keep_their_spaces_and_a_blank_id_is_an_error(tiny):
    for file in ("test.csv", "sample_submission.csv"):
        _set_cell(tiny, file, 0, "id", " t_cat_0 ")
    assert _read(tiny).test.ids[0] == " t_cat_0 "  # must match the sample submission exactly
    _set_cell(tiny, "train.csv", 2, "id", "  ")
    with pytest.raises(ComptkError, match="train.csv line 4: empty id"):
        _read(tiny)


# ---------------------------------------------------------------- 2. image paths stay in the image folder

def test_image_paths_outside_the_data_folder_are_errors(tiny):
    outside = tiny / "outside.png"
    shutil.copyfile(tiny / "data/img/cat_0.png", outside)
    _set_cell(tiny, "train.csv", 3, "img_path", "../outside.png")
    with pytest.raises(ComptkError, match=r"train.csv line 5 \(id 'cat_3'\): image path '../outside.png' leads "
                                          r"outside the image folder"):
        _read(tiny)
    _set_cell(tiny, "train.csv", 3, "img_path", str(outside.resolve()))
    with pytest.raises(ComptkError, match="line 5 .* leads outside the image folder"):
        _read(tiny)
    _set_cell(tiny, "train.csv", 3, "img_path", str((tiny / "data/img/cat_3.png").absolute()))
    assert _read(tiny).train.paths[3].name == "cat_3.png"  # absolute, but inside: fine
    _set_cell(tiny, "test.csv", 1, "img_path", "img/../../outside.png")
    with pytest.raises(ComptkError, match=r"test.csv line 3 .* leads outside the image folder"):
        _read(tiny)


def test_a_symlink_placed_inside_the_data_folder_is_followed(tiny):
    elsewhere = tiny / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(tiny / "data/img/cat_0.png", elsewhere / "x.png")
    (tiny / "data/linked").symlink_to(elsewhere, target_is_directory=True)
    _set_cell(tiny, "train.csv", 0, "img_path", "linked/x.png")
    assert _read(tiny).train.paths[0] == tiny / "data/linked/x.png"


def test_inspect_refuses_an_escaping_path(tiny):
    shutil.copyfile(tiny / "data/img/cat_0.png", tiny / "outside.png")
    _set_cell(tiny, "train.csv", 3, "img_path", "../outside.png")
    result = CliRunner().invoke(main, ["inspect", str(tiny), "--workdir", str(tiny)])
    assert "leads outside the image folder" in _one_line_error(result)
    assert not (tiny / "inspect").exists()


def test_a_person_folder_outside_the_image_folder_is_an_error(tmp_path):
    from comptk.datasets import prepare

    root = prepare("mask", tmp_path / "mask", train_n=14, test_n=7)
    people = pd.read_csv(root / "train/train.csv", dtype=str)
    shutil.copytree(root / "train/images" / people["path"][1], root / "escaped")
    people.loc[1, "path"] = "../../escaped"
    people.to_csv(root / "train/train.csv", index=False)
    with pytest.raises(ComptkError, match="line 3: person folder '../../escaped' is not a folder inside"):
        read_data(load_competition("mask"), root)


# ---------------------------------------------------------------- 6. score

@pytest.fixture
def answers(tmp_path) -> Path:
    path = tmp_path / "answers.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(10)], "label": [str(i) for i in range(10)]}).to_csv(path, index=False)
    return path


def _submission(tmp_path, labels, column="label", ids=None) -> Path:
    path = tmp_path / "sub.csv"
    ids = ids or [f"r{i}" for i in range(len(labels))]
    pd.DataFrame({"id": ids, column: labels}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("bad", ["cat", "7.0", " 7"])
def test_score_refuses_labels_outside_the_classes(tmp_path, answers, bad):
    labels = [str(i) for i in range(10)]
    labels[7] = bad
    sub = _submission(tmp_path, labels)
    result = CliRunner().invoke(main, ["score", str(sub), "--answers", str(answers), "--metric", "accuracy"])
    assert f"1 predictions are not class labels: '{bad}'" in _one_line_error(result)


def test_score_refuses_a_label_in_another_unicode_form_than_the_answers(tmp_path):
    composed = "김치"
    decomposed = unicodedata.normalize("NFD", composed)
    answers = tmp_path / "answers.csv"
    pd.DataFrame({"id": ["a", "b"], "label": [composed, "x"]}).to_csv(answers, index=False)
    sub = _submission(tmp_path, [decomposed, "x"], ids=["a", "b"])
    # even where a run's classes are spelled so (class folders unpacked on macOS): not a score of 0
    with pytest.raises(ComptkError, match="label '.*' is written in decomposed Unicode, .*answers.csv writes it composed"):
        score_submission(sub, answers, "accuracy", classes=[decomposed, "x"])
    assert score_submission(_submission(tmp_path, [composed, "x"], ids=["a", "b"]), answers, "accuracy") == 1.0


def test_score_reads_a_submission_of_probabilities_as_its_most_probable_classes(tmp_path):
    answers = tmp_path / "answers.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "label": ["cat", "dog", "cat"]}).to_csv(answers, index=False)
    sub = tmp_path / "sub.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "dog": [0.1, 0.9, 0.7], "cat": [0.9, 0.1, 0.3]}).to_csv(sub, index=False)
    assert score_submission(sub, answers, "accuracy") == pytest.approx(2 / 3)
    pd.DataFrame({"id": ["a", "b", "c"], "dog": ["x", "0.9", "0.7"], "cat": [0.9, 0.1, 0.3]}).to_csv(sub, index=False)
    with pytest.raises(ComptkError, match="its class columns dog, cat hold values that are not numbers"):
        score_submission(sub, answers, "accuracy")


def test_score_matches_the_label_column_by_name(tmp_path, answers):
    sub = _submission(tmp_path, [str(i) for i in range(10)], column="prediction")
    with pytest.raises(ComptkError, match="no column 'label' \\(the label column of .*columns are: id, prediction"):
        score_submission(sub, answers, "accuracy")
    both = pd.read_csv(sub, dtype=str).assign(label=["0"] * 10)  # 'prediction' first: must not be used
    both.to_csv(sub, index=False)
    assert score_submission(sub, answers, "accuracy") == pytest.approx(0.1)


def test_score_names_missing_extra_and_repeated_ids(tmp_path, answers):
    labels = [str(i) for i in range(10)]
    with pytest.raises(ComptkError, match="no prediction for id 'r9'"):
        score_submission(_submission(tmp_path, labels[:9]), answers, "accuracy")
    with pytest.raises(ComptkError, match="id 'x' is not in .*answers.csv"):
        score_submission(_submission(tmp_path, [*labels, "1"], ids=[*[f"r{i}" for i in range(10)], "x"]),
                         answers, "accuracy")
    with pytest.raises(ComptkError, match="id 'r0' appears more than once"):
        score_submission(_submission(tmp_path, [*labels, "1"], ids=[*[f"r{i}" for i in range(10)], "r0"]),
                         answers, "accuracy")


def test_score_accepts_a_run_class_absent_from_the_answers(tmp_path, answers):
    labels = [str(i) for i in range(10)]
    labels[3] = "10"  # a class of the run, not among these answers: wrong, but a class
    sub = _submission(tmp_path, labels)
    with pytest.raises(ComptkError, match="'10'"):
        score_submission(sub, answers, "accuracy")
    assert score_submission(sub, answers, "accuracy", classes=[str(i) for i in range(11)]) == pytest.approx(0.9)
    submissions = tmp_path / "work" / "submissions"
    submissions.mkdir(parents=True)
    shutil.copyfile(sub, submissions / "run1.csv")
    artifacts.save_json(artifacts.sidecar_of_submission(submissions / "run1.csv"),
                        {"classes": [str(i) for i in range(11)], "metric": "accuracy"})
    result = CliRunner().invoke(main, ["score", str(submissions / "run1.csv"), "--answers", str(answers)])
    assert result.exit_code == 0 and "accuracy 0.9000" in result.output, result.output


def test_score_refuses_answers_spelled_otherwise_than_the_run(tmp_path, answers):
    sub = _submission(tmp_path, [str(i) for i in range(10)])
    zero_padded = pd.read_csv(answers, dtype=str)
    zero_padded["label"] = zero_padded["label"].str.zfill(2)  # '07' where the run wrote '7'
    padded = tmp_path / "padded.csv"
    zero_padded.to_csv(padded, index=False)
    # with the run's classes (its sidecar) as without them: an error, not an accuracy of 0
    with pytest.raises(ComptkError, match="padded.csv: 10 answers are not among the run's classes: '00', '01'.*"
                                          "'00' is the run's '0'"):
        score_submission(sub, padded, "accuracy", classes=[str(i) for i in range(10)])
    with pytest.raises(ComptkError, match="10 predictions are not class labels"):
        score_submission(sub, padded, "accuracy")


def test_a_few_answers_of_a_class_the_run_never_saw_score_as_wrong_with_a_warning(tmp_path, answers, caplog):
    """A held-out class is not a respelling: scored (as wrong), said; half the answers or more is refused."""
    sub = _submission(tmp_path, [str(i) for i in range(10)])
    table = pd.read_csv(answers, dtype=str)
    table.loc[0, "label"] = "new"
    held_out = tmp_path / "held_out.csv"
    table.to_csv(held_out, index=False)
    classes = [str(i) for i in range(10)]
    with caplog.at_level(logging.WARNING, logger="comptk"):
        scored = score_submission(sub, held_out, "accuracy", classes=classes)
    assert scored == pytest.approx(score_submission(sub, answers, "accuracy", classes=classes) - 1 / len(table))
    assert "1 answers are not among the run's classes: 'new'" in caplog.text and "count as wrong" in caplog.text
    table["label"] = "new"
    table.to_csv(held_out, index=False)
    with pytest.raises(ComptkError, match=f"{len(table)} answers are not among the run's classes: 'new'"):
        score_submission(sub, held_out, "accuracy", classes=classes)


# ---------------------------------------------------------------- 7. weights files

def _save(tmp_path, state, name="w.safetensors") -> Path:
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.mark.parametrize("name, head", [("small_resnet", "head"), ("test_resnet", "fc")])
def test_a_weights_file_of_which_almost_nothing_fits_is_refused(tmp_path, name, head):
    source = timm.create_model(name, num_classes=7).state_dict()
    path = _save(tmp_path, {f"{head}.bias": source[f"{head}.bias"]})
    with pytest.raises(ComptkError, match=r"weights file .*w.safetensors: only 0 of model \w+'s \d+ tensors outside "
                                          r"the classifier head fit .*e.g. not loaded: "):
        create_model(resolve(None, {"model": name, "weights": str(path)}), n_classes=7)


@pytest.mark.parametrize("name", ["small_resnet", "test_resnet"])
def test_the_share_of_loaded_tensors_is_logged(tmp_path, caplog, name):
    path = _save(tmp_path, timm.create_model(name, num_classes=1000).state_dict())
    with caplog.at_level(logging.INFO, logger="comptk"):
        model = create_model(resolve(None, {"model": name, "weights": str(path)}), n_classes=7)
    n_body = len([k for k in model.state_dict() if not k.endswith("num_batches_tracked")]) - 2  # less the head
    assert f"loaded {n_body} of model {type(model).__name__}'s {n_body} tensors outside the classifier head" \
        in caplog.text


def test_a_comptk_checkpoint_loads_as_weights(tmp_path):
    trained = Classifier(timm.create_model("small_resnet", num_classes=3))  # keys 'model.stem...', as fold files
    path = _save(tmp_path, trained.state_dict())
    model = create_model(resolve(None, {"model": "small_resnet", "weights": str(path)}), n_classes=5)
    assert torch.equal(model.stem[0].weight, trained.model.stem[0].weight)


# ---------------------------------------------------------------- files that cannot be read

def test_a_non_utf8_declaration_is_one_line(tiny):
    path = tiny / "competition.toml"
    path.write_bytes(path.read_bytes().replace(b'data_dir = "data"', 'data_dir = "data"\n# caf\u00e9'.encode("cp1252")))
    with pytest.raises(ComptkError, match=r"competition.toml line 5: not UTF-8 text \(byte 0xe9\); save the file"):
        load_competition(tiny)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace("caf\u00e9".encode("cp1252"), b"cafe"))
    assert load_competition(tiny).name == "tiny"  # a UTF-8 BOM (Notepad) is fine


@pytest.mark.parametrize("side", [12, 20])  # 144 px: Pillow warns (limit 100); 400 px: Pillow refuses (> 2x)
def test_a_decompression_bomb_is_one_line_naming_the_file(tmp_path, monkeypatch, side):
    path = tmp_path / "big.png"
    Image.new("RGB", (side, side)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's warning must not escape load_images
        with pytest.raises(ComptkError, match=rf"cannot read image .*big.png: {side * side} pixels, above Pillow's "
                                              rf"decompression-bomb limit of 100 pixels"):
            load_images([path], 8)
        with pytest.raises(ComptkError, match="big.png"):
            decode_image(path)


def test_a_decompression_bomb_in_train_is_one_line(tiny, monkeypatch):
    Image.new("RGB", (40, 40)).save(tiny / "data/img/dog_2.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    result = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--quiet"])
    assert "dog_2.png" in _one_line_error(result) and not (tiny / "oof").exists()


# ---------------------------------------------------------------- folders that cannot be written

def _refuse(monkeypatch, folder: Path, code: int = errno.EACCES) -> None:
    """Make new files in ``folder`` fail as in a read-only folder (root ignores permission bits)."""
    real = artifacts.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if Path(kwargs.get("dir", "")).absolute() == folder.absolute():
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(artifacts.tempfile, "mkstemp", mkstemp)


def test_check_writable_probes_the_nearest_existing_folder(tmp_path, monkeypatch):
    artifacts.check_writable(tmp_path / "not" / "made" / "yet", tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing created, nothing left behind
    (tmp_path / "afile").write_text("x")
    with pytest.raises(WriteError, match="afile is a file, not a folder"):
        artifacts.check_writable(tmp_path / "afile" / "sub")
    _refuse(monkeypatch, tmp_path, errno.EROFS)
    with pytest.raises(WriteError, match=r"cannot write .*new: folder .* is not writable \(read-only file system\)"):
        artifacts.check_writable(tmp_path / "new")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_by_permission_bits(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="is not writable"):
            artifacts.check_writable(folder / "sub")
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("folder", ["submissions", "."])
def test_an_unwritable_output_folder_fails_before_training(tiny, monkeypatch, folder):
    """A read-only submissions/ used to fail after training, leaving oof/preds without a sidecar."""
    (tiny / "submissions").mkdir()
    _refuse(monkeypatch, (tiny / folder).absolute())
    result = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--quiet", "--folds", "2"])
    assert "is not writable" in _one_line_error(result)
    assert not any((tiny / d).exists() for d in ("oof", "preds", "runs", "folds"))


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "a.npy"
    artifacts.save_npy(target, np.arange(3))
    with pytest.raises(WriteError, match=r"cannot write .*a.npy: no space left on the device"), \
            artifacts.atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert [p.name for p in target.parent.iterdir()] == ["a.npy"] and np.load(target).tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError), artifacts.atomic_path(target):  # any other failure is not reworded
        raise RuntimeError("a bug")


def test_a_file_size_limit_is_caught_for_numpy_csv_and_safetensors(tmp_path):
    """Real short writes (RLIMIT_FSIZE; Python ignores SIGXFSZ): numpy and safetensors word them their own way."""
    script = f"""
import resource, numpy as np, pandas as pd, torch
from safetensors.torch import save_file
from comptk import artifacts
from comptk.errors import WriteError
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
folder = {str(tmp_path)!r}
def tensors(tmp):
    save_file({{"a": torch.zeros(10000)}}, str(tmp))
for name, write in (("a.npy", lambda p: artifacts.save_npy(p, np.zeros(10000))),
                    ("b.csv", lambda p: artifacts.save_csv(p, pd.DataFrame({{"x": range(10000)}}))),
                    ("c.safetensors", None)):
    try:
        if write is None:
            with artifacts.atomic_path(folder + "/" + name) as tmp:
                tensors(tmp)
        else:
            write(folder + "/" + name)
    except WriteError as exc:
        print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3, done.stdout + done.stderr
    for line, name in zip(lines, ("a.npy", "b.csv", "c.safetensors")):
        assert line.startswith(f"cannot write {tmp_path / name}: ") and ("file too large" in line or "part" in line)
    assert list(tmp_path.iterdir()) == []  # no temporary files left


def test_the_image_cache_still_tolerates_a_failed_write(tiny, monkeypatch):
    data = _read(tiny)

    def full(path, array):
        raise WriteError(f"cannot write {path}: no space left on the device")

    monkeypatch.setattr(artifacts, "save_npy", full)
    cached = load_images_cached(data.train.paths, 12, workdir=tiny, label="tiny-train")
    assert cached.status == "unwritable" and cached.images.shape == (18, 12, 12, 3)


# ---------------------------------------------------------------- ensemble

def test_a_truncated_member_npy_is_named(tiny_work):  # noqa: F811 - the fixture
    workdir, _, write = tiny_work
    a, b = write("a"), write("b")
    b.write_bytes(b.read_bytes()[:100])
    with pytest.raises(ComptkError, match=r"oof/b.npy: not a readable .npy array \(truncated"):
        blend([a, b], out=workdir / "submissions" / "x.csv", workdir=workdir, method="mean", compare=False)
    result = CliRunner().invoke(main, ["ensemble", str(a), str(b), "--out", str(workdir / "submissions/x.csv"),
                                       "--workdir", str(workdir), "--method", "mean", "--no-compare"])
    assert "b.npy: not a readable .npy array" in _one_line_error(result)


def test_a_blend_never_replaces_a_training_run(tiny_work):  # noqa: F811
    workdir, _, write = tiny_work
    members = [write("a"), write("b"), write("trained")]  # 'trained': a run's sidecar has no kind = "blend"
    before = artifacts.RunPaths(workdir, "trained").oof.read_bytes()
    with pytest.raises(ComptkError, match="'trained' is a training run .*even with --force"):
        blend(members[:2], out=workdir / "submissions" / "trained.csv", workdir=workdir, method="mean",
              compare=False, force=True)
    assert artifacts.RunPaths(workdir, "trained").oof.read_bytes() == before
    artifacts.RunPaths(workdir, "partial").run_dir.mkdir(parents=True)  # a run folder, no sidecar yet
    with pytest.raises(ComptkError, match="'partial' is a training run"):
        blend(members[:2], out=workdir / "submissions" / "partial.csv", workdir=workdir, method="mean",
              compare=False, force=True)
    first = blend(members[:2], out=workdir / "submissions" / "mix.csv", workdir=workdir, method="mean", compare=False)
    again = blend(members[:2], out=workdir / "submissions" / "mix.csv", workdir=workdir, method="mean", compare=False,
                  force=True)  # a blend may replace a blend
    assert again.name == first.name == "mix"


def test_meta_is_checked_before_anything_is_called(tmp_path, monkeypatch):
    (tmp_path / "sneaky.py").write_text(
        "CALLS = []\n"
        "class NotAModel:\n    def __init__(self, **kw):\n        CALLS.append('class')\n"
        "def factory(**kw):\n    CALLS.append('function')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import sneaky

    for name in ("sneaky.NotAModel", "sneaky.factory", "os.system", "sklearn.linear_model.LinearRegression"):
        with pytest.raises(ComptkError, match=f"--meta '{name}' is not a scikit-learn classifier class"):
            make_meta(name, {}, 0)
    assert sneaky.CALLS == []
    assert make_meta("sklearn.ensemble.RandomForestClassifier", {}, 3).random_state == 3


def test_a_respelling_is_a_whole_number_written_otherwise_or_spaces_not_case_or_a_long_number():
    from comptk.submission import _plain_label

    assert _plain_label("007") == _plain_label(" 7") == _plain_label("7.0") == "7"
    assert _plain_label("A") != _plain_label("a")  # two classes may differ by case only
    assert _plain_label("12345678901234567890") != _plain_label("12345678901234567891")  # no float rounding
    assert _plain_label("1e3") != _plain_label("1000") and _plain_label("٣") == "٣"
