"""A plain PyTorch loop: train one fold with best-epoch selection on the competition
metric, and predict class probabilities (optionally with TTA)."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn
from tqdm import autonotebook, std
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..errors import ComptkError
from ..metrics import Metric
from .augment import BatchAugment
from .dataset import ImageArrayDataset, keep_batch
from .losses import Criterion, class_weights
from .mixing import make_mixer
from .models import set_backbone_frozen
from .sampling import make_sampler
from .tta import with_tta

log = logging.getLogger("comptk")

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ComptkError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ComptkError(f"device '{name}' asked for, but this machine has no usable CUDA GPU")
    return device


def check_compile(device: torch.device) -> None:
    """Fail early, with one line, where torch.compile cannot work (e.g. no C++ compiler for a CPU)."""
    try:
        compiled = torch.compile(lambda x: torch.relu(x) * 2)
        compiled(torch.ones(4, device=device))
    except Exception as exc:  # noqa: BLE001 - inductor raises many kinds; any means no --compile here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ComptkError(
            f"--compile: torch.compile does not work on {device} here ({type(exc).__name__}: {first[:200]}); "
            f"train without --compile"
        ) from None


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX-512 BF16 or AMX), where bf16 autocast is faster than
    fp32; elsewhere oneDNN emulates bf16 and it is several times slower."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)  # private torch probes: absent on some builds
        try:
            if check is not None and check():
                return True
        except Exception:  # noqa: BLE001 - a failing probe means "not known to be there"
            pass
    return False


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """None means full fp32. 'auto' is fp16/bf16 AMP on CUDA, bf16 on a CPU with native bf16
    instructions (cpu_has_native_bf16), fp32 elsewhere."""
    if precision == "auto" and device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16" or torch.cuda.is_bf16_supported() is False:
        return torch.float16
    return torch.bfloat16


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_input(batch: torch.Tensor, device: torch.device, augment: Callable | None = None) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1], channels_last in memory (no copy of layout).

    ``augment``: a batch-level augmentation applied on the device, after the copy
    (non-blocking from the DataLoader's pinned memory on CUDA) and before the conversion.
    """
    batch = batch.to(device, non_blocking=True)
    if augment is not None:
        batch = augment(batch)
    return batch.permute(0, 3, 1, 2).float().div_(255.0)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 else decay).append(param)  # no decay on norms and biases
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Stepped once per batch."""
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.25)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.scheduler == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        if cfg.scheduler == "step":  # x0.1 after each third of training
            return 0.1 ** min(2, (3 * step) // max(1, total))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    images: np.ndarray,
    *,
    device: torch.device,
    precision: str = "auto",
    tta: str = "none",
    tta_merge: str = "mean",
    crop: float | None = None,
    crop_which: str = "five",
    batch_size: int = 256,
) -> np.ndarray:
    """Class probabilities (N, C) float32 for uint8 images (N, H, W, 3).

    ``crop``: predict each image as crops of that fraction of each side (``crop_which``:
    five = corners and centre, center = one), probabilities averaged (tta.py).
    """
    model.eval()
    predictor = with_tta(model, tta, tta_merge, crop=crop, crop_which=crop_which)
    dtype = autocast_dtype(device, precision)
    out = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(images[start : start + batch_size])
        if device.type == "cuda":
            batch = batch.pin_memory()  # so the copy is asynchronous
        x = to_input(batch, device)
        with autocast_context(device, dtype):
            out.append(predictor(x).float())  # kept on the device: no wait per batch
    return torch.cat(out).cpu().numpy().astype(np.float32)


def bar_redraws_in_place() -> bool:
    """True where a progress bar redraws in place: stderr is a terminal, or tqdm.auto draws a Jupyter widget.
    Elsewhere (a file or a pipe: nohup, CI, a notebook's saved log) its \\r frames would pile up in the
    log, so training writes one line per epoch instead."""
    if sys.stderr is not None and sys.stderr.isatty():
        return True
    return autonotebook.tqdm is not std.tqdm  # tqdm picked its notebook widget


def epoch_line(desc: str, record: dict, n_epochs: int, metric: str) -> str:
    """One epoch for people, e.g. 'fold 1/5 epoch 3/10: loss 0.4321, valid loss 0.3810, valid accuracy 0.8750,
    lr 0.000655, 12.3 s, 1234 images/s'."""
    where = f"{desc} epoch" if desc else "epoch"
    return (f"{where} {record['epoch']}/{n_epochs}: loss {record['train_loss']:.4f}, valid loss "
            f"{record['valid_loss']:.4f}, valid {metric} {record[f'valid_{metric}']:.4f}, lr {record['lr']:.3g}, "
            f"{record['seconds']:.1f} s, {record['train_images_per_s']:.0f} images/s")


def device_augment(transform, on_device: bool) -> BatchAugment | None:
    """The transform to run on the device after the copy: only torch batch augmentations
    (albumentations pipelines work on numpy batches, so they stay in the loader)."""
    return transform if on_device and isinstance(transform, BatchAugment) else None


@dataclass
class FoldOutcome:
    state_dict: dict
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    train_images: int = 0

    @property
    def train_images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else float("nan")


def fit(
    model: nn.Module,
    train_set: ImageArrayDataset,
    valid_images: np.ndarray,
    valid_labels: np.ndarray,
    cfg: TrainConfig,
    metric: Metric,
    *,
    device: torch.device,
    seed: int,
    n_classes: int | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    desc: str = "",
    progress: bool = True,
    valid_crop: float | None = None,
    augment_on_device: bool | None = None,
) -> FoldOutcome:
    """The epoch loop of one fold: train for cfg.epochs (or until early stopping) and keep the weights
    of the best epoch by the competition metric on the validation rows (the EMA weights when
    ``cfg.ema_decay`` is set; predicted as crops of ``valid_crop`` of each side when the
    competition's test images are crops).

    With ``cfg.compile`` the model is compiled in place (``nn.Module.compile``): it stays
    compiled for the predictions that follow, and its state dict keeps the plain names.
    A batch-level augmentation runs on the device after the copy when ``augment_on_device``
    (default: on CUDA); its random draws are the same either way.
    ``progress``: a progress bar where it redraws in place (bar_redraws_in_place), else each epoch's
    line logged at INFO; the epoch lines are always logged (DEBUG otherwise, for the run's log file).
    """
    model.to(device).to(memory_format=torch.channels_last)
    if cfg.compile:
        model.compile()
    n_classes = n_classes or int(max(train_set.labels.max(), valid_labels.max())) + 1
    if augment_on_device is None:
        augment_on_device = device.type == "cuda"
    augment = device_augment(train_set.transform, augment_on_device)
    if augment is not None:
        train_set = train_set.without_batch_transform()
    loader = _train_loader(train_set, cfg, seed, device)
    step = _Stepper.build(model, cfg, device, n_classes, train_set.labels, len(loader), augment)
    evaluated = step.ema.module if step.ema is not None else model
    sign = 1.0 if metric.greater_is_better else -1.0
    outcome = FoldOutcome(state_dict={}, best_epoch=-1, best_score=math.nan)
    show_bar = progress and bar_redraws_in_place()
    epoch_level = logging.INFO if progress and not show_bar else logging.DEBUG
    bar = tqdm(total=cfg.epochs * len(loader), desc=desc, disable=not show_bar, leave=False, dynamic_ncols=True)
    for epoch in range(cfg.epochs):
        model.train()
        if cfg.freeze_epochs:
            set_backbone_frozen(model, epoch < cfg.freeze_epochs)
        started = time.perf_counter()
        loss_sum, seen = step.epoch(loader, bar, epoch, desc)
        seconds = time.perf_counter() - started
        outcome.train_seconds += seconds
        outcome.train_images += seen
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            **_evaluate(evaluated, valid_images, valid_labels, cfg, metric, device, valid_crop),
            "lr": step.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            "train_images_per_s": seen / seconds if seconds else float("nan"),
        }
        outcome.history.append(record)
        score = record[f"valid_{metric.name}"]
        bar.set_postfix(epoch=epoch + 1, loss=f"{record['train_loss']:.4f}", **{metric.name: f"{score:.4f}"},
                        img_s=f"{record['train_images_per_s']:.0f}")
        log.log(epoch_level, "%s", epoch_line(desc, record, cfg.epochs, metric.name))
        if on_epoch:
            on_epoch(record)
        if outcome.best_epoch < 0 or sign * score > sign * outcome.best_score:
            outcome.best_score, outcome.best_epoch = score, epoch + 1
            outcome.state_dict = {k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()}
        elif cfg.patience and epoch + 1 - outcome.best_epoch >= cfg.patience:
            break
    bar.close()
    if cfg.freeze_epochs:
        set_backbone_frozen(model, False)
    model.load_state_dict(outcome.state_dict)
    return outcome


