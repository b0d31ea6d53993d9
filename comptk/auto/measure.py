"""Measure the machine: how many images/s a model trains and predicts here.

Two steps per model family. ``measure_throughput`` times training steps and prediction batches (at
least a second of each) on random tensors in the layout and precision ``comptk train`` uses: quick,
but without the loop's own costs. ``measure_loop`` then runs the real loop for a few seconds, sized
from those figures: two epochs of the engine's ``fit`` on a sample of the competition's own train
images (the run's sampler, batching, augmentation, loss and schedule; the second epoch timed), and the
run's TTA prediction of a sample. The planner uses the loop's figures: the random-tensor steps left out
costs that made first members overrun (all of Fashion-MNIST: 2,944 images/s measured, 2,464-2,699 in
the run). What the loop measurement still leaves out (per-epoch validation bookkeeping, fold start-up)
is the loop factor per model family of ``plan.py`` (``plan.LoopFactors``), re-measured on every
finished member.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config import TrainConfig
from ..metrics import get_metric
from ..train.augment import run_transform
from ..train.dataset import ImageArrayDataset
from ..train.engine import autocast_context, autocast_dtype, fit, make_optimizer, predict_proba
from ..train.models import Classifier, create_model
from ..train.tta import TTA, valid_crop

if TYPE_CHECKING:  # annotations only
    from ..competition import Competition

LOOP_SECONDS = 1.5  # each timed part of the loop measurement, at the random-tensor speed


@dataclass(frozen=True)
class Throughput:
    train_images_per_s: float  # forward + backward + optimizer step
    predict_images_per_s: float  # forward only, per view


def measure_throughput(cfg: TrainConfig, n_classes: int, device: torch.device, *, n_steps: int = 5,
                       warmup: int = 2, min_seconds: float = 1.0) -> Throughput:
    """Images/s of ``cfg``'s model at its img_size and batch_size (weights not loaded: only speed matters):
    at least ``n_steps`` timed steps, and more until ``min_seconds`` have passed (a few fast steps are noise)."""
    cfg = dataclasses.replace(cfg, pretrained=False, weights="")
    model = Classifier(create_model(cfg, n_classes)).to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    dtype = autocast_dtype(device, cfg.precision)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(cfg.batch_size, 3, cfg.img_size, cfg.img_size, generator=generator)
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (cfg.batch_size,), generator=generator).to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, dtype):
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        optimizer.step()

    model.train()
    train_steps, train_seconds = _timed(train_step, warmup, n_steps, min_seconds, device)
    model.eval()
    with torch.no_grad():
        def predict_step() -> None:
            with autocast_context(device, dtype):
                model(x)

        predict_steps, predict_seconds = _timed(predict_step, warmup, n_steps, min_seconds, device)
    return Throughput(cfg.batch_size * train_steps / train_seconds,
                      cfg.batch_size * predict_steps / predict_seconds)


def _timed(step, warmup: int, n_steps: int, min_seconds: float, device: torch.device) -> tuple[int, float]:
    """(steps, seconds) of rounds of ``n_steps`` steps, as many as last at least ``min_seconds``
    (the device is synchronised once a round, so a GPU is not held back step by step)."""
    for _ in range(warmup):
        step()
    _sync(device)
    started = time.perf_counter()
    steps = 0
    while steps == 0 or time.perf_counter() - started < min_seconds:
        for _ in range(n_steps):
            step()
        steps += n_steps
        _sync(device)
    return steps, max(time.perf_counter() - started, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_loop(cfg: TrainConfig, comp: Competition, images: np.ndarray, labels: np.ndarray, n_classes: int,
                 device: torch.device, quick: Throughput, *, seconds: float = LOOP_SECONDS,
                 seed: int = 0) -> Throughput:
    """Images/s of the real loop of ``cfg``'s model on ``comp``'s train ``images`` (uint8 N, H, W, C at
    cfg.img_size) and ``labels``: two epochs of ``fit`` on a sample sized so that an epoch takes about
    ``seconds`` at the random-tensor speed ``quick`` (the second epoch is timed: the first pays for
    warming up), then the run's TTA prediction of a sample (after a warm-up batch); per view. Weights are
    not loaded, the head is not frozen and the model is not compiled (compiling, for each new batch shape,
    would be timed): only speed matters."""
    cfg = dataclasses.replace(cfg, epochs=2, patience=0, freeze_epochs=0, pretrained=False, weights="",
                              compile=False)
    rows = np.random.default_rng(seed).permutation(len(images))
    n_fit = int(min(len(images), max(2 * cfg.batch_size, quick.train_images_per_s * seconds)))
    fit_rows, valid_rows = rows[:n_fit], rows[:min(len(images), cfg.batch_size)]  # validation is not timed
    torch.manual_seed(seed)
    model = Classifier(create_model(cfg, n_classes))
    train_set = ImageArrayDataset(images[fit_rows], labels[fit_rows], run_transform(comp, cfg, seed))
    outcome = fit(model, train_set, images[valid_rows], labels[valid_rows], cfg, get_metric(comp.metric),
                  device=device, seed=seed, n_classes=n_classes, progress=False, valid_crop=valid_crop(comp, cfg),
                  desc=f"measuring {cfg.model}")
    outcome_ips = outcome.history[-1]["train_images_per_s"]  # the second epoch: the first warms up
    views = len(TTA.get(cfg.tta)())
    n_predict = int(min(len(images), max(cfg.batch_size, quick.predict_images_per_s * seconds / views)))
    predict = functools.partial(predict_proba, model, device=device, precision=cfg.precision, tta=cfg.tta,
                                tta_merge=cfg.tta_merge)
    predict(images[rows[:cfg.batch_size]])  # warm-up: the first call pays for allocations
    started = time.perf_counter()
    predict(images[rows[:n_predict]])
    predict_seconds = max(time.perf_counter() - started, 1e-9)
    del model, train_set, outcome, predict  # the partial holds the model too
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the members train in other processes
    return Throughput(outcome_ips, n_predict * views / predict_seconds)
