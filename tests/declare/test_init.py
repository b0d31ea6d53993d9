"""comptk init: a declaration from a contest as downloaded (Kaggle zip, Dacon folder, folder per class),
every guess explained; then train and ensemble on it (the round trip, minus predict)."""

from __future__ import annotations

import io
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from comptk.cli import main
from comptk.competition import load_competition
from comptk.data.layouts import read_data
from comptk.declare import init_competition
from comptk.errors import ComptkError

CLASSES = ("cat", "dog", "fox")
TINY = ["--folds", "2", "--epochs", "1", "--img-size", "16", "--batch-size", "8", "--quiet", "--no-plots"]


def _png(c: int, size: int, rng: np.random.Generator, mode: str = "RGB") -> bytes:
    pixels = np.full((size, size, 3), 40, np.uint8)
    pixels[..., c % 3] = 200
    pixels = np.clip(pixels + rng.integers(0, 30, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def kaggle_zip(path: Path, *, counts=(12, 8, 4), train_size=32, test_size=20, n_test=9, top="contest") -> Path:
    """A contest zip in Kaggle's layout, nested one folder deep: train.csv (id,label), test.csv (id),
    sample_submission.csv (id,label; ids in another order), train/{id}.png, test/{id}.png."""
    rng = np.random.default_rng(0)
    rows, test_ids = [], [f"t{j:03d}" for j in range(n_test)]
    with zipfile.ZipFile(path, "w") as archive:
        for c, n in enumerate(counts):
            for i in range(n):
                id_ = f"{CLASSES[c][0]}{i:03d}"
                archive.writestr(f"{top}/train/{id_}.png", _png(c, train_size, rng))
                rows.append((id_, CLASSES[c]))
        for j, id_ in enumerate(test_ids):
            archive.writestr(f"{top}/test/{id_}.png", _png(j, test_size, rng))
        archive.writestr(f"{top}/train.csv", pd.DataFrame(rows, columns=["id", "label"]).to_csv(index=False))
        archive.writestr(f"{top}/test.csv", pd.DataFrame({"id": test_ids}).to_csv(index=False))
        sample = pd.DataFrame({"id": test_ids[::-1], "label": CLASSES[0]})  # not the test CSV's order
        archive.writestr(f"{top}/sample_submission.csv", sample.to_csv(index=False))
    return path


def class_folders(root: Path, *, counts=(8, 6), size=24) -> Path:
    """train/CLASS/*.jpg, val/CLASS/*.jpg and test/*.jpg."""
    rng = np.random.default_rng(1)
    for split, scale in (("train", 1), ("val", 0.5)):
        for c, n in enumerate(counts):
            folder = root / split / CLASSES[c]
            folder.mkdir(parents=True)
            for i in range(max(2, int(n * scale))):
                Image.open(io.BytesIO(_png(c, size, rng))).save(folder / f"{i}.jpg", quality=95)
    (root / "test").mkdir()
    for j in range(5):
        Image.open(io.BytesIO(_png(j, size, rng, "L"))).save(root / "test" / f"q{j}.jpg", quality=95)
    return root


def dacon_folder(root: Path, *, extra_path_column: bool = False) -> Path:
    """Dacon's layout: train.csv (id,img_path,label) with ./train/ paths, test.csv (id,img_path), sample."""
    rng = np.random.default_rng(2)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows = []
    for i in range(12):
        path = f"./train/TRAIN_{i:03d}.png"
        (root / path).write_bytes(_png(i % 2, 28, rng))
        rows.append({"id": f"TRAIN_{i:03d}", "img_path": path, "label": ["ok", "bad"][i % 2]})
    train = pd.DataFrame(rows)
    if extra_path_column:
        train["copy_path"] = train["img_path"]
    train.to_csv(root / "train.csv", index=False)
    test = pd.DataFrame({"id": [f"TEST_{j:03d}" for j in range(4)], "img_path": [f"./test/TEST_{j:03d}.png"
                                                                               for j in range(4)]})
    for path in test["img_path"]:
        (root / path).write_bytes(_png(0, 28, rng))
    if extra_path_column:
        test["copy_path"] = test["img_path"]
    test.to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "label": "ok"}).to_csv(root / "sample_submission.csv", index=False)
    return root


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_kaggle_zip_round_trip_init_train_ensemble(tmp_path):
    work = tmp_path / "work"
    contest = kaggle_zip(tmp_path / "contest.zip")
    result = invoke("init", "kag", "--data", contest, "--workdir", work)
    assert result.exit_code == 0, result.output
    out = result.output
    # every guess is said, with its reason
    assert "unwrapped" in out and "image_template \"{id}.png\"" in out and "file stems" in out
    assert "'label': the column sample_submission.csv predicts" in out
    assert "classes   3: cat 12, dog 8, fox 4; largest / smallest = 3" in out
    assert "median 32x32 px" in out and "median 20x20 px" in out
    assert "[test_time] crop = 0.62" in out
    assert "metric    accuracy: ASSUMED" in out
    declaration = work / "competitions/kag/competition.toml"
    raw = tomllib.loads(declaration.read_text())
    assert raw["data_dir"] == "data/kag" and (work / "data/kag/train.csv").is_file()
    assert raw["columns"] == {"id": "id", "image_template": "{id}.png", "label": "label"}
    assert raw["files"]["train_images"] == "train" and raw["test_time"] == {"crop": 0.62}
    assert set(raw["train"]) == {"model", "pretrained", "img_size", "epochs", "batch_size", "lr"}
    assert "# ASSUMED" in declaration.read_text()
    comp = load_competition(declaration)
    assert comp.auto_train == ()  # init wrote values, not "auto"

    for run, model in (("a", "small_resnet"), ("b", "small_resnet_wide")):
        trained = invoke("train", "kag", "--workdir", work, "--name", run, "--model", model, *TINY)
        assert trained.exit_code == 0, trained.output
    blended = invoke("ensemble", work / "oof/a.npy", work / "oof/b.npy", "--out", work / "submissions/blend.csv",
                     "--workdir", work, "--method", "mean", "--no-compare")
    assert blended.exit_code == 0, blended.output
    sample = pd.read_csv(work / "data/kag/sample_submission.csv", dtype=str)
    # the run predicts its own test CSV again: ids are file stems, the paths come from the image template
    from comptk.predict import predict_table

    again = predict_table("a", csv=work / "data/kag/test.csv", workdir=work, device="cpu", proba=True)
    proba = again.frame[[c for c in again.frame.columns if c.startswith("proba_")]].to_numpy()
    assert again.frame["id"].tolist() == pd.read_csv(work / "data/kag/test.csv", dtype=str)["id"].tolist()
    assert np.allclose(proba, np.load(work / "preds/a.npy"), atol=1e-5)
    for name in ("a", "b", "blend"):
        submission = pd.read_csv(work / f"submissions/{name}.csv", dtype=str)
        assert list(submission.columns) == list(sample.columns)
        assert submission["id"].tolist() == sample["id"].tolist()  # same ids, same order
        assert set(submission["label"]) <= set(CLASSES)


