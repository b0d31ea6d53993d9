"""run_cv(): the K-fold loop. Each fold trains, then predicts its validation rows (OOF)
and the test rows; finished folds are kept on disk, so a killed run resumes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from . import runs
from .augment import AUGMENTS, train_transform
from .competition import Competition, load_competition
from .config import TrainConfig, resolve
from .data import CompetitionData, ImageArrayDataset, read_data
from .engine import FoldOutcome, check_compile, predict_proba, resolve_device, train_one_fold
from .errors import ComptkError
from .folds import folds_digest, load_or_make_folds
from .image_cache import CompetitionImages, load_competition_images
from .metrics import get_metric
from .models import Classifier, create_model
from .submission import make_submission
from .tta import TTA

log = logging.getLogger("comptk")


@dataclass(frozen=True)
class RunResult:
    name: str
    paths: runs.RunPaths
    sidecar: dict

    @property
    def cv(self) -> float:
        return self.sidecar["cv"]["oof"]


def _check_same_run(paths: runs.RunPaths, record: dict[str, Any]) -> None:
    """A run folder may only be resumed by the same settings on the same data."""
    if not paths.config.exists():
        runs.save_json(paths.config, record)
        return
    saved = runs.load_json(paths.config)
    diffs = [k for k in record if k != "config" and saved.get(k) != record[k]]
    diffs += [
        f"{k} ({saved.get('config', {}).get(k)!r} -> {v!r})"
        for k, v in record["config"].items()
        if saved.get("config", {}).get(k) != v
    ]
    if diffs:
        raise ComptkError(
            f"run '{paths.name}' exists in {paths.run_dir} with other settings: {', '.join(diffs)}; "
            f"resume it with the same settings or choose another --name"
        )


def fit_fold(
    k: int, data: CompetitionData, cfg: TrainConfig, fold: np.ndarray, train_images: np.ndarray,
    device: torch.device, *, on_epoch: Callable[[dict], None] | None = None, progress: bool = True,
) -> tuple[Classifier, FoldOutcome]:
    """Train fold k (its validation rows are ``fold == k``); the model comes back with the
    best epoch's weights. Shared by run_cv and the tuner, so a trial trains exactly as a run."""
    metric = get_metric(data.competition.metric)
    train_idx, valid_idx = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
    seed = cfg.seed + k
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = Classifier(create_model(cfg, data.n_classes))
    train_set = ImageArrayDataset(
        train_images[train_idx], data.train.labels[train_idx], train_transform(cfg.augment, cfg.img_size, seed)
    )
    outcome = train_one_fold(
        model, train_set, train_images[valid_idx], data.train.labels[valid_idx], cfg, metric,
        device=device, seed=seed, on_epoch=on_epoch, desc=f"fold {k + 1}/{cfg.n_folds}", progress=progress,
    )
    return model, outcome


def _train_fold(
    k: int, data: CompetitionData, cfg: TrainConfig, fold: np.ndarray, train_images: np.ndarray,
    test_images: np.ndarray, paths: runs.RunPaths, device: torch.device, progress: bool,
) -> dict:
    metric = get_metric(data.competition.metric)
    train_idx, valid_idx = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
    history: list[dict] = []

    def on_epoch(record: dict) -> None:
        history.append({"fold": k, **record})
        runs.save_csv(paths.fold_metrics(k), pd.DataFrame(history))
        log.debug("fold %d epoch %d: %s", k, record["epoch"],
                 ", ".join(f"{key}={val:.4g}" for key, val in record.items() if key != "epoch"))

    model, outcome = fit_fold(k, data, cfg, fold, train_images, device, on_epoch=on_epoch, progress=progress)
    with runs.atomic_path(paths.checkpoint(k)) as tmp:
        save_file({key: v.contiguous() for key, v in outcome.state_dict.items()}, str(tmp))

    started = time.perf_counter()
    oof = predict_proba(model, train_images[valid_idx], device=device, precision=cfg.precision, tta=cfg.tta)
    test = predict_proba(model, test_images, device=device, precision=cfg.precision, tta=cfg.tta)
    predict_seconds = time.perf_counter() - started
    runs.save_npy(paths.fold_oof(k), oof)
    runs.save_npy(paths.fold_test(k), test)
    result = {
        "fold": k,
        "n_train": int(len(train_idx)),
        "n_valid": int(len(valid_idx)),
        "score": metric.score_proba(data.train.labels[valid_idx], oof),
        "best_epoch": outcome.best_epoch,
        "best_epoch_score_without_tta": outcome.best_score,
        "epochs_run": len(outcome.history),
        "train_seconds": outcome.train_seconds,
        "train_images_per_s": outcome.train_images_per_s,
        "predict_seconds": predict_seconds,
        "predict_images_per_s": (len(valid_idx) + len(test_images)) / predict_seconds,
    }
    runs.save_json(paths.fold_result(k), result)  # last: marks the fold finished
    log.info("fold %d: %s %.4f (best epoch %d, %.0f train images/s)", k, metric.name,
             result["score"], outcome.best_epoch, outcome.train_images_per_s)
    return result


