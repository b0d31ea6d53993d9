"""Contract tests over every registry entry: augment presets, TTA presets, metrics."""

import numpy as np
import pytest
import torch

from comptk.metrics import METRICS
from comptk.train.augment import AUGMENTS, BatchAugment, train_transform
from comptk.train.dataset import ImageArrayDataset
from comptk.train.tta import TTA, with_tta


@pytest.mark.parametrize("name", AUGMENTS.names())
def test_every_augment_preset_keeps_size_and_dtype(name):
    images = np.random.default_rng(0).integers(0, 255, (6, 20, 20, 3), dtype=np.uint8)
    dataset = ImageArrayDataset(images, np.arange(6), train_transform(name, 20, seed=1, test_crop=0.5))
    batch, labels = dataset.__getitems__([0, 3, 5])
    assert batch.shape == (3, 20, 20, 3) and batch.dtype == torch.uint8
    assert labels.tolist() == [0, 3, 5]
    again = ImageArrayDataset(images, np.arange(6), train_transform(name, 20, seed=1, test_crop=0.5))
    assert torch.equal(again.__getitems__([0, 3, 5])[0], batch)  # the seed fixes the draws


def test_batch_augment_is_seeded_and_changes_images():
    batch = torch.randint(0, 255, (16, 12, 12, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    augment = dict(shift=0.2, scale=0.1, rotate=10, p=0.5)
    a, b = BatchAugment(3, **augment)(batch), BatchAugment(3, **augment)(batch)
    assert torch.equal(a, b) and a.shape == batch.shape
    changed = [not torch.equal(a[i], batch[i]) and not torch.equal(a[i], batch[i].flip(1)) for i in range(16)]
    assert 2 <= sum(changed) <= 14  # about half the images are warped
    flipped = BatchAugment(0, flip=True)(batch)
    kinds = [torch.equal(flipped[i], batch[i]) or torch.equal(flipped[i], batch[i].flip(1)) for i in range(16)]
    assert all(kinds) and not torch.equal(flipped, batch)


class _Logits(torch.nn.Module):
    def forward(self, x):  # large negative logits: a logit mean would not be a distribution
        return torch.stack([x[:, 0, :, 0].sum(1) * -50, x[:, 0, :, -1].sum(1) * -50], dim=1)


@pytest.mark.parametrize("name", TTA.names())
def test_every_tta_preset_merges_probabilities(name):
    x = torch.rand(4, 3, 8, 8)
    out = with_tta(_Logits(), name)(x)
    assert out.shape == (4, 2) and torch.all(out >= 0)
    assert torch.allclose(out.sum(1), torch.ones(4), atol=1e-5)


def test_hflip_tta_is_the_mean_of_both_views_probabilities():
    x = torch.rand(4, 3, 8, 8)
    model = _Logits()
    expected = (torch.softmax(model(x), 1) + torch.softmax(model(x.flip(3)), 1)) / 2
    assert torch.allclose(with_tta(model, "hflip")(x), expected, atol=1e-6)


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_is_one_for_perfect_and_lower_for_wrong(name):
    y = np.array([0, 1, 2, 2, 1])
    metric = METRICS.get(name)
    assert metric(y, y, 3) == 1.0
    assert metric(y, (y + 1) % 3, 3) < 1.0