def test_init_never_overwrites_without_force_and_reuses_the_extraction(tmp_path):
    work = tmp_path / "work"
    contest = kaggle_zip(tmp_path / "contest.zip")
    init_competition("kag", contest, workdir=work, metric="macro_f1")
    declaration = work / "competitions/kag/competition.toml"
    declaration.write_text(declaration.read_text() + "# my edit\n")
    result = invoke("init", "kag", "--data", contest, "--workdir", work)
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert declaration.read_text().endswith("# my edit\n")
    again = init_competition("kag", contest, workdir=work, force=True, metric="macro_f1")
    assert "my edit" not in again.path.read_text() and 'metric = "macro_f1"' in again.text
    # a data folder that init did not extract is never replaced
    other = kaggle_zip(tmp_path / "other.zip", top="x")
    declaration.unlink()
    with pytest.raises(ComptkError, match="was extracted from another zip"):
        init_competition("kag", other, workdir=work)
    (work / "data/mine").mkdir(parents=True)
    (work / "data/mine/notes.txt").write_text("keep")
    with pytest.raises(ComptkError, match="was not extracted by `comptk init`"):
        init_competition("mine", other, workdir=work, force=True)
    assert (work / "data/mine/notes.txt").read_text() == "keep"
    with pytest.raises(ComptkError, match="exists; pass --force"):
        init_competition("mine", other, workdir=work)