def _train_loader(train_set: ImageArrayDataset, cfg: TrainConfig, seed: int,
                  device: torch.device) -> torch.utils.data.DataLoader:
    """Batches of the training rows, drawn by the configured sampler from a generator seeded per fold."""
    generator = torch.Generator().manual_seed(seed)
    sampler = make_sampler(train_set.labels, cfg.sampler, cfg.class_cap, generator)
    batch_sampler = torch.utils.data.BatchSampler(sampler, cfg.batch_size, drop_last=len(sampler) > cfg.batch_size)
    return torch.utils.data.DataLoader(
        train_set,
        batch_sampler=batch_sampler,
        collate_fn=keep_batch,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.num_workers > 0,
    )


@dataclass
class _Stepper:
    """Everything one training step needs (optimizer, schedule, loss, mixing, EMA), and the count of
    optimizer steps so far (the EMA's warm-up reads it)."""

    model: nn.Module
    cfg: TrainConfig
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: Any
    dtype: torch.dtype | None
    scaler: Any
    criterion: Criterion
    mixer: Any
    ema: ModelEmaV3 | None
    augment: BatchAugment | None
    batches: int
    updates: int = 0

    @classmethod
    def build(cls, model: nn.Module, cfg: TrainConfig, device: torch.device, n_classes: int,
              labels_seen: np.ndarray, batches: int, augment: BatchAugment | None) -> _Stepper:
        optimizer = make_optimizer(model, cfg)
        scheduler = make_scheduler(optimizer, cfg, math.ceil(batches / cfg.accum_steps))  # once per optimizer step
        dtype = autocast_dtype(device, cfg.precision)
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        criterion = Criterion(cfg.loss, label_smoothing=cfg.label_smoothing, focal_gamma=cfg.focal_gamma,
                              class_weights=class_weights(labels_seen, n_classes, cfg.class_weights))
        mixer = make_mixer(cfg, n_classes)
        ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema_decay else None
        return cls(model, cfg, device, optimizer, scheduler, dtype, scaler, criterion, mixer, ema, augment, batches)

    def epoch(self, loader: torch.utils.data.DataLoader, bar: tqdm, epoch: int, desc: str) -> tuple[float, int]:
        """One pass over the loader; (sum of loss x batch size, rows seen)."""
        model, device, accum = self.model, self.device, self.cfg.accum_steps
        # Reading the loss waits for the device: on a CPU that costs nothing, on a GPU it would stop
        # the loader from preparing the next batch while the GPU computes, so read it every 50 steps.
        sync_every = 1 if device.type == "cpu" else 50
        loss_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        loss_sum, seen = 0.0, 0
        running = torch.zeros((), dtype=loss_dtype, device=device)  # sum of loss x batch size
        for i, (images, labels) in enumerate(loader):
            x = to_input(images, device, self.augment)
            y = labels.to(device, non_blocking=True)
            target = y
            if self.mixer is not None:
                x, target = self.mixer(x, y)
            with autocast_context(device, self.dtype):
                loss = self.criterion(model(x), target)
            if i % accum == 0:
                self.optimizer.zero_grad(set_to_none=True)
            scaled = loss / accum if accum > 1 else loss
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            if (i + 1) % accum == 0 or i + 1 == self.batches:
                _optimizer_step(model, self.optimizer, self.scaler, self.cfg.clip_grad_norm)
                self.scheduler.step()
                self.updates += 1
                if self.ema is not None:
                    self.ema.update(model, step=self.updates)
            running += loss.detach().to(loss_dtype) * len(y)
            seen += len(y)
            bar.update(1)
            if (i + 1) % sync_every == 0 or i + 1 == self.batches:
                loss_sum = running.item()
                if not math.isfinite(loss_sum):
                    raise ComptkError(f"{desc}: training loss became {loss_sum} in epoch {epoch + 1}; lower --lr")
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.4f}", refresh=False)
        return loss_sum, seen


def _evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, cfg: TrainConfig, metric: Metric,
              device: torch.device, crop: float | None) -> dict[str, float]:
    """The validation rows' metric and log loss after an epoch (no TTA: the views come at prediction)."""
    proba = predict_proba(model, images, device=device, precision=cfg.precision, crop=crop, crop_which=cfg.valid_crop)
    score = metric.score_proba(labels, proba)
    valid_loss = float(-np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-12, None)).mean())
    return {"valid_loss": valid_loss, f"valid_{metric.name}": score}


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, scaler, clip_grad_norm: float) -> None:
    """One optimizer step over the accumulated gradients, clipped to a norm when asked."""
    if scaler is not None:
        if clip_grad_norm:
            scaler.unscale_(optimizer)  # clip the true gradients, not the loss-scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        if clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
