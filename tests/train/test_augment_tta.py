"""Augment presets (geometric, strong, crop-to-test, declared pipelines) and test-time views
(TTA presets, merging, validation crops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tests.conftest import make_tiny

from comptk import ComptkError, load_competition
from comptk.cli import main
from comptk.train.augment import crop_to_test_scale, train_transform
from comptk.train.tta import TTA, crop_box, crop_views, merge, with_tta


def _batch(image: np.ndarray, n: int) -> torch.Tensor:
    return torch.from_numpy(np.repeat(image[None], n, axis=0))


def test_geometric_never_changes_colours_and_strong_does():
    colour = np.array([37, 120, 201], np.uint8)
    flat = _batch(np.broadcast_to(colour, (24, 24, 3)).copy(), 32)
    for seed in range(3):
        out = train_transform("geometric", 24, seed)(flat)
        assert torch.equal(out, flat)  # every pixel keeps the one colour: no colour op, no black border
    strong = train_transform("strong", 24, 0)(flat).numpy().reshape(32, -1, 3)
    changed = [not np.all(img == colour) for img in strong]
    assert sum(changed) >= 8  # colour / noise / erasing ops do change a one-colour image


def test_geometric_moves_pixels():
    image = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    out = train_transform("geometric", 24, 0)(_batch(image, 16))
    assert sum(not torch.equal(out[i], torch.from_numpy(image)) for i in range(16)) >= 8


def test_crop_to_test_crops_at_the_test_scale():
    side = 96
    ramp = np.linspace(0, 255, side)
    image = np.zeros((side, side, 3), np.uint8)
    image[..., 0] = np.round(ramp)[None, :]  # x coordinate
    image[..., 1] = np.round(ramp)[:, None]  # y coordinate
    out = train_transform("crop-to-test", 32, 0, test_crop=0.5)(_batch(image, 40)).numpy().astype(float)
    width = (out[..., 0].max(axis=(1, 2)) - out[..., 0].min(axis=(1, 2))) / 255
    height = (out[..., 1].max(axis=(1, 2)) - out[..., 1].min(axis=(1, 2))) / 255
    low, high = (math.sqrt(a) for a in crop_to_test_scale(0.5))
    for side_fraction in (width, height):
        assert np.all(side_fraction > low - 0.05) and np.all(side_fraction < high + 0.05)
        assert abs(side_fraction.mean() - 0.5) < 0.07


def test_crop_to_test_needs_a_declared_test_crop():
    with pytest.raises(ComptkError, match="crop-to-test.*test_time"):
        train_transform("crop-to-test", 32, 0)


def test_albumentations_presets_draw_their_own_stream_in_each_worker(monkeypatch):
    image = np.random.default_rng(1).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    batch = _batch(image, 8)

    class Worker:
        def __init__(self, id_):
            self.id = id_

    outputs = []
    for worker in (0, 1, 0):
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda w=worker: Worker(w))
        outputs.append(train_transform("geometric", 20, 5)(batch))
    assert torch.equal(outputs[0], outputs[2]) and not torch.equal(outputs[0], outputs[1])


PIPELINE = """
[augment.mine]
transforms = [ {name = "HorizontalFlip", p = 0.5}, {name = "Affine", scale = [0.9, 1.1], p = 1.0},
               {name = "OneOf", transforms = [{name = "Blur", blur_limit = 3}, {name = "ToGray"}], p = 0.5} ]