def test_a_zip_member_escaping_the_target_is_refused_before_anything_is_written(tmp_path):
    for name in ("../evil.csv", "/etc/evil.csv", "a/../../evil.csv", "C:/evil.csv"):
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("train.csv", "id,label\n")
            archive.writestr(name, "x")
        with pytest.raises(ComptkError, match="would be written outside the data folder"):
            init_competition("bad", bad, workdir=tmp_path / "work")
        assert not (tmp_path / "work/data/bad").exists() and not (tmp_path / "evil.csv").exists()
    (tmp_path / "not.zip").write_text("not a zip")
    result = invoke("init", "x", "--data", tmp_path / "not.zip", "--workdir", tmp_path / "work")
    assert result.exit_code == 2 and "not a readable zip file" in result.output


def test_inner_zips_are_extracted_one_level(tmp_path):
    rng = np.random.default_rng(3)
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        for i in range(6):
            archive.writestr(f"train/{i}.png", _png(i % 2, 16, rng))
    test_inner = io.BytesIO()
    with zipfile.ZipFile(test_inner, "w") as archive:
        for j in range(3):
            archive.writestr(f"{j}.png", _png(j, 16, rng))  # no folder of its own: goes into test/
    path = tmp_path / "nested.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.zip", inner.getvalue())
        archive.writestr("test.zip", test_inner.getvalue())
        archive.writestr("train.csv", "image,species\n" + "".join(f"{i}.png,{'ab'[i % 2]}\n" for i in range(6)))
        archive.writestr("sample_submission.csv", "image,species\n0.png,a\n1.png,a\n2.png,a\n")
    result = init_competition("nested", path, workdir=tmp_path / "work", metric="accuracy")
    text = "\n".join(result.summary)
    assert "inner train.zip extracted" in text and "no test CSV: sample_submission.csv lists the test ids" in text
    comp = load_competition(result.path)
    assert comp.columns.image == "image" and comp.files.train_images == "train" and comp.files.test_images == "test"
    data = read_data(comp, comp.data_path(tmp_path / "work"))
    assert len(data.train.ids) == 6 and len(data.test.ids) == 3


def test_dacon_folder_and_a_probability_sample(tmp_path):
    root = dacon_folder(tmp_path / "dacon")
    result = init_competition("dacon", root, workdir=tmp_path / "work", metric="macro_f1")
    raw = tomllib.loads(result.text)
    assert raw["columns"] == {"id": "id", "image": "img_path", "label": "label"}
    assert "train_images" not in raw["files"] and "test_time" not in raw
    assert raw["data_dir"] == str(root.resolve())  # outside the work directory: absolute
    text = "\n".join(result.summary)
    assert "metric    macro_f1: given with --metric" in text and "no crop" in text
    # a sample with one probability column per class: the label column is found by its values
    pd.DataFrame({"id": [f"TEST_{j:03d}" for j in range(4)], "bad": 0.5, "ok": 0.5}).to_csv(
        root / "sample_submission.csv", index=False)
    train = pd.read_csv(root / "train.csv", dtype=str).rename(columns={"label": "quality"})
    train.to_csv(root / "train.csv", index=False)
    result = init_competition("dacon", root, workdir=tmp_path / "work", force=True)
    assert "'quality': its values are the class columns of sample_submission.csv" in result.text


