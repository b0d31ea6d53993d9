"""Predictor: a run's (or bundle's) fold models with its TTA, on new images.

Images go through the training code itself: decoded and resized by comptk.data.images (the same
pixels a run's test images had), predicted by comptk.train.engine.predict_proba with the run's TTA
and precision, the folds' probabilities averaged as run_cv averages them. On a run's own test
images it therefore gives its preds/RUN.npy (to float rounding; exactly on the same device).
Test images are predicted whole, as they are, also for a competition with test-time crops
(its test images are the crops).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from os import PathLike, cpu_count
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

from .. import artifacts
from ..config import CHOICES
from ..data.images import bomb_warnings_silenced, fit_array, probe_image, read_images
from ..errors import ComptkError
from ..label_shift import reapply_correction
from ..train.engine import predict_proba, resolve_device
from ..train.models import Classifier
from ..train.tta import with_tta
from .bundle import (
    Recipe,
    build_model,
    find_recipe,
    is_bundle,
    read_bundle,
    run_recipe,
    write_bundle,
)
from .inputs import images_from_csv, images_from_paths

log = logging.getLogger("comptk")

ImageInput = str | PathLike | np.ndarray


@dataclass(frozen=True)
class Prediction:
    ids: tuple[str, ...]
    proba: np.ndarray  # (N, C) float32, columns in ``classes`` order; the fold mean of TTA-merged probabilities
    classes: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (id, why) of unreadable images left out (skip_bad)

    @property
    def label_index(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    @property
    def labels(self) -> np.ndarray:
        """The predicted class name of each row."""
        return np.array(self.classes, dtype=object)[self.label_index] if len(self.ids) else np.array([], dtype=object)

    def to_frame(self, proba: bool = True) -> pd.DataFrame:
        """id, label and (``proba``) one ``proba_<class>`` column per class, in class order."""
        frame = pd.DataFrame({"id": list(self.ids), "label": self.labels})
        if proba:
            for j, name in enumerate(self.classes):
                frame[f"proba_{name}"] = self.proba[:, j]
        return frame

    def to_submission(self, submission: dict[str, Any]) -> pd.DataFrame:
        """The competition's submission columns (``Recipe.submission``): its id column and either its label
        column (class names) or one probability column per class; rows in input order."""
        if not submission:
            raise ComptkError("this run has no recorded submission format (no submissions/RUN.csv when it was "
                              "read or exported); write the default table instead (drop --submission)")
        frame = pd.DataFrame({submission["id_column"]: list(self.ids)})
        if submission["kind"] == "proba":
            for name in submission["columns"]:
                frame[name] = self.proba[:, self.classes.index(name)]
        else:
            frame[submission["columns"][0]] = self.labels
        return frame


class Predictor:
    """The fold models of a run or bundle, ready to predict (see module docstring).

    ``device``: auto | cpu | cuda | cuda:N | mps. ``precision``: the run's (default) or auto | fp32 | bf16 |
    fp16; the same device and precision as training reproduce its predictions. ``batch_size``: images per
    forward pass (memory, not results). Decoded images are predicted ``chunk`` at a time, so memory does not
    grow with the number of images.
    """

    def __init__(self, recipe: Recipe, *, device: str = "auto", precision: str | None = None,
                 batch_size: int = 256) -> None:
        precision = precision or recipe.precision
        if precision not in CHOICES["precision"]:
            raise ComptkError(f"precision must be one of {', '.join(CHOICES['precision'])}, got '{precision}'")
        if batch_size < 1:
            raise ComptkError(f"batch size must be at least 1, got {batch_size}")
        if len(recipe.mean) != 3 or len(recipe.std) != 3:
            raise ComptkError(f"{recipe.source}: normalisation needs 3 means and 3 stds (RGB), got "
                              f"{len(recipe.mean)} and {len(recipe.std)}")
        self.recipe = recipe
        self.device = resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        # Whole batches of the run's own size from row 0, as run_cv predicted its test rows.
        self.chunk = batch_size * max(1, 2048 // batch_size)
        self.models = [self._load_fold(k, path) for k, path in zip(recipe.folds, recipe.weights)]
        with_tta(self.models[0], recipe.tta, recipe.tta_merge)  # an unknown preset fails here, not mid-way

    @property
    def classes(self) -> tuple[str, ...]:
        return self.recipe.classes

    def _load_fold(self, fold: int, path: Path) -> Classifier:
        r = self.recipe
        model = Classifier(build_model(r.model, r.heads, r.drop_rate, r.drop_path_rate, r.n_classes))
        # The recorded normalisation is the truth (the same numbers the run's Classifier had).
        model.mean.copy_(torch.tensor(r.mean).view(1, -1, 1, 1))
        model.std.copy_(torch.tensor(r.std).view(1, -1, 1, 1))
        try:
            state = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any failure to parse is the file's fault
            raise ComptkError(f"cannot read fold {fold} weights {path}: {str(exc).splitlines()[0] if str(exc) else exc}"
                              ) from None
        try:
            model.load_state_dict(state)  # strict: every tensor of the model, nothing else
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise ComptkError(f"fold {fold} weights {path} do not fit model '{r.model}' with {r.n_classes} classes "
                              f"({' '.join(first[:2])[:300]}); the bundle or run is damaged or mixed up") from None
        # As in training: channels_last weights, so the same kernels compute the same numbers.
        return model.to(self.device).to(memory_format=torch.channels_last).eval()

    def predict_array(self, images: np.ndarray) -> np.ndarray:
        """(N, C) float32 probabilities of uint8 images already at img_size (N, S, S, 3): each fold's
        TTA-merged probabilities, averaged over the folds in float64 as run_cv does."""
        total = np.zeros((len(images), self.recipe.n_classes), dtype=np.float64)
        for model in self.models:
            total += predict_proba(model, images, device=self.device, precision=self.precision, tta=self.recipe.tta,
                                   tta_merge=self.recipe.tta_merge, batch_size=self.batch_size)
        return (total / len(self.models)).astype(np.float32)

    def predict_proba(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """(N, C) float32 probabilities, columns in ``classes`` order; an unreadable image is an error."""
        return self.predict(images).proba

    def predict(self, images: ImageInput | Sequence[ImageInput], *, ids: Sequence[str] | None = None,
                skip_bad: bool = False) -> Prediction:
        """Predict image files (paths), decoded images (uint8 H x W x 3 or H x W arrays, or an N x H x W x 3
        array), or a list mixing them. Unreadable files are one error naming them, or with ``skip_bad`` are
        left out and listed in ``Prediction.skipped``. ``ids`` name the rows (default: the path as given, or the
        position for an array)."""
        items = _as_items(images)
        ids = tuple(str(i) for i in ids) if ids is not None else tuple(
            str(item) if not isinstance(item, np.ndarray) else str(i) for i, item in enumerate(items))
        if len(ids) != len(items):
            raise ComptkError(f"{len(ids)} ids for {len(items)} images")
        arrays = {i: fit_array(item, self.recipe.img_size, where=f"image {i}")
                  for i, item in enumerate(items) if isinstance(item, np.ndarray)}
        paths = {i: Path(item) for i, item in enumerate(items) if not isinstance(item, np.ndarray)}
        with bomb_warnings_silenced(), ThreadPoolExecutor(max_workers=cpu_count() or 1) as pool:  # headers only
            probed = dict(zip(paths, pool.map(probe_image, paths.values())))
        bad = {i: why for i, why in probed.items() if why}
        _refuse_bad(bad, skip_bad)
        rows = [i for i in range(len(items)) if i not in bad]
        parts = []
        for start in range(0, len(rows), self.chunk):
            chunk = rows[start:start + self.chunk]
            images_, failed = self._decode(chunk, arrays, paths)
            _refuse_bad(failed, skip_bad)  # truncated files pass the header check
            bad.update(failed)
            keep = [j for j, i in enumerate(chunk) if i not in failed]
            parts.append((np.asarray(chunk)[keep], self.predict_array(images_[keep])))
        kept = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=int)
        proba = (np.concatenate([p[1] for p in parts]) if parts
                 else np.zeros((0, self.recipe.n_classes), dtype=np.float32))
        if len(proba):  # a run that corrected its submission for label shift: the same here
            proba, note = reapply_correction(proba, self.recipe.label_shift, self.classes)
            if note:
                log.info("%s", note)
        return Prediction(ids=tuple(ids[i] for i in kept), proba=proba, classes=self.classes,
                          skipped=tuple((ids[i], why) for i, why in sorted(bad.items())))

    def _decode(self, rows: list[int], arrays: dict[int, np.ndarray],
                paths: dict[int, Path]) -> tuple[np.ndarray, dict[int, str]]:
        size = self.recipe.img_size
        out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
        from_files = [j for j, i in enumerate(rows) if i in paths]
        decoded, failed = read_images([paths[rows[j]] for j in from_files], size)
        out[from_files] = decoded
        for j, i in enumerate(rows):
            if i in arrays:
                out[j] = arrays[i]
        return out, {rows[from_files[k]]: why for k, why in failed.items()}


def _as_items(images: ImageInput | Sequence[ImageInput]) -> list[Any]:
    if isinstance(images, (str, PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if not isinstance(images, Sequence):
        raise ComptkError(f"images must be paths, uint8 arrays or a list of them, got {type(images).__name__}")
    items = list(images)
    for i, item in enumerate(items):
        if not isinstance(item, (str, PathLike, np.ndarray)):
            raise ComptkError(f"image {i}: expected a file path or a uint8 array, got {type(item).__name__}")
    return items


def _refuse_bad(bad: dict[int, str], skip_bad: bool) -> None:
    if bad and not skip_bad:
        shown = "; ".join(list(bad.values())[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ComptkError(f"{len(bad)} image{'s' if len(bad) > 1 else ''} cannot be read: {shown}. "
                          f"Fix or remove {'them' if len(bad) > 1 else 'it'}, or skip unreadable images "
                          f"(--skip-bad, skip_bad=True)")


def load_predictor(source: str | Path, *, workdir: str | Path = ".", device: str = "auto",
                   precision: str | None = None, batch_size: int = 256) -> Predictor:
    """A predictor from a bundle folder (``comptk export``) or a run name in ``workdir``.

    >>> predictor = load_predictor("bundles/digits")          # doctest: +SKIP
    >>> predictor.predict(["a.png", "b.png"]).labels           # doctest: +SKIP
    """
    predictor = Predictor(find_recipe(source, workdir), device=device, precision=precision, batch_size=batch_size)
    # A partial run predicts with fewer models than its CV describes: say so wherever it is used.
    (log.warning if predictor.recipe.partial else log.info)("predicting with %s", predictor.recipe.describe())
    return predictor


@dataclass(frozen=True)
class PredictTable:
    """What ``comptk predict`` writes (``frame``), and what it says about it (``notes``, for standard error)."""

    frame: pd.DataFrame
    prediction: Prediction
    recipe: Recipe
    notes: tuple[str, ...]


def predict_table(source: str | Path, images: Sequence[str | Path] = (), *, csv: str | Path | None = None,
                  image_column: str | None = None, id_column: str | None = None, image_dir: str | Path | None = None,
                  workdir: str | Path = ".", device: str = "auto", precision: str | None = None,
                  batch_size: int = 256, skip_bad: bool = False, proba: bool = True, submission: bool = False,
                  out: str | Path | None = None, force: bool = False) -> PredictTable:
    """``comptk predict``: the images (files and folders, or the rows of ``csv``) predicted by ``source`` (a
    bundle folder or a run name in ``workdir``), as the table ``id, label[, proba_<class>...]`` or, with
    ``submission``, the competition's submission columns; written atomically to ``out`` when given (an
    existing file only with ``force``)."""
    if out is not None:
        artifacts.check_new_file(out, force=force, option="--out")
    if bool(images) == bool(csv):
        raise ComptkError("give image files or folders, or --csv FILE (one of the two)")
    if not csv and (image_column or id_column or image_dir):
        raise ComptkError("--image-col, --id-col and --image-dir go with --csv")
    predictor = load_predictor(source, workdir=workdir, device=device, precision=precision, batch_size=batch_size)
    listing = (images_from_csv(csv, image_column=image_column, id_column=id_column, image_dir=image_dir,
                               defaults=predictor.recipe.inputs) if csv else images_from_paths(images))
    prediction = predictor.predict(listing.paths, ids=listing.ids, skip_bad=skip_bad)
    frame = prediction.to_submission(predictor.recipe.submission) if submission else prediction.to_frame(proba)
    # A partial run's note is load_predictor's warning already.
    notes = [] if predictor.recipe.partial else [f"predicted with {predictor.recipe.describe()}"]
    if prediction.skipped:
        shown = "; ".join(why for _, why in prediction.skipped[:5])
        more = f"; and {len(prediction.skipped) - 5} more" if len(prediction.skipped) > 5 else ""
        notes.append(f"skipped {len(prediction.skipped)} unreadable image(s): {shown}{more}")
    if out is not None:
        artifacts.save_csv(Path(out), frame)
        notes.append(f"wrote {len(frame)} predictions to {out}")
    return PredictTable(frame, prediction, predictor.recipe, tuple(notes))


def export_run(run: str, out: str | Path, *, workdir: str | Path = ".", force: bool = False) -> Recipe:
    """Write run ``run`` of ``workdir`` as a bundle folder ``out``; the folder is loaded back (every fold, on
    the CPU) before it is moved into place, so a bundle that exists loads. Returns the bundle's recipe."""
    if is_bundle(run):
        raise ComptkError(f"{run} is already a bundle; copy the folder to move it")
    recipe = run_recipe(workdir, run)
    write_bundle(recipe, out, force=force,
                 check=lambda folder: Predictor(read_bundle(folder), device="cpu", precision="fp32"))
    return read_bundle(out)