"""


def _with(tmp_path, extra: str):
    root = make_tiny(tmp_path / "tiny")
    toml = root / "competition.toml"
    toml.write_text(toml.read_text() + extra)
    return root


def test_declared_pipeline_is_built_from_the_declaration(tmp_path):
    comp = load_competition(_with(tmp_path, PIPELINE))
    assert [t["name"] for t in comp.augments["mine"]] == ["HorizontalFlip", "Affine", "OneOf"]
    image = np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    a = train_transform("mine", 12, 3, custom=comp.augments)(_batch(image, 6))
    b = train_transform("mine", 12, 3, custom=comp.augments)(_batch(image, 6))
    assert a.shape == (6, 12, 12, 3) and a.dtype == torch.uint8 and torch.equal(a, b)
    with pytest.raises(ComptkError, match="unknown augment preset 'mien'.*did you mean 'mine'"):
        train_transform("mien", 12, 3, custom=comp.augments)


@pytest.mark.parametrize("transforms, message", [
    ('[{name = "HorizontalFlp"}]', "unknown albumentations transform 'HorizontalFlp' (did you mean 'HorizontalFlip'?)"),
    ('[{name = "Affine", scal = 1.1}]', "Affine: unknown argument 'scal' (did you mean 'scale'?)"),
    ('[{name = "Affine", scale = "big"}]', "Affine: "),
    ('[{name = "RandomCrop", height = 500, width = 500, p = 0.01}]', "RandomCrop: fails on a 12x12 image"),
    ('[{name = "OneOf", transforms = [{name = "Blurr"}]}]', "OneOf: unknown albumentations transform 'Blurr'"),
    ('[{p = 0.5}]', "each transform must be a table with a 'name'"),
])
def test_bad_declared_pipeline_is_a_one_line_error_naming_file_preset_and_transform(tmp_path, transforms, message):
    root = _with(tmp_path, f"\n[augment.mine]\ntransforms = {transforms}\n")
    with pytest.raises(ComptkError) as caught:
        load_competition(root)
    text = str(caught.value)
    assert str(root / "competition.toml") in text and "[augment.mine]" in text and message in text
    assert "\n" not in text


def test_declared_pipeline_cannot_shadow_a_preset_or_have_other_keys(tmp_path):
    with pytest.raises(ComptkError, match=r"\[augment.basic\]: 'basic' is a built-in"):
        load_competition(_with(tmp_path / "a", '\n[augment.basic]\ntransforms = [{name = "HorizontalFlip"}]\n'))
    with pytest.raises(ComptkError, match="unknown key 'transform'"):
        load_competition(_with(tmp_path / "b", '\n[augment.x]\ntransform = [{name = "HorizontalFlip"}]\n'))


def test_cli_bad_pipeline_fails_before_training(tmp_path):
    root = _with(tmp_path, '\n[augment.mine]\ntransforms = [{name = "Nope"}]\n')
    result = CliRunner().invoke(main, ["train", str(root), "--workdir", str(root), "--augment", "mine", "--quiet"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "error: " in result.output and "[augment.mine]" in result.output and "'Nope'" in result.output
    assert not (root / "runs").exists() and not (root / "folds").exists()


# ---- test-time views

class _Logits(torch.nn.Module):
    """Logits from the left and right columns of channel 0: large and negative."""

    def forward(self, x):
        return torch.stack([x[:, 0, :, 0].sum(1) * -50, x[:, 0, :, -1].sum(1) * -50, x[:, 1].mean((1, 2))], dim=1)


@pytest.mark.parametrize("how", ["mean", "gmean"])
@pytest.mark.parametrize("name", TTA.names())
def test_every_tta_preset_and_merge_gives_probabilities(name, how):
    out = with_tta(_Logits(), name, how)(torch.rand(4, 3, 16, 12))
    assert out.shape == (4, 3) and torch.all(out >= 0) and torch.isfinite(out).all()
    assert torch.allclose(out.sum(1), torch.ones(4), atol=1e-5)


def test_gmean_is_the_renormalised_geometric_mean_and_differs_from_mean():
    p = torch.tensor([[[0.98, 0.02]], [[0.5, 0.5]]])
    mean, gmean = merge(p.log(), "mean"), merge(p.log(), "gmean")
    assert torch.allclose(mean, torch.tensor([[0.74, 0.26]]), atol=1e-6)
    g = torch.sqrt(p[0] * p[1])
    assert torch.allclose(gmean, g / g.sum(), atol=1e-6) and not torch.allclose(mean, gmean, atol=0.05)
    with pytest.raises(ComptkError, match="tsharpen"):
        merge(p.log(), "tsharpen")


def test_five_crop_views_on_a_non_square_image():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12)
    views = [view(x) for view in crop_views(0.5)]
    assert [v.shape for v in views] == [(2, 3, 8, 12)] * 5  # resized back to the input size
    resize = lambda part: torch.nn.functional.interpolate(part, size=(8, 12), mode="bilinear", align_corners=False)
    assert torch.allclose(views[0], resize(x[..., :4, :6]))  # top left: 4 of 8 rows, 6 of 12 columns
    assert torch.allclose(views[3], resize(x[..., 4:, 6:]))  # bottom right
    assert torch.allclose(views[4], resize(x[..., 2:6, 3:9]))  # centre
    assert crop_box(8, 12, 0.5) == (4, 6) and crop_box(300, 200, 0.6) == (180, 120)


def test_a_crop_larger_than_the_image_is_an_error():
    with pytest.raises(ComptkError, match="crop of 10x4 px does not fit an image of 8x12 px"):
        crop_views((10, 4))[0](torch.zeros(1, 3, 8, 12))
    with pytest.raises(ComptkError, match=r"crop fraction must be in \(0, 1\]"):
        crop_box(8, 12, 1.5)


def test_five_crop_validation_averages_the_crops_probabilities():
    model, x = _Logits(), torch.rand(3, 3, 10, 14)
    expected = torch.stack([torch.softmax(model(view(x)), 1) for view in crop_views(0.6)]).mean(0)
    assert torch.allclose(with_tta(model, "none", crop=0.6)(x), expected, atol=1e-6)
    centre = torch.softmax(model(crop_views(0.6, "center")[0](x)), 1)
    assert torch.allclose(with_tta(model, "none", crop=0.6, crop_which="center")(x), centre, atol=1e-6)
    # with TTA each crop gets the views, like a test image does
    flipped = torch.stack([(torch.softmax(model(v(x)), 1) + torch.softmax(model(v(x).flip(3)), 1)) / 2
                           for v in crop_views(0.6)]).mean(0)
    assert torch.allclose(with_tta(model, "hflip", crop=0.6)(x), flipped, atol=1e-6)


def test_ten_crop_is_five_crops_and_their_mirrors():
    assert len(TTA.get("ten-crop")()) == 10 and len(TTA.get("five-crop")()) == 5
    assert len(TTA.get("multi-scale")()) == 3
    model, x = _Logits(), torch.rand(2, 3, 16, 16)
    views = crop_views(0.875)
    expected = torch.stack([torch.softmax(model(f(v(x))), 1) for v in views for f in (lambda t: t, lambda t: t.flip(3))])
    assert torch.allclose(with_tta(model, "ten-crop")(x), expected.mean(0), atol=1e-6)
