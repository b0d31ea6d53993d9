"""run_cv(): the K-fold loop. Each fold trains, then predicts its validation rows (OOF)
and the test rows; finished folds are kept on disk, so a killed run resumes.

    run_cv ─ preflight.check_run ─ folds ─ images ─ start_record (checked against a resumed run)
           └ for each fold: run_fold (fit_fold: build the model + engine.fit; predict OOF + test; save)
           └ write_run (pool the folds, the run record, submission)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from .. import artifacts
from ..competition import Competition, load_competition
from ..config import TrainConfig, check_pretrained_allowed, resolve_run
from ..data.facts import competition_facts, empty_classes_note, train_counts
from ..data.folds import folds_digest, labels_digest, load_or_make_folds
from ..data.image_cache import CompetitionImages, load_competition_images
from ..data.layouts import read_data
from ..data.tables import CompetitionData
from ..errors import ComptkError
from ..experiments.trackers import Tracker
from ..label_shift import CORRECTIONS, assess_label_shift, save_corrected, summary_line
from ..metrics import get_metric
from ..submission import make_submission
from .augment import run_transform, without_crops
from .dataset import ImageArrayDataset
from .engine import FoldOutcome, autocast_dtype, fit, predict_proba
from .models import Classifier, create_model
from .preflight import check_not_finished, check_run
from .pseudo import PseudoLabels, check_same_folds
from .tta import describe_test_time, valid_crop

log = logging.getLogger("comptk")
RESUME_FIX = "resume it with the same data and settings or choose another --name"


@dataclass(frozen=True)
class RunResult:
    name: str
    paths: artifacts.RunPaths
    record: artifacts.RunRecord

    @property
    def cv(self) -> float:
        return self.record.cv.oof

    @property
    def partial(self) -> bool:
        return self.record.is_partial

    @property
    def sidecar(self) -> dict[str, Any]:
        """The sidecar's JSON object as written (plain data for notebooks; comptk reads ``record``)."""
        return self.record.to_json()

    def summary(self) -> str:
        """Two lines for people (what `comptk train` prints): the CV both ways, saying which is which,
        the folds of a partial run, and the submission file."""
        record, cv = self.record, self.record.cv
        partial = f" [partial: {_trained_folds(record.trained_folds, record.n_folds)}]" if self.partial else ""
        shift = summary_line(record.label_shift)
        return (f"run {self.name}: CV {record.metric} {cv.oof:.4f} (pooled OOF), "
                f"{cv.mean_of_folds:.4f} +- {cv.std_of_folds:.4f} (mean of folds){partial}\n"
                + (f"{shift}\n" if shift else "") + f"submission: {self.paths.submission}")


def fold_label(k: int, n_folds: int) -> str:
    """How logs and progress bars name fold index k: 'fold 1/5' for k = 0 (fold indices in files and
    --folds-subset are 0-based; people count from 1, as for epochs)."""
    return f"fold {k + 1}/{n_folds}"


def _trained_folds(trained: Sequence[int], n_folds: int) -> str:
    """'trained folds 1/5, 3/5 (--folds-subset 0,2)': the log's names and the flag that trains them."""
    return (f"trained fold{'s' if len(trained) > 1 else ''} {', '.join(f'{k + 1}/{n_folds}' for k in trained)} "
            f"(--folds-subset {','.join(map(str, trained))})")


