import unicodedata

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comptk import ComptkError, load_competition
from comptk.data.images import decode_image, load_images
from comptk.data.layouts import read_data


def _read(tiny):
    comp = load_competition(tiny)
    return read_data(comp, tiny / "data")


def test_reads_tables_in_csv_order(tiny):
    data = _read(tiny)
    train = pd.read_csv(tiny / "data" / "train.csv")
    assert data.train.ids.tolist() == train["id"].tolist()
    assert data.classes == ("cat", "dog", "fox")
    assert [data.classes[i] for i in data.train.labels] == train["label"].tolist()
    assert data.test.labels is None and len(data.test.ids) == 9


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16", "1", "CMYK"])
def test_any_image_mode_decodes_to_rgb(tmp_path, mode):
    img = Image.new("RGB", (5, 4), (10, 200, 30)).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("CMYK", "I;16") else "x.png")
    img.save(path)
    out = decode_image(path)
    assert out.mode == "RGB" and out.size == (5, 4)


def test_transparent_pixels_go_onto_white(tmp_path):
    Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert np.asarray(decode_image(tmp_path / "clear.png")).min() == 255


def test_load_images_resizes_to_uint8_array(tiny):
    data = _read(tiny)
    images = load_images(data.train.paths[:4], 20)
    assert images.shape == (4, 20, 20, 3) and images.dtype == np.uint8


def test_corrupt_image_is_named(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ComptkError, match="cannot read image .*bad.png"):
        decode_image(path)


def _rewrite(tiny, file, fn):
    path = tiny / "data" / file
    frame = pd.read_csv(path, dtype=str)
    fn(frame).to_csv(path, index=False)


def test_missing_image_names_line_and_id(tiny):
    _rewrite(tiny, "train.csv", lambda f: f.assign(img_path=f.img_path.where(f.index != 3, "img/nope.png")))
    with pytest.raises(ComptkError, match=r"train.csv line 5 \(id 'cat_3'\): image file not found"):
        _read(tiny)


def test_label_outside_class_list(tiny):
    path = tiny / "competition.toml"
    path.write_text(path.read_text().replace('data_dir = "data"', 'data_dir = "data"\nclasses = ["cat", "dog"]'))
    with pytest.raises(ComptkError, match=r"line 14 \(id 'fox_0'\): label 'fox' is not in the class list"):
        _read(tiny)


def test_missing_column_lists_the_columns(tiny):
    _rewrite(tiny, "train.csv", lambda f: f.rename(columns={"label": "artist"}))
    with pytest.raises(ComptkError, match="train.csv: no column 'label' .*columns are: id, img_path, artist"):
        _read(tiny)


def test_empty_test_csv(tiny):
    (tiny / "data" / "test.csv").write_text("id,img_path\n")
    with pytest.raises(ComptkError, match="test.csv: has no rows"):
        _read(tiny)


def test_repeated_id(tiny):
    _rewrite(tiny, "train.csv", lambda f: f.assign(id=f.id.where(f.index != 2, "cat_0")))
    with pytest.raises(ComptkError, match="line 4: id 'cat_0' repeats line 2"):
        _read(tiny)


def test_folder_layout(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "d" / "train" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 50 * i).save(tmp_path / "d" / "train" / cls / f"{i}.png")
    (tmp_path / "d" / "test").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "d" / "test" / "q.jpg")
    (tmp_path / "c.toml").write_text(
        'name = "f"\nmetric = "accuracy"\nlayout = "folders"\n[files]\ntrain = "train"\ntest = "test"\n'
    )
    data = read_data(load_competition(tmp_path / "c.toml"), tmp_path / "d")
    assert data.classes == ("a", "b") and data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.test.ids.tolist() == ["q"]


def test_a_repeated_sample_submission_id_is_an_error_naming_its_line(tiny):
    _rewrite(tiny, "sample_submission.csv", lambda f: pd.concat([f, f.iloc[[1]]]))
    with pytest.raises(ComptkError, match=r"sample_submission.csv line 11: id 't_cat_2' repeats line 3"):
        _read(tiny)