def test_ambiguous_or_missing_columns_are_one_line_errors_naming_the_option(tmp_path):
    root = dacon_folder(tmp_path / "two", extra_path_column=True)
    result = invoke("init", "two", "--data", root, "--workdir", tmp_path / "work")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "columns img_path, copy_path all name image files; pass --image-col" in result.output
    assert not (tmp_path / "work/competitions/two").exists()
    settled = invoke("init", "two", "--data", root, "--workdir", tmp_path / "work", "--image-col", "copy_path")
    assert settled.exit_code == 0, settled.output
    assert tomllib.loads((tmp_path / "work/competitions/two/competition.toml").read_text())["columns"]["image"] == \
        "copy_path"

    root = dacon_folder(tmp_path / "nolabel")
    pd.read_csv(root / "train.csv").assign(label2=lambda f: f["label"]).rename(columns={"label": "l1"}).to_csv(
        root / "train.csv", index=False)
    result = invoke("init", "nolabel", "--data", root, "--workdir", tmp_path / "work")
    assert result.exit_code == 2 and "could each be the label column; pass --label-col" in result.output
    assert invoke("init", "nolabel", "--data", root, "--workdir", tmp_path / "work",
                  "--label-col", "l1").exit_code == 0

    empty = tmp_path / "empty"
    (empty / "stuff").mkdir(parents=True)
    (empty / "notes.txt").write_text("x")
    result = invoke("init", "empty", "--data", empty, "--workdir", tmp_path / "work")
    assert result.exit_code == 2 and "pass --train" in result.output
    result = invoke("init", "bad name", "--data", empty, "--workdir", tmp_path / "work")
    assert result.exit_code == 2 and "competition name 'bad name'" in result.output
    result = invoke("init", "m", "--data", root, "--workdir", tmp_path / "work", "--metric", "macro-f1")
    assert result.exit_code == 2 and "did you mean 'macro_f1'" in result.output


def test_folder_per_class_contest_init_then_train(tmp_path):
    root = class_folders(tmp_path / "food")
    work = tmp_path / "work"
    result = invoke("init", "food", "--data", root, "--workdir", work)
    assert result.exit_code == 0, result.output
    assert "folders: train/ holds 2 class folders" in result.output
    assert "val: the same class folders, labelled too" in result.output
    assert "modes L 5" in result.output  # the grey test images are said
    raw = tomllib.loads((work / "competitions/food/competition.toml").read_text())
    assert raw["layout"] == "folders" and raw["files"] == {"train": "train", "test": "test", "extra_train": ["val"]}
    trained = invoke("train", "food", "--workdir", work, "--name", "f", *TINY)
    assert trained.exit_code == 0, trained.output
    submission = pd.read_csv(work / "submissions/f.csv", dtype=str)
    assert sorted(submission["id"]) == [f"q{j}" for j in range(5)] and list(submission.columns) == ["id", "label"]


def test_image_template_in_a_declaration(tmp_path):
    work = tmp_path / "work"
    init_competition("kag", kaggle_zip(tmp_path / "c.zip"), workdir=work)
    path = work / "competitions/kag/competition.toml"
    text = path.read_text()
    path.write_text(text.replace('image_template = "{id}.png"', 'image_template = "{id}.png"\nimage = "id"'))
    with pytest.raises(ComptkError, match="either 'image'.*or 'image_template'"):
        load_competition(path)
    path.write_text(text.replace('image_template = "{id}.png"', 'image_template = "{name}.png"'))
    comp = load_competition(path)
    with pytest.raises(ComptkError, match=r"no column 'name' \(declared as the image_template"):
        read_data(comp, comp.data_path(work))
    path.write_text(text.replace('image_template = "{id}.png"', 'image_template = "{id}.jpg"'))
    comp = load_competition(path)  # another extension: each stem's only image file, c000.png
    assert {p.name for p in read_data(comp, comp.data_path(work)).train.paths[:1]} == {"c000.png"}
    path.write_text(text.replace('image_template = "{id}.png"', 'image_template = "{id}_x.png"'))
    comp = load_competition(path)
    with pytest.raises(ComptkError, match=r"line 2 \(id 'c000'\): image file not found: .*train/c000_x.png"):
        read_data(comp, comp.data_path(work))


