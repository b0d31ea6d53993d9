"""Training and prediction throughput: comptk's loop against the compute limit of the same model.

    python benchmarks/speed.py --workdir bench/fashion [--model small_resnet] [--img-size 28] [--batch-size 128]
    python benchmarks/speed.py --workdir bench/fashion --jpeg-size 128 --train-n 2000   # JPEG set made from Fashion
    python benchmarks/speed.py --workdir bench/fashion --jpeg-size 224 --device cuda --model resnet50 \
        --batch-size 128 --epochs 2 --predict-batch-size 512                             # on a GPU

The data comes from ``comptk prepare fashion`` (needs /usr/share/datasets/fashion-mnist; on a
machine without it, prepare WORKDIR/data/fashion elsewhere and copy it over).

(a) compute limit: train steps (forward, backward, AdamW) and TTA predictions of the model on
    random tensors already in memory, in the layout and precision comptk uses;
(b) comptk: one epoch of ``engine.fit`` on fold 0 of the real competition (the same
    code path as ``comptk train``: uint8 images, augment preset, batching, the GPU path) and
    ``predict_proba`` with the TTA preset on the test images; image decoding (or reading the
    image cache, WORKDIR/cache) is reported separately. With --epochs 2 or more the train
    figure is the last epoch's (warmed up: cuDNN, torch.compile), and the mean is shown too;
(c) their ratio.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from comptk import load_competition, prepare, resolve
from comptk.data.folds import make_folds
from comptk.data.image_cache import load_competition_images
from comptk.data.layouts import read_data
from comptk.metrics import get_metric
from comptk.train.augment import train_transform
from comptk.train.dataset import ImageArrayDataset
from comptk.train.engine import (
    autocast_context,
    autocast_dtype,
    check_compile,
    fit,
    predict_proba,
    resolve_device,
)
from comptk.train.models import Classifier, create_model
from comptk.train.tta import with_tta

JPEG_TOML = """name = "fashion{size}"
metric = "accuracy"
layout = "csv"
data_dir = "data/fashion{size}"
[files]
train = "train.csv"
test = "test.csv"
sample_submission = "sample_submission.csv"
[train]
model = "small_resnet"
img_size = {size}
augment = "flip"
tta = "hflip"
"""


def make_jpeg_competition(workdir: Path, size: int, train_n: int) -> Path:
    """Fashion images upscaled to size x size, saved as JPEG, in the CSV layout."""
    folder = workdir / "competitions" / f"fashion{size}"
    data = workdir / "data" / f"fashion{size}"
    if data.exists():
        return folder
    source = workdir / "data" / "fashion"
    for split, n in (("train", train_n), ("test", max(train_n // 4, 10))):
        table = pd.read_csv(source / f"{split}.csv", dtype=str).iloc[:n]
        (data / split).mkdir(parents=True)
        paths = []
        for rel in table["img_path"]:
            out = f"{split}/{Path(rel).stem}.jpg"
            Image.open(source / rel).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(
                data / out, quality=90)
            paths.append(out)
        table["img_path"] = paths
        table.to_csv(data / f"{split}.csv", index=False)
        if split == "test":
            pd.DataFrame({"id": table["id"], "label": "Trouser"}).to_csv(data / "sample_submission.csv", index=False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "competition.toml").write_text(JPEG_TOML.format(size=size))
    return folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compute_limit(cfg, n_classes: int, device: torch.device, steps: int, predict_batch: int) -> tuple[float, float]:
    """Train and TTA-predict images/s on random tensors already on the device."""
    torch.manual_seed(0)
    model = Classifier(create_model(cfg, n_classes)).to(device).to(memory_format=torch.channels_last)
    if cfg.compile:
        model.compile()
    x = torch.rand(cfg.batch_size, 3, cfg.img_size, cfg.img_size, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, n_classes, (cfg.batch_size,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = autocast_dtype(device, cfg.precision)

    def step() -> None:
        with autocast_context(device, dtype):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: the first calls pick kernels (and compile)
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    train = steps * cfg.batch_size / (time.perf_counter() - started)
    model.eval()
    predictor = with_tta(model, cfg.tta)
    xb = torch.rand(predict_batch, 3, cfg.img_size, cfg.img_size, device=device).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad(), autocast_context(device, dtype):
        for _ in range(3):
            predictor(xb)
        _sync(device)
        started = time.perf_counter()
        out = [predictor(xb).float() for _ in range(steps)]
        torch.cat(out).cpu()
    predict = steps * predict_batch / (time.perf_counter() - started)
    return train, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench/fashion")
    parser.add_argument("--train-n", type=int, default=12000)
    parser.add_argument("--jpeg-size", type=int, default=0, help="benchmark a JPEG set of this size made from Fashion")
    parser.add_argument("--model")
    parser.add_argument("--img-size", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--epochs", type=int, default=1, help="comptk epochs on fold 0; the last one is reported")
    parser.add_argument("--predict-batch-size", type=int, default=256)
    parser.add_argument("--no-cache", action="store_true", help="decode the images, not reading the image cache")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the compute limit")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if not (workdir / "data" / "fashion").exists():
        prepare("fashion", workdir, train_n=args.train_n)
    competition = "fashion"
    if args.jpeg_size:
        competition = make_jpeg_competition(workdir, args.jpeg_size, args.train_n)
    comp = load_competition(competition, workdir)
    keys = ("model", "img_size", "batch_size", "device", "precision", "num_workers", "compile")
    cfg = resolve(comp.train_defaults(), {k: getattr(args, k) for k in keys})
    cfg = replace(cfg, epochs=args.epochs)
    device = resolve_device(cfg.device)
    if cfg.compile:
        check_compile(device)
    data = read_data(comp, comp.data_path(workdir))

    images = load_competition_images(data, cfg.img_size, workdir=workdir, cache=not args.no_cache)
    train_images, test_images = images.train, images.test
    decode = (len(train_images) + len(test_images)) / images.seconds

    limit_train, limit_predict = compute_limit(cfg, data.n_classes, device, args.steps, args.predict_batch_size)

    fold = make_folds(data.train.labels, cfg.n_folds, cfg.seed)
    tr, va = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)
    torch.manual_seed(cfg.seed)
    model = Classifier(create_model(cfg, data.n_classes))
    dataset = ImageArrayDataset(train_images[tr], data.train.labels[tr], train_transform(cfg.augment, cfg.img_size, 0))
    outcome = fit(model, dataset, train_images[va], data.train.labels[va], cfg, get_metric(comp.metric),
                  device=device, seed=0, progress=False)
    started = time.perf_counter()
    predict_proba(model, test_images, device=device, precision=cfg.precision, tta=cfg.tta,
                  batch_size=args.predict_batch_size)
    comptk_predict = len(test_images) / (time.perf_counter() - started)
    comptk_train = outcome.history[-1]["train_images_per_s"]

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"torch threads {torch.get_num_threads()}"
    print(f"{comp.name}: {cfg.model} {cfg.img_size}px, batch {cfg.batch_size}, augment {cfg.augment}, "
          f"tta {cfg.tta}, device {device} ({where}), precision {cfg.precision}, compile {cfg.compile}, "
          f"workers {cfg.num_workers}, {len(tr)} train images")
    print(f"{images.describe()}: {decode:8.0f} images/s")
    epochs = f" (last of {len(outcome.history)} epochs; mean {outcome.train_images_per_s:.0f})" if args.epochs > 1 else ""
    print(f"train   compute limit {limit_train:8.0f} images/s | comptk {comptk_train:8.0f} images/s "
          f"| ratio {comptk_train / limit_train:.2f}{epochs}")
    print(f"predict compute limit {limit_predict:8.0f} images/s | comptk {comptk_predict:8.0f} images/s "
          f"| ratio {comptk_predict / limit_predict:.2f}  (with TTA, batch {args.predict_batch_size})")


if __name__ == "__main__":
    main()