def start_record(comp: Competition, cfg: TrainConfig, data: CompetitionData, *, fold: np.ndarray | None = None,
                 images: CompetitionImages | None = None, pseudo: PseudoLabels | None = None) -> artifacts.RunRecord:
    """What a run is as it starts: its identity (artifacts.IDENTITY_KEYS), saved in runs/RUN/config.json
    and compared when it resumes. Without ``fold`` or ``images`` their digests are left out (None)."""
    train_images, test_images = images.digests() if images is not None else (None, None)
    fixes = tuple({"id": i, "from": old, "to": new} for i, old, new in data.train.label_fixes)
    return artifacts.RunRecord(
        competition=comp.name,
        competition_file=str(Path(comp.source).resolve()) if comp.source else None,
        classes=tuple(data.classes),
        train_ids_digest=artifacts.digest(data.train.ids),
        test_ids_digest=artifacts.digest(data.test.ids),
        train_labels_digest=labels_digest(data.train),
        train_images_digest=train_images,
        test_images_digest=test_images,
        folds_digest=folds_digest(data.train.ids, fold) if fold is not None else None,
        test_time=describe_test_time(comp, cfg),
        augment_pipeline=[dict(t) for t in comp.augments[cfg.augment]] if cfg.augment in comp.augments else None,
        pseudo_labels=pseudo.summary(data.classes, len(data.test.ids)) if pseudo is not None else None,
        label_fixes=fixes or None,  # the declaration's [label_fixes], as applied: id, label in the data, label used
        config=cfg.to_dict(),
    )


def fit_fold(
    k: int, data: CompetitionData, cfg: TrainConfig, fold: np.ndarray, train_images: np.ndarray,
    device: torch.device, *, on_epoch: Callable[[dict], None] | None = None, progress: bool = True,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Classifier, FoldOutcome]:
    """Train fold k (its validation rows are ``fold == k``); the model comes back with the
    best epoch's weights. ``extra`` (images, labels) join the training rows only (pseudo-labels).
    Shared by run_cv and the tuner, so a trial trains exactly as a run."""
    metric = get_metric(data.competition.metric)
    train_idx, valid_idx = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
    seed = cfg.seed + k
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = Classifier(create_model(cfg, data.n_classes))
    fit_images, fit_labels = train_images[train_idx], data.train.labels[train_idx]
    if extra is not None:  # pseudo-labelled test rows join the training rows only
        fit_images = np.concatenate([fit_images, extra[0]])
        fit_labels = np.concatenate([fit_labels, extra[1]])
    # pseudo-labelled test images of a competition with test-time crops are crops at the test scale already: the
    # per-image pipeline (crop-to-test by default) would crop them again, so they get it without its crops
    transform = run_transform(data.competition, cfg, seed)
    plain_from = len(train_idx) if extra is not None and data.competition.has_test_crop else None
    train_set = ImageArrayDataset(fit_images, fit_labels, transform, plain_from,
                                  without_crops(transform, seed) if plain_from is not None else None)
    outcome = fit(
        model, train_set, train_images[valid_idx], data.train.labels[valid_idx], cfg, metric,
        device=device, seed=seed, n_classes=data.n_classes, on_epoch=on_epoch,
        desc=fold_label(k, cfg.n_folds), progress=progress, valid_crop=valid_crop(data.competition, cfg),
    )
    return model, outcome