def run_cv(
    competition: Competition | str | Path,
    cfg: TrainConfig | None = None,
    *,
    workdir: str | Path = ".",
    data_dir: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
    cache: bool = True,
    **overrides: Any,
) -> RunResult:
    """Train K folds; write OOF and test probabilities, the sidecar and a submission.

    ``cfg`` defaults to code defaults < the competition's [train] table < ``overrides``.
    Re-running an interrupted run (same name, same settings) skips finished folds.
    ``cache``: read/write decoded images under WORKDIR/cache (image_cache.py); it never
    changes results, so it is not a training setting.
    """
    started = time.perf_counter()
    workdir = Path(workdir)
    comp = competition if isinstance(competition, Competition) else load_competition(competition, workdir)
    cfg = cfg or resolve(comp.train_defaults(), overrides, where=f"{comp.source} [train]")
    name = runs.check_run_name(name) if name else runs.new_run_name(comp.name, cfg.model)
    paths = runs.RunPaths(workdir, name)
    if paths.is_finished():
        raise ComptkError(f"run '{name}' is already finished ({paths.sidecar}); choose another --name")

    data = read_data(comp, comp.data_path(workdir, data_dir))
    # Fail on a bad device, model, weights file or preset name before anything is written.
    device = resolve_device(cfg.device)
    create_model(cfg, data.n_classes)
    AUGMENTS.get(cfg.augment)
    TTA.get(cfg.tta)
    if cfg.compile:
        check_compile(device)
    fold, folds_file = load_or_make_folds(workdir, comp.name, data.train, cfg.n_folds, cfg.seed, data.classes)
    record = {
        "competition": comp.name,
        "competition_file": str(Path(comp.source).resolve()) if comp.source else None,
        "classes": list(data.classes),
        "train_ids_digest": runs.digest(data.train.ids),
        "test_ids_digest": runs.digest(data.test.ids),
        "folds_digest": folds_digest(data.train.ids, fold),
        "config": cfg.to_dict(),
    }
    # A bad image fails here, before any run file is written.
    images = load_competition_images(data, cfg.img_size, workdir=workdir, cache=cache)
    train_images, test_images = images.train, images.test
    _check_same_run(paths, record)
    handler = logging.FileHandler(paths.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)  # per-epoch lines reach the run log; restored after the run
    try:
        log.info("run %s: %s, %d train / %d test images, %d classes, %d folds, device %s",
                 name, comp.name, len(data.train.ids), len(data.test.ids), data.n_classes, cfg.n_folds, device)
        log.info("%s", images.describe())
        results = []
        for k in range(cfg.n_folds):
            if paths.fold_result(k).exists():
                log.info("fold %d: finished earlier, kept", k)
                results.append(runs.load_json(paths.fold_result(k)))
            else:
                results.append(_train_fold(k, data, cfg, fold, train_images, test_images, paths, device, progress))
        return _finish(data, cfg, fold, folds_file, paths, results, record, images, started)
    finally:
        log.setLevel(level)
        log.removeHandler(handler)
        handler.close()


def _finish(
    data: CompetitionData, cfg: TrainConfig, fold: np.ndarray, folds_file: Path, paths: runs.RunPaths,
    results: list[dict], record: dict, images: CompetitionImages, started: float,
) -> RunResult:
    metric = get_metric(data.competition.metric)
    oof = np.zeros((len(data.train.ids), data.n_classes), dtype=np.float32)
    test = np.zeros((len(data.test.ids), data.n_classes), dtype=np.float64)
    for k in range(cfg.n_folds):
        oof[fold == k] = np.load(paths.fold_oof(k))
        test += np.load(paths.fold_test(k))
    test = (test / cfg.n_folds).astype(np.float32)
    per_fold = [r["score"] for r in results]
    sidecar = {
        "name": paths.name,
        **{k: v for k, v in record.items() if k != "config"},
        "metric": metric.name,
        "n_train": len(data.train.ids),
        "n_test": len(data.test.ids),
        "n_folds": cfg.n_folds,
        "folds_file": str(Path(folds_file).resolve()),  # absolute: an ensemble may run from elsewhere
        "data_dir": str(data.data_dir.resolve()),
        "cv": {
            "oof": metric.score_proba(data.train.labels, oof),
            "mean_of_folds": float(np.mean(per_fold)),
            "std_of_folds": float(np.std(per_fold)),
            "per_fold": per_fold,
            "note": "'oof' is the metric of the pooled out-of-fold predictions (the one to select on); "
                    "'mean_of_folds' averages the per-fold scores (differs for macro F1)",
        },
        "folds": results,
        "config": cfg.to_dict(),
        "seed": cfg.seed,
        "versions": runs.library_versions(),
        "timings": {
            "decode_seconds": images.seconds,  # this session's; near 0 when read from the image cache
            "image_cache": images.cache,
            "train_seconds": sum(r["train_seconds"] for r in results),
            "predict_seconds": sum(r["predict_seconds"] for r in results),
            "wall_seconds_this_session": time.perf_counter() - started,
            "train_images_per_s": float(np.mean([r["train_images_per_s"] for r in results])),
            "predict_images_per_s": float(np.mean([r["predict_images_per_s"] for r in results])),
        },
        "artifacts": {
            "oof": str(paths.oof),
            "preds": str(paths.preds),
            "submission": str(paths.submission),
            "run_dir": str(paths.run_dir),
        },
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    runs.save_npy(paths.oof, oof)
    runs.save_npy(paths.preds, test)
    runs.save_csv(paths.submission, make_submission(data, test))
    runs.save_csv(paths.metrics, pd.concat([pd.read_csv(paths.fold_metrics(k)) for k in range(cfg.n_folds)]))
    runs.save_json(paths.sidecar, sidecar)  # last: marks the run finished
    log.debug("run %s: CV %s %.4f (pooled OOF), %.4f +- %.4f (mean of folds)", paths.name, metric.name,
             sidecar["cv"]["oof"], sidecar["cv"]["mean_of_folds"], sidecar["cv"]["std_of_folds"])
    return RunResult(paths.name, paths, sidecar)
