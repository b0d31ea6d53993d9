"""Measure the machine: timed training steps and prediction batches of a model (at least a second
of each), on random tensors already in memory, in the layout and precision ``comptk train`` uses.

The planner turns these images/s into member times; the loop's own costs (augmentation,
batching, validation bookkeeping) are not in them, so ``plan.py`` multiplies by a loop factor
per model family (``plan.LoopFactors``), re-measured on every finished member.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..train.engine import autocast_context, autocast_dtype, make_optimizer
from ..train.models import Classifier, create_model


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