def run_fold(
    k: int, data: CompetitionData, cfg: TrainConfig, fold: np.ndarray, train_images: np.ndarray,
    test_images: np.ndarray, paths: artifacts.RunPaths, device: torch.device, progress: bool, tracker: Tracker,
    pseudo: PseudoLabels | None = None,
) -> dict:
    """Fold k of a run: fit it (fit_fold), save its checkpoint, predict its validation rows (OOF, at the
    validation crop) and the test rows, save both; its result.json, written last, marks it finished."""
    metric = get_metric(data.competition.metric)
    train_idx, valid_idx = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
    history: list[dict] = []

    def on_epoch(record: dict) -> None:
        history.append({"fold": k, **record})
        artifacts.save_csv(paths.fold_metrics(k), pd.DataFrame(history))
        tracker.log_epoch(k, record)  # the epoch's log line is the engine's

    if pseudo is not None:
        rows, labels = pseudo.for_fold(k)
        extra = (test_images[rows], labels)
    else:
        extra = None
    model, outcome = fit_fold(k, data, cfg, fold, train_images, device, on_epoch=on_epoch, progress=progress,
                              extra=extra)
    with artifacts.atomic_path(paths.checkpoint(k)) as tmp:
        save_file({key: v.contiguous() for key, v in outcome.state_dict.items()}, str(tmp))

    started = time.perf_counter()
    views = {"device": device, "precision": cfg.precision, "tta": cfg.tta, "tta_merge": cfg.tta_merge}
    oof = predict_proba(model, train_images[valid_idx], **views, crop=valid_crop(data.competition, cfg),
                        crop_which=cfg.valid_crop)
    test = predict_proba(model, test_images, **views)  # test images as they are
    predict_seconds = time.perf_counter() - started
    artifacts.save_npy(paths.fold_oof(k), oof)
    artifacts.save_npy(paths.fold_test(k), test)
    result = {
        "fold": k,
        "n_train": int(len(train_idx)),
        "n_pseudo": len(extra[1]) if extra is not None else 0,
        "n_valid": int(len(valid_idx)),
        "score": metric.score_proba(data.train.labels[valid_idx], oof),
        "best_epoch": outcome.best_epoch,
        "best_epoch_score_without_tta": outcome.best_score,
        "epochs_run": len(outcome.history),
        "device": str(device),
        "autocast": str(autocast_dtype(device, cfg.precision) or "none").replace("torch.", ""),
        "train_seconds": outcome.train_seconds,
        "train_images_per_s": outcome.train_images_per_s,
        "predict_seconds": predict_seconds,
        "predict_images_per_s": (len(valid_idx) + len(test_images)) / predict_seconds,
    }
    artifacts.save_json(paths.fold_result(k), result)  # last: marks the fold finished
    log.info("%s: %s %.4f (best epoch %d, %.0f train images/s)", fold_label(k, cfg.n_folds), metric.name,
             result["score"], outcome.best_epoch, outcome.train_images_per_s)
    return result


def run_cv(
    competition: Competition | str | Path,
    settings: TrainConfig | Mapping[str, Any] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    workdir: str | Path = ".",
    data_dir: str | Path | None = None,
    name: str | None = None,
    progress: bool = True,
    folds_subset: Sequence[int] | None = None,
    tracker: str = "none",
    plots: bool = True,
    cache: bool = True,
    label_shift: str = "none",
) -> RunResult:
    """Train K folds; write OOF and test probabilities, the run record (sidecar), a submission and plots.

    ``settings``: a resolved TrainConfig, or training settings (``{"epochs": 3}``) resolved as
    code defaults < the competition's [train] table < ``base`` (a settings file, a study's best
    trial) < ``settings`` (config.resolve_run).
    Re-running an interrupted run (same name, same settings, same data) skips finished folds;
    other settings, train labels or image contents are refused.
    ``folds_subset`` (fold indices) trains only those folds: a *partial* run whose sidecar lists
    ``folds_trained``, whose CV covers those folds' rows only and whose other OOF rows are NaN;
    the same call without it later trains the remaining folds. ``tracker``: none, mlflow or wandb
    (also logged there; the local files stay the record). ``plots``: write runs/RUN/*.png.
    ``cache``: read/write decoded images under WORKDIR/cache (image_cache.py); it never
    changes results, so it is not a training setting.
    ``label_shift``: em also writes test probabilities corrected for the estimated test class prior
    (preds/label_shift/NAME.npy) and the submission from them; OOF and preds/NAME.npy stay as trained.
    Post-processing only, so not a training setting either; the estimate is always recorded.
    """
    started = time.perf_counter()
    if label_shift not in CORRECTIONS:
        raise ComptkError(f"label_shift '{label_shift}': choose one of {', '.join(CORRECTIONS)}")
    workdir = Path(workdir)
    comp = competition if isinstance(competition, Competition) else load_competition(competition, workdir)
    if isinstance(settings, TrainConfig):
        cfg = settings
        if not comp.pretrained_allowed:
            check_pretrained_allowed(comp.name, comp.source, cfg)
    else:
        facts = lambda: competition_facts(comp, comp.data_path(workdir, data_dir))  # noqa: E731 - for "auto" settings
        cfg = resolve_run(comp, settings, base=base, facts=facts)
    name = artifacts.check_run_name(name) if name else artifacts.new_run_name(comp.name, cfg.model)
    paths = artifacts.RunPaths(workdir, name)
    data = read_data(comp, comp.data_path(workdir, data_dir))
    cleared = check_run(comp, cfg, data, workdir=workdir, paths=paths, folds_subset=folds_subset, tracker=tracker)
    empty = empty_classes_note(data.classes, train_counts(data))
    if empty:  # legal (a class of the test set only), but the model learns nothing of it
        log.warning("%s: %s", comp.name, empty)
    fold, folds_file = load_or_make_folds(workdir, comp.name, data.train, cfg.n_folds, cfg.folds_seed, data.classes)
    check_same_folds(cleared.pseudo, folds_digest(data.train.ids, fold), cfg.n_folds)
    # A bad image fails here, before any run file is written.
    images = load_competition_images(data, cfg.img_size, workdir=workdir, cache=cache)
    record = start_record(comp, cfg, data, fold=fold, images=images, pseudo=cleared.pseudo)
    logger = cleared.tracker
    with _claim(paths, record, cleared.wanted), _run_log(paths):
        try:
            log.info("run %s: %s, %d train / %d test images, %d classes, %d folds, device %s", name, comp.name,
                     len(data.train.ids), len(data.test.ids), data.n_classes, cfg.n_folds, cleared.device)
            logger.start(name, comp.name, {**cfg.to_dict(), "competition": comp.name, "run": name})
            log.info("%s", images.describe())
            results = []
            for k in range(cfg.n_folds):
                if paths.fold_result(k).exists():
                    log.info("%s: finished earlier, kept", fold_label(k, cfg.n_folds))
                    results.append(artifacts.load_json(paths.fold_result(k)))
                elif k in cleared.wanted:
                    results.append(run_fold(k, data, cfg, fold, images.train, images.test, paths, cleared.device,
                                            progress, logger, cleared.pseudo))
            result = write_run(data, cfg, fold, folds_file, paths, results, record, images, started, label_shift)
            written = _write_plots(result, data) if plots else []
            logger.finish(result.record, [paths.sidecar, paths.submission, paths.metrics, *written])
            return result
        except BaseException:
            logger.fail()
            raise


