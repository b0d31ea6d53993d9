"""Losses, class weights, samplers and the batch mixer on hand-made tensors (no training)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comptk import ComptkError, resolve
from comptk.train.losses import (
    LOSSES,
    Criterion,
    class_weights,
    focal,
    parse_loss,
    soft_f1,
)
from comptk.train.mixing import make_mixer
from comptk.train.sampling import make_sampler

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
LABELS = torch.tensor([0, 2, 1, 0])


def test_focal_with_gamma_zero_is_cross_entropy_and_smaller_otherwise():
    one_hot = F.one_hot(LABELS, 3).float()
    ce = F.cross_entropy(LOGITS, LABELS)
    assert torch.isclose(focal(LOGITS, one_hot, None, 0.0), ce)
    assert torch.isclose(Criterion("focal", focal_gamma=0.0)(LOGITS, LABELS), ce)
    assert focal(LOGITS, one_hot, None, 2.0) < ce  # easy rows are down-weighted


def test_soft_f1_is_lower_for_a_better_prediction_and_differentiable():
    good = 6 * F.one_hot(LABELS, 3).float()  # confident and right
    bad = 6 * F.one_hot((LABELS + 1) % 3, 3).float()  # confident and wrong
    target = F.one_hot(LABELS, 3).float()
    assert soft_f1(good, target) < 0.05 and soft_f1(bad, target) > 0.95
    assert soft_f1(good, target) < soft_f1(LOGITS, target) < soft_f1(bad, target)
    logits = LOGITS.clone().requires_grad_(True)
    Criterion("f1")(logits, LABELS).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # a step against the gradient improves the soft F1
    assert Criterion("f1")(LOGITS - 0.5 * logits.grad, LABELS) < Criterion("f1")(LOGITS, LABELS)


def test_weighted_sum_equals_the_sum_of_its_terms():
    target = F.one_hot(LABELS, 3).float()
    combined = Criterion("0.7*ce + 0.3*f1")(LOGITS, LABELS)
    expected = 0.7 * F.cross_entropy(LOGITS, LABELS) + 0.3 * soft_f1(LOGITS, target)
    assert torch.isclose(combined, expected)
    assert torch.isclose(Criterion("ce+focal", focal_gamma=1.0)(LOGITS, LABELS),
                         F.cross_entropy(LOGITS, LABELS) + focal(LOGITS, target, None, 1.0))


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_takes_soft_targets_and_class_weights(name):
    # a 30/70 mix of two one-hot targets, as mixup makes
    soft = 0.3 * F.one_hot(LABELS, 3).float() + 0.7 * F.one_hot((LABELS + 1) % 3, 3).float()
    weights = torch.tensor([1.0, 2.0, 0.5])
    for criterion in (Criterion(name), Criterion(name, class_weights=weights)):
        value = criterion(LOGITS, soft)
        assert value.ndim == 0 and torch.isfinite(value)
    if name == "ce":  # linear in the target: the loss of a mix is the mix of the losses
        parts = 0.3 * Criterion(name)(LOGITS, F.one_hot(LABELS, 3).float()) + \
            0.7 * Criterion(name)(LOGITS, F.one_hot((LABELS + 1) % 3, 3).float())
        assert torch.isclose(Criterion(name)(LOGITS, soft), parts)


def test_label_smoothing_and_class_weights_in_the_soft_path_match_torch():
    smoothed = Criterion("ce", label_smoothing=0.1, class_weights=torch.ones(3))(LOGITS, LABELS)  # soft path
    assert torch.isclose(smoothed, F.cross_entropy(LOGITS, LABELS, label_smoothing=0.1))
    weights = torch.tensor([1.0, 2.0, 0.5])
    weighted = Criterion("ce", class_weights=weights)(LOGITS, LABELS)
    per_row = F.cross_entropy(LOGITS, LABELS, reduction="none") * weights[LABELS]
    assert torch.isclose(weighted, per_row.mean())


@pytest.mark.parametrize("spec, message", [
    ("ce+foca", "unknown loss 'foca' (did you mean 'focal'?)"),
    ("ce+ce", "appears twice"),
    ("2x*ce", "cannot read term '2x*ce'"),
    ("0*ce", "must be > 0"),
    ("", "cannot read term ''"),
])
def test_bad_loss_specs_are_clear_errors(spec, message):
    with pytest.raises(ComptkError, match=re.escape(message)):
        resolve(None, {"loss": spec})


def test_parse_loss():
    assert parse_loss("f1") == [(1.0, "f1")]
    assert parse_loss("ce+0.25*f1") == [(1.0, "ce"), (0.25, "f1")]


def test_class_weights_from_counts():
    labels = np.array([0] * 80 + [1] * 20)
    inverse = class_weights(labels, 3, "inverse").numpy()
    assert np.isclose(inverse[0] * 80, inverse[1] * 20)  # each class carries the same total weight
    assert np.isclose(inverse[labels].mean(), 1.0)  # average weight per training row is 1
    assert np.isfinite(inverse[2]) and inverse[2] > inverse[1]  # an absent class counts as one row
    root = class_weights(labels, 2, "sqrt-inverse").numpy()
    assert np.isclose(root[1] / root[0], 2.0) and np.isclose(root[labels].mean(), 1.0)
    assert class_weights(labels, 2, "none") is None


IMBALANCED = np.array([0] * 400 + [1] * 40 + [2] * 20)


def test_weighted_sampler_draws_classes_about_equally_and_is_seeded():
    sampler = make_sampler(IMBALANCED, "weighted", 0, torch.Generator().manual_seed(0))
    assert len(sampler) == len(IMBALANCED)
    draws = np.concatenate([IMBALANCED[list(sampler)] for _ in range(5)])  # 5 epochs: 2,300 draws
    share = np.bincount(draws, minlength=3) / len(draws)
    assert np.allclose(share, 1 / 3, atol=0.04), share  # plain shuffling would give 0.87 / 0.09 / 0.04
    again = make_sampler(IMBALANCED, "weighted", 0, torch.Generator().manual_seed(0))
    assert list(again) == list(make_sampler(IMBALANCED, "weighted", 0, torch.Generator().manual_seed(0)))


def test_class_cap_undersamples_each_epoch_afresh():
    sampler = make_sampler(IMBALANCED, "random", 30, torch.Generator().manual_seed(0))
    first, second = list(sampler), list(sampler)
    assert len(sampler) == len(first) == 30 + 30 + 20
    for epoch in (first, second):
        assert len(set(epoch)) == len(epoch)  # without replacement
        assert np.bincount(IMBALANCED[epoch]).tolist() == [30, 30, 20]
        assert len(set(IMBALANCED[epoch[:20]])) > 1  # classes shuffled together, not one after another
    assert set(first) != set(second)  # a fresh choice of the capped classes' rows


def test_sampler_settings_are_validated():
    with pytest.raises(ComptkError, match="choose one"):
        resolve(None, {"sampler": "weighted", "class_cap": 10})
    with pytest.raises(ComptkError, match="setting 'sampler' must be one of random, weighted"):
        resolve(None, {"sampler": "balanced"})
    with pytest.raises(ComptkError, match="'pseudo_threshold' must be in"):
        resolve(None, {"pseudo_threshold": 0.0})
    with pytest.raises(ComptkError, match="'freeze_epochs' .* must be at most 'epochs'"):
        resolve(None, {"freeze_epochs": 5, "epochs": 3})


def test_mixer_gives_soft_targets_and_handles_odd_batches():
    np.random.seed(0)
    mixer = make_mixer(resolve(None, {"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "label_smoothing": 0.1}), 3)
    assert make_mixer(resolve(None, {}), 3) is None
    x = torch.rand(5, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1])
    mixed, target = mixer(x.clone(), labels)
    assert mixed.shape == x.shape and target.shape == (5, 3)
    assert torch.allclose(target.sum(1), torch.ones(5))
    assert not torch.equal(mixed[:4], x[:4]) and torch.equal(mixed[4], x[4])  # the odd row is kept as it is
    assert torch.allclose(target[4], torch.tensor([0.1 / 3, 1 - 0.1 + 0.1 / 3, 0.1 / 3]))
    assert (target[:4].max(1).values < 0.999).all()  # mixed rows have two classes
