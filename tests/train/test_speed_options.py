"""Speed options: torch.compile (plain checkpoints, one-line failure) and batch augmentation
on the device after the copy (the CUDA path, run here on the CPU)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from comptk import ComptkError, TrainConfig, run_cv
from comptk.cli import main
from comptk.metrics import get_metric
from comptk.train.augment import train_transform
from comptk.train.dataset import ImageArrayDataset
from comptk.train.engine import fit, predict_proba
from comptk.train.models import Classifier, create_model

CPU = torch.device("cpu")


def _train(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray, **kwargs):
    torch.manual_seed(0)
    model = Classifier(create_model(cfg, 2))
    dataset = ImageArrayDataset(images, labels, train_transform(cfg.augment, cfg.img_size, 0))
    outcome = fit(model, dataset, images[:16], labels[:16], cfg,
                  get_metric("accuracy"), device=CPU, seed=0, progress=False, **kwargs)
    return model, outcome


def test_batch_augment_after_the_copy_trains_the_same_model():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (48, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(48) % 2
    cfg = TrainConfig(img_size=12, epochs=2, batch_size=16, augment="basic")
    _, in_loader = _train(cfg, images, labels, augment_on_device=False)
    _, on_device = _train(cfg, images, labels, augment_on_device=True)
    _, unaugmented = _train(TrainConfig(**{**cfg.to_dict(), "augment": "none"}), images, labels)
    for key, value in in_loader.state_dict.items():
        assert torch.equal(value, on_device.state_dict[key]), key
    assert not all(torch.equal(v, unaugmented.state_dict[k]) for k, v in in_loader.state_dict.items())


@pytest.mark.slow  # inductor compiles C++: ~30 s with its on-disk cache warm, ~90 s cold, on 2 cores
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile needs a C++ compiler on CPU")
def test_compiled_training_matches_eager_and_saves_plain_weights():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(32) % 2
    cfg = TrainConfig(img_size=12, epochs=1, batch_size=16, augment="none")
    compiled, outcome = _train(TrainConfig(**{**cfg.to_dict(), "compile": True}), images, labels)
    eager, eager_outcome = _train(cfg, images, labels)
    assert compiled._compiled_call_impl is not None and eager._compiled_call_impl is None
    assert list(outcome.state_dict) == list(eager.state_dict())  # no "_orig_mod." prefixes
    assert list(compiled.state_dict()) == list(eager.state_dict())
    for key, value in outcome.state_dict.items():
        assert torch.allclose(value.float(), eager_outcome.state_dict[key].float(), atol=1e-4), key
    plain = Classifier(create_model(cfg, 2))
    plain.load_state_dict(outcome.state_dict)  # strict: the checkpoint fits an uncompiled model
    proba = predict_proba(compiled, images, device=CPU, tta="hflip")
    assert np.allclose(proba, predict_proba(plain, images, device=CPU, tta="hflip"), atol=1e-5)


def test_compile_failure_is_one_line_before_anything_is_written(tiny, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no working C++ compiler\nlong traceback text")

    monkeypatch.setattr(torch, "compile", broken)
    result = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--compile", "--quiet"])
    assert result.exit_code == 2
    assert result.output.startswith("error: --compile: torch.compile does not work on cpu here "
                                    "(RuntimeError: no working C++ compiler); train without --compile")
    assert not (tiny / "runs").exists() and not (tiny / "folds").exists()
    with pytest.raises(ComptkError, match="--compile"):
        run_cv(tiny, {"compile": True}, workdir=tiny, progress=False)


def test_a_diverging_loss_stops_training_with_one_line():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (32, 12, 12, 3), dtype=np.uint8)
    cfg = TrainConfig(img_size=12, epochs=2, batch_size=8, augment="none", lr=1e12, optimizer="sgd")
    with pytest.raises(ComptkError, match=r"training loss became (nan|inf) in epoch 1; lower --lr"):
        _train(cfg, images, np.arange(32) % 2)


def test_only_torch_batch_augmentations_move_to_the_device():
    from comptk.train.augment import BatchAugment, train_transform
    from comptk.train.engine import device_augment

    batch = BatchAugment(0)
    assert device_augment(batch, True) is batch and device_augment(batch, False) is None
    for name in ("geometric", "albu-basic"):  # albumentations pipelines need numpy batches: never on a GPU
        assert device_augment(train_transform(name, 16, 0), True) is None


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native):
    """precision=auto is bf16 autocast only on a CPU with bf16 instructions (where it is faster);
    explicit choices are kept whatever the CPU."""
    from comptk.train import engine

    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: native)
    assert engine.autocast_dtype(CPU, "auto") == (torch.bfloat16 if native else None)
    assert engine.autocast_dtype(CPU, "fp32") is None
    assert engine.autocast_dtype(CPU, "bf16") == torch.bfloat16


def test_fold_result_records_the_autocast_used(tiny):
    result = run_cv(tiny, {"n_folds": 2, "precision": "bf16"}, workdir=tiny, name="prec", progress=False, plots=False)
    for fold in result.sidecar["folds"]:
        assert fold["autocast"] == "bfloat16" and fold["device"] == "cpu"