@pytest.mark.parametrize("columns, expected", [
    (["id", "cat", "dog", "fox"], None),  # one column per class: probabilities
    (["id", "label"], None),  # one label column
    (["id", "class_cat", "class_dog", "class_fox"], r"3 column\(s\) not a class: 'class_cat', .*3 class\(es\) without "
                                                    r"a column: 'cat'"),
    (["id", "cat", "dog", "fox", "wolf"], r"\(1 column\(s\) not a class: 'wolf'\)"),
    (["id", "label", "Usage"], r"2 column\(s\) not a class: 'label', 'Usage'"),
])
def test_the_sample_submissions_columns_are_checked_when_the_data_is_read(tiny, columns, expected):
    """Before any training: a submission in a format comptk cannot fill used to fail after the last fold."""
    _rewrite(tiny, "sample_submission.csv", lambda f: pd.DataFrame({c: f["id"] if c == "id" else "0" for c in columns}))
    if expected is None:
        assert _read(tiny).sample_submission.columns.tolist() == columns
        return
    with pytest.raises(ComptkError, match="sample_submission.csv: columns " + ", ".join(columns) + ": .*" + expected):
        _read(tiny)


def test_a_test_row_on_a_train_rows_image_file_is_an_error(tiny):
    """Test images looked up in the train folder (test ids repeating train ids) would be predicted as junk."""
    _rewrite(tiny, "test.csv", lambda f: f.assign(img_path=f.img_path.where(f.index != 1, "img/dog_0.png")))
    with pytest.raises(ComptkError, match=r"test row 't_cat_2' and train row 'dog_0' are the same image file"):
        _read(tiny)


def test_a_label_in_two_unicode_forms_is_one_class(tiny, caplog):
    composed = "김치"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    _rewrite(tiny, "train.csv", lambda f: f.assign(label=f.label.replace("cat", composed).where(
        f.index % 2 == 0, f.label.replace("cat", decomposed))))
    with caplog.at_level("WARNING", logger="comptk"):
        data = _read(tiny)
    assert data.classes == ("dog", "fox", composed)  # one class, composed
    assert "3 labels written in another Unicode form" in caplog.text and "decomposed -> composed" in caplog.text
    # written in one form only, a label is kept exactly as written: the answers were likely written alike
    _rewrite(tiny, "train.csv", lambda f: f.assign(label=f.label.replace(composed, decomposed)))
    assert _read(tiny).classes == ("dog", "fox", decomposed)
    # declared in both forms: an error, not two classes
    path = tiny / "competition.toml"
    both = f'classes = ["{composed}", "{decomposed}", "dog", "fox"]'
    path.write_text(path.read_text().replace('data_dir = "data"', f'data_dir = "data"\n{both}'))
    with pytest.raises(ComptkError, match="differ only in their Unicode form"):
        _read(tiny)


def test_class_folders_in_decomposed_unicode_name_composed_classes(tmp_path):
    composed = "불고기"
    for name in (unicodedata.normalize("NFD", composed), "b"):
        (tmp_path / "d" / "train" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (8, 8), 50 * i).save(tmp_path / "d" / "train" / name / f"{i}.png")
    (tmp_path / "d" / "test").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "d" / "test" / "q.jpg")
    toml = 'name = "f"\nmetric = "accuracy"\nlayout = "folders"\n[files]\ntrain = "train"\ntest = "test"\n'
    (tmp_path / "c.toml").write_text(toml)
    data = read_data(load_competition(tmp_path / "c.toml"), tmp_path / "d")
    assert data.classes == ("b", composed) and data.train.labels.tolist() == [0, 0, 1, 1]
    # declared in the composed form, the decomposed folder is found
    declared = f'layout = "folders"\nclasses = ["{composed}", "b"]'
    (tmp_path / "c.toml").write_text(toml.replace('layout = "folders"', declared))
    data = read_data(load_competition(tmp_path / "c.toml"), tmp_path / "d")
    assert data.classes == (composed, "b") and data.train.labels.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("content, expected", [
    ("id,label\n1,김치\n".encode("cp949"), r"x.csv line 2 \(byte 0xb1\): not UTF-8 text .*save it as UTF-8"),
    (b"id;label\n1;a\n", r"x.csv: its columns are separated by ';', not commas"),
    (b"id\tlabel\n1\ta\n", r"x.csv: its columns are separated by 'tab', not commas"),
])
def test_a_csv_saved_by_a_spreadsheet_in_another_format_says_how_to_save_it(tmp_path, content, expected):
    from comptk.data.tables import read_csv

    (tmp_path / "x.csv").write_bytes(content)
    with pytest.raises(ComptkError, match=expected):
        read_csv(tmp_path / "x.csv")
    (tmp_path / "x.csv").write_bytes("\ufeffid,label\n1,김치\n".encode())  # UTF-8 with a BOM reads
    assert read_csv(tmp_path / "x.csv").columns.tolist() == ["id", "label"]
