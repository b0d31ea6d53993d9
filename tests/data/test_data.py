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