def test_unreadable_images_are_said_in_the_summary(tmp_path):
    root = dacon_folder(tmp_path / "d")
    (root / "test" / "TEST_002.png").write_bytes(b"not a png")
    result = init_competition("d", root, workdir=tmp_path / "work")
    assert any("1 unreadable, e.g. " in line and "TEST_002.png" in line for line in result.summary)


def test_a_csv_of_test_labels_beside_class_folders_is_never_taken_as_the_train_table(tmp_path):
    """A stand-in's answers.csv (or any CSV listing the test ids) must not become the train table: that would
    train on the test set's labels."""
    root = class_folders(tmp_path / "food")
    ids = [f"q{j}" for j in range(5)]
    pd.DataFrame({"id": ids, "label": CLASSES[0]}).to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids, "label": CLASSES[1]}).to_csv(root / "answers.csv", index=False)
    work = tmp_path / "work"
    result = invoke("init", "food", "--data", root, "--workdir", work)
    assert result.exit_code == 0, result.output
    raw = tomllib.loads((work / "competitions/food/competition.toml").read_text())
    assert raw["layout"] == "folders" and raw["files"]["train"] == "train", result.output


def test_test_ids_that_repeat_train_ids_find_the_test_folder_not_the_train_one(tmp_path):
    """Test ids 0000.. that are also train ids name files in train/ too: the test images are the other folder's."""
    root, rng = tmp_path / "overlap", np.random.default_rng(3)
    for split, n in (("train", 12), ("unlabeled", 6)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            (root / split / f"{i:04d}.png").write_bytes(_png(i % 3, 16, rng))
    pd.DataFrame({"id": [f"{i:04d}" for i in range(12)], "label": [CLASSES[i % 3] for i in range(12)]}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": [f"{i:04d}" for i in range(6)]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": [f"{i:04d}" for i in range(6)], "label": "cat"}).to_csv(root / "sample_submission.csv",
                                                                                index=False)
    result = invoke("init", "ov", "--data", root, "--workdir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    comp = load_competition(tmp_path / "work/competitions/ov/competition.toml")
    data = read_data(comp, root)
    assert {p.parent.name for p in data.test.paths} == {"unlabeled"}
    # declared by hand onto the train folder: refused, not predicted on train images
    toml = tmp_path / "work/competitions/ov/competition.toml"
    toml.write_text(toml.read_text().replace('test_images = "unlabeled"', 'test_images = "train"'))
    with pytest.raises(ComptkError, match="test row '0000' and train row '0000' are the same image file"):
        read_data(load_competition(toml), root)


def test_a_missing_image_or_a_sample_of_other_ids_is_named(tmp_path):
    root = dacon_folder(tmp_path / "miss")
    (root / "test/TEST_002.png").unlink()
    result = invoke("init", "miss", "--data", root, "--workdir", tmp_path / "work")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "3 of the 4 values looked at name image files under the data folder, but not './test/TEST_002.png'" \
        in result.output and "restore the file or remove its row" in result.output

    root = dacon_folder(tmp_path / "other")
    sample = pd.read_csv(root / "sample_submission.csv")
    pd.concat([sample, pd.DataFrame({"id": ["TEST_999"], "label": ["ok"]})]).to_csv(root / "sample_submission.csv",
                                                                                   index=False)
    result = invoke("init", "other", "--data", root, "--workdir", tmp_path / "work")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert ("sample_submission.csv and test.csv list other test images: their 'id' columns share 4 ids, 1 are in "
            "sample_submission.csv only and 0 in test.csv only (e.g. 'TEST_999' is in sample_submission.csv only)"
            in result.output)


def test_init_says_what_train_would_refuse_before_it_is_run(tmp_path):
    root = dacon_folder(tmp_path / "rare")
    frame = pd.read_csv(root / "train.csv")
    frame.loc[3, "label"] = "rare"
    frame.to_csv(root / "train.csv", index=False)
    (root / "train/TRAIN_005.png").write_bytes(b"")  # a zero-byte image
    result = invoke("init", "rare", "--data", root, "--workdir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    assert "fix first 1 class(es) with fewer images than the 5 folds, smallest 'rare' with 1: a class of 1 image" \
        in result.output
    assert "fix first " + str(root / "train/TRAIN_005.png") + " is not a readable image" in result.output
    assert "fix first" not in invoke("init", "ok", "--data", dacon_folder(tmp_path / "ok"), "--workdir",
                                     tmp_path / "work").output
    folders = class_folders(tmp_path / "folders")
    (folders / "train" / "empty").mkdir()  # a class folder with no images: make_folds leaves it out, so no fix
    result = invoke("init", "f", "--data", folders, "--workdir", tmp_path / "work")
    assert result.exit_code == 0 and "fix first" not in result.output, result.output
    assert "! 1 declared class(es) with no training image, e.g. 'empty'" in result.output  # as inspect and train say


def test_a_zip_with_a_readme_beside_its_top_folder_finds_the_data_in_the_folder(tmp_path):
    path = kaggle_zip(tmp_path / "c.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("README.md", "# the contest\n")
        archive.writestr("LICENSE", "CC BY 4.0\n")
    result = invoke("init", "c", "--data", path, "--workdir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    assert "the files sit in 'contest/' (beside 2 document(s)): that folder is the data folder" in result.output
    # a CSV named README beside the folder is data, not a document: the folder given stays the data folder
    from comptk.declare.detect import unwrap

    root = tmp_path / "work" / "data" / "c"
    (root.parent / "README.csv").write_text("a,b\n")
    assert unwrap(root.parent)[1] == ""


def test_ids_as_stems_with_mixed_extensions_find_each_stems_image(tmp_path):
    """A download mixing .jpg, .JPG and .png: image_template "{id}.jpg" finds each id's only image file."""
    root, rng = tmp_path / "mixed", np.random.default_rng(4)
    for split, n in (("train", 12), ("test", 4)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            suffix = [".jpg", ".JPG", ".png"][i % 3] if i % 2 else ".jpg"
            image = Image.open(io.BytesIO(_png(i % 3, 16, rng))).convert("RGB")
            image.save(root / split / f"{split[:2]}{i:03d}{suffix}", format="PNG" if suffix == ".png" else "JPEG")
    pd.DataFrame({"id": [f"tr{i:03d}" for i in range(12)], "label": [CLASSES[i % 3] for i in range(12)]}).to_csv(
        root / "train.csv", index=False)
    pd.DataFrame({"id": [f"te{i:03d}" for i in range(4)], "label": "cat"}).to_csv(root / "sample_submission.csv",
                                                                                  index=False)
    result = invoke("init", "mixed", "--data", root, "--workdir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    toml = tmp_path / "work/competitions/mixed/competition.toml"
    assert 'image_template = "{id}.jpg"' in toml.read_text()
    data = read_data(load_competition(toml), root)
    assert all(p.is_file() for p in data.train.paths + data.test.paths)
    assert {p.suffix for p in data.train.paths} == {".jpg", ".JPG", ".png"}
    # a stem with two image files, neither the template's: which one is meant cannot be told
    assert (root / "train" / "tr001.JPG").is_file()
    Image.new("RGB", (16, 16)).save(root / "train" / "tr001.png")
    with pytest.raises(ComptkError, match=r"train.csv line 3 \(id 'tr001'\): image file not found: .*tr001.jpg "
                                          r"\(tr001.JPG and tr001.png have its stem"):
        read_data(load_competition(toml), root)
