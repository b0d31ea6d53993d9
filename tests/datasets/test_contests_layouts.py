"""The contest layouts' rules and their one-line errors: person folders, [label_fixes], extra labelled
splits, test ids named by file name, and the stand-in command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from comptk.cli import main
from comptk.competition import BUNDLED_DIR, load_competition
from comptk.data.labelers import age_band, mask_class
from comptk.data.layouts import read_data
from comptk.datasets import prepare
from comptk.errors import ComptkError


@pytest.fixture(scope="module")
def mask_data(tmp_path_factory) -> Path:
    return prepare("mask", tmp_path_factory.mktemp("mask"), train_n=84, test_n=84)


@pytest.fixture
def mask_copy(mask_data, tmp_path) -> Path:
    copy = tmp_path / "mask"
    shutil.copytree(mask_data, copy)
    return copy


def declaration(tmp_path: Path, name: str, replace: tuple[str, str] = ("", ""), append: str = "") -> Path:
    """A copy of a shipped declaration with one edit."""
    text = (BUNDLED_DIR / name / "competition.toml").read_text()
    if replace[0]:
        assert replace[0] in text
        text = text.replace(*replace)
    folder = tmp_path / "decl" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "competition.toml").write_text(text + append)
    return folder


def read_error(comp, data_dir) -> str:
    with pytest.raises(ComptkError) as info:
        read_data(comp, data_dir)
    return str(info.value)


def test_mask_class_table():
    assert [age_band(a) for a in (18, 29, 30, 59, 60, 75)] == [0, 0, 1, 1, 2, 2]
    assert mask_class(0, 0, 20) == 0 and mask_class(0, 1, 45) == 4 and mask_class(1, 0, 30) == 7
    assert mask_class(2, 1, 60) == 17
    assert sorted(mask_class(m, g, a) for m in range(3) for g in range(2) for a in (20, 40, 60)) == list(range(18))


def test_person_folders_expand_to_seven_rows_per_person(mask_data):
    data = read_data(load_competition("mask"), mask_data)
    people = pd.read_csv(mask_data / "train/train.csv", dtype=str)
    assert len(data.train.ids) == 7 * len(people)
    first = people.iloc[0]
    rows = [i for i, g in enumerate(data.train.groups) if g == first["path"]]
    photos = ("mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask", "normal")
    assert [data.train.ids[i] for i in rows] == [f"{first['path']}/{s}" for s in photos]
    gender = ("male", "female").index(first["gender"])
    expected = [mask_class(0, gender, int(first["age"]))] * 5 + [mask_class(1, gender, int(first["age"])),
                                                                 mask_class(2, gender, int(first["age"]))]
    assert [int(data.classes[data.train.labels[i]]) for i in rows] == expected
    assert data.test.ids[0].endswith(".jpg") and len(data.test.ids) == len(data.sample_submission)


def test_malformed_person_folders_are_one_line_errors(mask_copy):
    comp = load_competition("mask")
    people = pd.read_csv(mask_copy / "train/train.csv", dtype=str)
    folder = mask_copy / "train/images" / people["path"][0]
    normal = next(folder.glob("normal.*"))
    normal.rename(folder / "normal_photo.jpg")
    message = read_error(comp, mask_copy)
    assert "line 2" in message and "unexpected photo 'normal_photo.jpg'" in message
    (folder / "normal_photo.jpg").unlink()
    message = read_error(comp, mask_copy)
    assert "line 2" in message and "lacks photo 'normal'" in message and str(folder) in message
    shutil.copyfile(next(folder.glob("mask2.*")), folder / "normal.jpg")
    shutil.copyfile(folder / "normal.jpg", folder / "normal.png")
    assert "has photo 'normal' twice" in read_error(comp, mask_copy)
    (folder / "normal.png").unlink()
    assert read_data(comp, mask_copy)  # repaired

    broken = people.copy()
    broken.loc[1, "gender"] = "F"
    broken.to_csv(mask_copy / "train/train.csv", index=False)
    message = read_error(comp, mask_copy)
    assert "line 3" in message and "gender 'F'" in message
    broken = people.copy()
    broken.loc[2, "path"] = "999999_female_Asian_33"
    broken.to_csv(mask_copy / "train/train.csv", index=False)
    message = read_error(comp, mask_copy)
    assert "line 4" in message and "person folder not found" in message and "999999_female_Asian_33" in message
    people.drop(columns="age").to_csv(mask_copy / "train/train.csv", index=False)
    assert "no column 'age'" in read_error(comp, mask_copy)


def test_person_folder_declarations_are_checked(tmp_path):
    with pytest.raises(ComptkError, match="did you mean 'mask-gender-age'"):
        load_competition(declaration(tmp_path, "mask", ('labels = "mask-gender-age"', 'labels = "mask-gender"')))
    with pytest.raises(ComptkError, match=r"needs 'group'"):
        load_competition(declaration(tmp_path, "mask", ('group = "path"', "")))
    with pytest.raises(ComptkError, match=r"is for layout = \"person-folders\""):
        load_competition(declaration(tmp_path, "artist", append='\n[person_folders]\nlabels = "mask-gender-age"\n'))
    with pytest.raises(ComptkError, match="'extra_train' is for the folders layout only"):
        load_competition(declaration(tmp_path, "artist",
                                     ('train = "train.csv"', 'train = "train.csv"\nextra_train = ["val"]')))


def test_label_fixes_are_checked_against_the_data(tmp_path):
    data = prepare("artist", tmp_path, train_n=60, test_n=5)
    unknown_id = ("[label_fixes]\n", '[label_fixes]\n"99999" = "Raphael"\n')
    comp = load_competition(declaration(tmp_path, "artist", unknown_id))
    message = read_error(comp, data)
    assert "[label_fixes]: id '99999' is not a train id" in message and "train.csv" in message
    comp = load_competition(declaration(tmp_path, "artist", ("[label_fixes]\n", '[label_fixes]\n"3" = "Rafael"\n')))
    message = read_error(comp, data)
    assert "'3' -> 'Rafael' is not a label" in message and "did you mean 'Raphael'" in message
    with pytest.raises(ComptkError, match="must map to a label name"):
        load_competition(declaration(tmp_path, "artist", ("[label_fixes]\n", '[label_fixes]\n"3" = 7\n')))
    folder = declaration(tmp_path, "artist", ("[label_fixes]\n", '[label_fixes]\n"3" = "Rafael"\n'))
    result = CliRunner().invoke(main, ["train", str(folder), "--workdir", str(tmp_path), "--data", str(data),
                                       "--quiet"])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "'Rafael' is not a label" in result.output
    assert not (tmp_path / "oof").exists()


def test_label_fixes_work_in_the_folders_layout(tmp_path):
    data = prepare("cifar10", tmp_path, train_n=40, test_n=5)
    comp = load_competition(declaration(tmp_path, "cifar10", append='\n[label_fixes]\n"bird/0000" = "frog"\n'))
    loaded = read_data(comp, data)
    row = loaded.train.ids.tolist().index("bird/0000")
    assert loaded.classes[loaded.train.labels[row]] == "frog"
    assert loaded.train.label_fixes == (("bird/0000", "bird", "frog"),)


def test_folder_test_ids_follow_the_sample_submission(tmp_path):
    data = prepare("cifar10", tmp_path, train_n=40, test_n=5)
    comp = load_competition("cifar10")
    assert read_data(comp, data).test.ids.tolist() == [f"{i:04d}.jpg" for i in range(5)]
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str)
    sample.assign(id=sample["id"].str[:-4]).to_csv(data / "sample_submission.csv", index=False)
    assert read_data(comp, data).test.ids.tolist() == [f"{i:04d}" for i in range(5)]
    sample.assign(id="x" + sample["id"]).to_csv(data / "sample_submission.csv", index=False)
    assert "ids differ from the test table's" in read_error(comp, data)


def test_prepare_names_the_stand_ins_and_refuses_to_overwrite(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["prepare", "masks", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "did you mean 'mask'" in result.output
    for name in ("artist", "kfood", "mask", "cifar10", "illustration"):
        assert name in result.output
    prepare("cifar10", tmp_path, train_n=20, test_n=5)
    result = runner.invoke(main, ["prepare", "cifar10", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "already exists; pass --force" in result.output
    result = runner.invoke(main, ["prepare", "cifar10", "--workdir", str(tmp_path), "--train-n", "0", "--force"])
    assert result.exit_code == 2 and "--train-n must be a positive number" in result.output
    assert (tmp_path / "data/cifar10/answers.csv").is_file()  # the earlier build is untouched
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]  # no half-built folder left


def test_stand_ins_are_seeded(tmp_path):
    a = prepare("illustration", tmp_path / "a", train_n=40, test_n=10, seed=3)
    b = prepare("illustration", tmp_path / "b", train_n=40, test_n=10, seed=3)
    for name in ("train.csv", "answers.csv", "standin_truth.csv", "train/TRAIN_00007.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_artist_test_images_are_half_crops(tmp_path):
    from PIL import Image

    data = prepare("artist", tmp_path, train_n=60, test_n=20)
    train_sides = [max(Image.open(data / p).size) for p in pd.read_csv(data / "train.csv")["img_path"]]
    test_sides = [max(Image.open(data / p).size) for p in pd.read_csv(data / "test.csv")["img_path"]]
    assert min(train_sides) >= 64 and max(test_sides) <= 64 and min(test_sides) >= 32
    assert {Image.open(data / p).mode for p in pd.read_csv(data / "train.csv")["img_path"]} <= {"RGB", "L"}


def test_folder_images_that_differ_only_in_extension_are_an_error(tmp_path):
    data = prepare("cifar10", tmp_path, train_n=40, test_n=5)
    (data / "train/bird/.ipynb_checkpoints").mkdir()  # hidden files and folders are never images
    shutil.copyfile(data / "train/bird/0000.jpg", data / "train/bird/.ipynb_checkpoints/0000.jpg")
    shutil.copyfile(data / "train/bird/0000.jpg", data / "train/bird/._0001.jpg")
    assert len(read_data(load_competition("cifar10"), data).train.ids) == 40
    shutil.copyfile(data / "train/bird/0000.jpg", data / "train/bird/0000.png")
    message = read_error(load_competition("cifar10"), data)
    assert "'0000.jpg' and '0000.png' differ only in their extension" in message and "bird" in message


def test_factorised_heads_are_the_product_of_the_heads_softmaxes():
    import torch

    from comptk.config import resolve
    from comptk.data.labelers import mask_class
    from comptk.train.models import FactorizedHeads, create_model

    model = create_model(resolve(None, {"model": "small_resnet", "heads": "3x2x3"}), 18)
    assert isinstance(model, FactorizedHeads) and model.model.num_classes == 8
    x = torch.rand(4, 3, 16, 16)
    logits, heads = model(x), model.model(x)
    assert logits.shape == (4, 18)
    mask, gender, age = (torch.softmax(h, 1) for h in torch.split(heads, [3, 2, 3], dim=1))
    proba = torch.softmax(logits, 1)
    for m in range(3):
        for g in range(2):
            for a, years in enumerate((20, 40, 60)):
                torch.testing.assert_close(proba[:, mask_class(m, g, years)], mask[:, m] * gender[:, g] * age[:, a])
    # cross-entropy on the 18 classes = the sum of the three heads' cross-entropies
    target = torch.tensor([0, 7, 17, 10])
    parts = torch.stack([target // 6, target // 3 % 2, target % 3], 1)
    ce = torch.nn.functional.cross_entropy
    expected = sum(ce(h, parts[:, i]) for i, h in enumerate(torch.split(heads, [3, 2, 3], dim=1)))
    torch.testing.assert_close(ce(logits, target), expected)


def test_heads_must_multiply_to_the_class_count():
    from comptk.config import resolve
    from comptk.train.models import create_model

    with pytest.raises(ComptkError, match="makes 12 classes, but the competition has 18"):
        create_model(resolve(None, {"model": "small_resnet", "heads": "3x2x2"}), 18)
    with pytest.raises(ComptkError, match="like '3x2x3'"):
        resolve(None, {"heads": "3-2-3"})


def test_missing_contest_data_says_where_it_goes(tmp_path):
    result = CliRunner().invoke(main, ["train", "mask", "--workdir", str(tmp_path), "--no-pretrained"])
    assert result.exit_code == 2
    assert "put the contest's data there or pass --data DIR" in result.output and "comptk prepare mask" in result.output


def test_illustration_stand_in_needs_no_fashion_mnist(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["comptk.datasets.sources"], "FASHION_DIR", tmp_path / "absent")  # the module, not
    # comptk.prepare, the function
    data = prepare("illustration", tmp_path, train_n=60, test_n=20, seed=5)
    truth = pd.read_csv(data / "standin_truth.csv", dtype=str, keep_default_na=False)
    assert (truth["kind"] == "photo").any()
    assert len(read_data(load_competition("illustration"), data).train.ids) == len(truth[truth["split"] == "train"])


def test_force_replaces_only_prepared_data(tmp_path, monkeypatch):
    """--out --force must never wipe a folder that prepare did not make, nor the current folder."""
    runner = CliRunner()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep")
    result = runner.invoke(main, ["prepare", "cifar10", "--out", str(precious), "--force", "--train-n", "20"])
    assert result.exit_code == 2 and "was not made by `comptk prepare`" in result.output
    assert (precious / "notes.txt").read_text() == "keep"
    monkeypatch.chdir(precious)
    for out in (".", str(tmp_path)):
        result = runner.invoke(main, ["prepare", "cifar10", "--out", out, "--force", "--train-n", "20"])
        assert result.exit_code == 2 and "is the current folder or holds it" in result.output, result.output
    assert (precious / "notes.txt").read_text() == "keep"
    built = tmp_path / "built"
    prepare("cifar10", tmp_path, out=built, train_n=20, test_n=5)
    result = runner.invoke(main, ["prepare", "cifar10", "--out", str(built), "--force", "--train-n", "20",
                                  "--test-n", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output  # a prepared folder is replaced


def test_label_fixes_may_name_a_class_folder_without_images(tmp_path):
    """The layout's class list (here the class folders) is what a fix is checked against, not the labels seen."""
    data = prepare("cifar10", tmp_path, train_n=40, test_n=5)
    for image in (data / "train" / "frog").iterdir():
        image.unlink()
    comp = load_competition(declaration(tmp_path, "cifar10", append='\n[label_fixes]\n"bird/0000" = "frog"\n'))
    loaded = read_data(comp, data)
    assert loaded.classes[loaded.train.labels[loaded.train.ids.tolist().index("bird/0000")]] == "frog"
