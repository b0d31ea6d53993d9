"""One trial: sample settings, train on the saved folds exactly as ``comptk train`` does,
report per-epoch (or per-fold) scores to the pruner, return the mean best-epoch score."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from ..competition import Competition
from ..config import TrainConfig, resolve_run
from ..data.facts import competition_facts
from ..data.image_cache import load_images_cached
from ..data.tables import CompetitionData
from ..train.crossval import fit_fold
from ..train.engine import resolve_device
from .space import Space

IMAGE_MEMORY_BYTES = 4 << 30  # decoded training images kept in memory across trials, all sizes together


class Objective:
    """``per_fold=False``: the pruner sees the validation metric after every epoch of the first
    fold (MedianPruner, HyperbandPruner). ``per_fold=True``: it sees each fold's best score
    (WilcoxonPruner compares trials fold by fold)."""

    def __init__(
        self, comp: Competition, data: CompetitionData, fold: np.ndarray, space: Space, *,
        folds_per_trial: int, per_fold: bool, workdir: Path, progress: bool = False,
        fit: Callable[..., Any] = fit_fold,
    ) -> None:
        self.workdir = Path(workdir)
        self.comp, self.data, self.fold, self.space = comp, data, fold, space
        self.folds_per_trial, self.per_fold, self.progress, self.fit = folds_per_trial, per_fold, progress, fit
        self.metric_key = f"valid_{comp.metric}"
        self._images: dict[int, np.ndarray] = {}

    def config(self, params: dict[str, Any]) -> TrainConfig:
        """The trial's settings, resolved as ``comptk train`` would resolve them."""
        chosen = {**self.space.pinned, **params}
        # a space offering forbidden pretrained weights fails the trial
        return resolve_run(self.comp, chosen, facts=lambda: competition_facts(self.comp, self.data.data_dir))

    def images(self, img_size: int) -> np.ndarray:
        if img_size not in self._images:
            while self._images and sum(a.nbytes for a in self._images.values()) > IMAGE_MEMORY_BYTES:
                self._images.pop(next(iter(self._images)))
            # through the image cache: later trials, later studies and `comptk train` reuse the decode
            self._images[img_size] = load_images_cached(self.data.train.paths, img_size, workdir=self.workdir,
                                                        label=f"{self.comp.name}-train").images
        return self._images[img_size]

    def __call__(self, trial: optuna.Trial) -> float:
        cfg = self.config(self.space.suggest(trial))
        trial.set_user_attr("epochs_planned", cfg.epochs * self.folds_per_trial)
        images = self.images(cfg.img_size)
        device = resolve_device(cfg.device)
        epochs_run, scores = 0, []
        try:
            for k in range(self.folds_per_trial):
                def on_epoch(record: dict, k: int = k) -> None:
                    nonlocal epochs_run
                    epochs_run += 1
                    if not self.per_fold and k == 0:
                        trial.report(float(record[self.metric_key]), record["epoch"])
                        if trial.should_prune():
                            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']}")

                _, outcome = self.fit(k, self.data, cfg, self.fold, images, device,
                                      on_epoch=on_epoch, progress=self.progress)
                scores.append(float(outcome.best_score))
                if self.per_fold:
                    trial.report(scores[-1], k)
                    if k + 1 < self.folds_per_trial and trial.should_prune():
                        raise optuna.TrialPruned(f"pruned after fold {k + 1}")
        finally:
            trial.set_user_attr("epochs_run", epochs_run)
            trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))