@contextlib.contextmanager
def _claim(paths: artifacts.RunPaths, record: artifacts.RunRecord, wanted: list[int]) -> Iterator[None]:
    """Hold the run's lock while it trains: the same run started twice trains each fold once. The
    second waits (one printed line), then finds the run finished or resumes it (its finished folds
    kept), so the checks and the first write of config.json happen under the lock."""
    with artifacts.run_lock(paths, on_wait=log.warning):
        check_not_finished(paths, wanted)  # again: another process may have trained it while this one waited
        artifacts.check_same_run(paths, record.identity(), fix=RESUME_FIX)
        if not paths.config.exists():
            artifacts.write_identity(paths, record)
        yield


@contextlib.contextmanager
def _run_log(paths: artifacts.RunPaths) -> Iterator[None]:
    """Log to runs/RUN/log.txt, per-epoch lines included, for the duration of the run."""
    handler = logging.FileHandler(paths.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)  # per-epoch lines reach the run log; restored after the run
    try:
        yield
    finally:
        log.setLevel(level)
        log.removeHandler(handler)
        handler.close()


def _pool_folds(data: CompetitionData, fold: np.ndarray, paths: artifacts.RunPaths,
                trained: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The run's OOF (each trained fold's validation rows) and test probabilities (mean of the folds)."""
    # Rows of folds not trained (a partial run) stay NaN: never mistaken for predictions.
    oof = np.full((len(data.train.ids), data.n_classes), np.nan, dtype=np.float32)
    test = np.zeros((len(data.test.ids), data.n_classes), dtype=np.float64)
    for k in trained:
        oof[fold == k] = np.load(paths.fold_oof(k))
        test += np.load(paths.fold_test(k))
    return oof, (test / len(trained)).astype(np.float32)


def write_run(
    data: CompetitionData, cfg: TrainConfig, fold: np.ndarray, folds_file: Path, paths: artifacts.RunPaths,
    results: list[dict], start: artifacts.RunRecord, images: CompetitionImages, started: float,
    label_shift: str = "none",
) -> RunResult:
    """Pool the trained folds and write the run: oof, preds, submission, metrics.csv and, last, the
    record (its presence marks the run finished)."""
    metric = get_metric(data.competition.metric)
    trained = [r["fold"] for r in results]
    oof, test = _pool_folds(data, fold, paths, trained)
    rows = np.isin(fold, trained)
    per_fold = [r["score"] for r in results]
    partial = len(trained) < cfg.n_folds
    if partial:
        log.info("run %s: partial, %s; CV covers their rows only", paths.name, _trained_folds(trained, cfg.n_folds))
    cv = artifacts.CVScores(
        oof=metric.score_proba(data.train.labels[rows], oof[rows]),
        n_rows=int(rows.sum()),
        mean_of_folds=float(np.mean(per_fold)),
        std_of_folds=float(np.std(per_fold)),
        per_fold=tuple(per_fold),
        note="'oof' is the metric of the pooled out-of-fold predictions (the one to select on); "
             "'mean_of_folds' averages the per-fold scores (differs for macro F1)"
             + ("; a partial run: both cover the trained folds' rows only" if partial else ""),
    )
    record = replace(
        start,
        name=paths.name,
        metric=metric.name,
        n_train=len(data.train.ids),
        n_test=len(data.test.ids),
        n_folds=cfg.n_folds,
        folds_trained=tuple(trained),
        folds_file=str(Path(folds_file).resolve()),  # absolute: an ensemble may run from elsewhere
        data_dir=str(data.data_dir.resolve()),
        cv=cv,
        folds=tuple(results),
        seed=cfg.seed,
        folds_seed=cfg.folds_seed,
        versions=artifacts.library_versions(),
        torch_threads=torch.get_num_threads(),
        timings={
            "decode_seconds": images.seconds,  # this session's; near 0 when read from the image cache
            "image_cache": images.cache,
            "train_seconds": sum(r["train_seconds"] for r in results),
            "predict_seconds": sum(r["predict_seconds"] for r in results),
            "wall_seconds_this_session": time.perf_counter() - started,
            "train_images_per_s": float(np.mean([r["train_images_per_s"] for r in results])),
            "predict_images_per_s": float(np.mean([r["predict_images_per_s"] for r in results])),
        },
        artifacts={"oof": str(paths.oof), "preds": str(paths.preds), "submission": str(paths.submission),
                   "run_dir": str(paths.run_dir)},
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    # The test prior against train's: always estimated and recorded, corrected only when asked.
    shift = assess_label_shift(oof[rows], data.train.labels[rows], test, data.classes, correction=label_shift,
                               corrected_path=paths.preds_label_shift)
    record = replace(record, label_shift=shift.record)
    log.debug("run %s: %s", paths.name, shift.message)  # the summary shows it when it matters
    artifacts.save_npy(paths.oof, oof)
    artifacts.save_npy(paths.preds, test)
    save_corrected(paths.preds_label_shift, shift)
    artifacts.save_csv(paths.submission, make_submission(data, shift.test))
    artifacts.save_csv(paths.metrics, pd.concat([pd.read_csv(paths.fold_metrics(k)) for k in trained]))
    artifacts.write_record(paths.sidecar, record)  # last: marks the run finished
    log.debug("run %s: CV %s %.4f (pooled OOF), %.4f +- %.4f (mean of folds)", paths.name, metric.name,
              cv.oof, cv.mean_of_folds, cv.std_of_folds)
    return RunResult(paths.name, paths, record)


def _write_plots(result: RunResult, data: CompetitionData) -> list[Path]:
    """Plots never cost a finished run: a failure is a warning."""
    try:
        from ..experiments.plots import write_run_plots

        return write_run_plots(result.paths, result.record, data.train.labels)
    except Exception as exc:  # noqa: BLE001 - the run is already safely on disk
        log.warning("run %s: plots not written (%s: %s); `comptk plots %s` retries", result.name,
                    type(exc).__name__, exc, result.name)
        return []
