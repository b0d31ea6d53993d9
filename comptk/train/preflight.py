"""The pre-flight: every check a training run must pass before it writes anything, in one place.

train (run_cv) runs it once; a sweep runs it for each planned run before the first one trains;
tune runs it for its base settings. A failure is a one-line ComptkError, so a mistake costs
seconds, not a fold of training:

    cleared = check_run(comp, cfg, data, workdir=workdir, paths=paths, folds_subset=[0])
    cleared.wanted, cleared.device, cleared.pseudo, cleared.tracker
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import artifacts
from ..competition import Competition
from ..config import TrainConfig
from ..data.tables import CompetitionData
from ..errors import ComptkError
from ..experiments.trackers import Tracker, open_tracker
from .augment import run_transform
from .engine import check_compile, resolve_device
from .models import Classifier, check_heads_classes, create_model
from .pseudo import PseudoLabels, check_same_folds, select_pseudo_labels
from .tta import with_tta


@dataclass(frozen=True)
class Cleared:
    """What the pre-flight found and the run goes on with (nothing is worked out twice)."""

    wanted: list[int]  # the folds to train, sorted
    device: torch.device
    pseudo: PseudoLabels | None  # the pseudo-labelled test rows, when cfg.pseudo_run names a run
    tracker: Tracker  # opened, not started


def check_folds_subset(folds_subset: Sequence[int] | None, n_folds: int) -> list[int]:
    """The folds to train: all of them, or a subset given by index (0-based)."""
    if folds_subset is None:
        return list(range(n_folds))
    wanted = [int(k) for k in folds_subset]
    if not wanted:
        raise ComptkError("--folds-subset: give at least one fold index")
    bad = [k for k in wanted if not 0 <= k < n_folds]
    if bad:
        raise ComptkError(f"--folds-subset: fold {bad[0]} does not exist; folds are 0..{n_folds - 1} "
                          f"(n_folds = {n_folds})")
    if len(set(wanted)) != len(wanted):
        raise ComptkError(f"--folds-subset {','.join(map(str, wanted))}: a fold is given twice")
    return sorted(wanted)


def check_not_finished(paths: artifacts.RunPaths, wanted: list[int]) -> None:
    """A finished run is never retrained; a partial run may go on with folds it has not trained."""
    if not paths.is_finished():
        return
    record = artifacts.read_record(paths.sidecar)
    done = record.trained_folds
    if not record.is_partial:
        raise ComptkError(f"run '{paths.name}' is already finished ({paths.sidecar}); choose another --name")
    if set(wanted) <= set(done):
        raise ComptkError(f"run '{paths.name}' has already trained folds {', '.join(map(str, done))} of "
                          f"{record.n_folds} ({paths.sidecar}); drop --folds-subset to train the others")


def check_model(cfg: TrainConfig, n_classes: int) -> None:
    """Build the model (unknown name, missing weights file), then run it and its TTA views once on a
    blank image, so a model that cannot take img_size images or a preset it cannot take (multi-scale
    on a fixed-size ViT) fails here."""
    classifier = Classifier(create_model(cfg, n_classes)).eval()
    checks = ((f"model '{cfg.model}' cannot take {cfg.img_size} px images", classifier),
              (f"TTA preset '{cfg.tta}' does not work with model '{cfg.model}' at {cfg.img_size} px",
               with_tta(classifier, cfg.tta, cfg.tta_merge)))
    for what, predictor in checks:
        try:
            with torch.no_grad():
                predictor(torch.zeros(1, 3, cfg.img_size, cfg.img_size))
        except Exception as exc:
            raise ComptkError(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _model_key(cfg: TrainConfig) -> tuple:
    """The settings check_model depends on: a sweep checks each combination once."""
    return (cfg.model, cfg.pretrained, cfg.weights, cfg.drop_rate, cfg.drop_path_rate, cfg.heads, cfg.img_size,
            cfg.tta, cfg.tta_merge)


def check_run(
    comp: Competition,
    cfg: TrainConfig,
    data: CompetitionData,
    *,
    workdir: str | Path,
    paths: artifacts.RunPaths | None = None,
    folds_subset: Sequence[int] | None = None,
    tracker: str = "none",
    models_checked: set[tuple] | None = None,
) -> Cleared:
    """Every check before a run of ``comp`` with ``cfg`` on ``data`` writes anything: the folds asked
    for, the run not already finished (``paths``), the tracker installed, the device, the model at
    img_size with its TTA views, factorised heads against the classes, the augment pipeline on an
    img_size image, the pseudo-label source run, torch.compile, the run's output folders writable
    (``paths``). ``models_checked``: keys of models already checked by the caller (a sweep), added to."""
    wanted = check_folds_subset(folds_subset, cfg.n_folds)
    if paths is not None:
        check_not_finished(paths, wanted)
    opened = open_tracker(tracker, workdir)  # a tracker asked for but not installed fails here
    device = resolve_device(cfg.device)
    key = _model_key(cfg)
    if models_checked is None or key not in models_checked:
        check_model(cfg, data.n_classes)
        if models_checked is not None:
            models_checked.add(key)
    check_heads_classes(cfg, data.classes, comp.source or comp.name)
    run_transform(comp, cfg, cfg.seed)  # unknown preset, a pipeline that fails on an img_size image
    if cfg.pseudo_teacher == "fold" and not cfg.pseudo_run:
        raise ComptkError("setting pseudo_teacher = 'fold' needs pseudo_run (--pseudo RUN): the run whose folds teach")
    if cfg.pseudo_run and comp.pseudo_labels_allowed is False:
        raise ComptkError(f"{comp.source or comp.name}: pseudo_labels_allowed = false (the rules forbid training on "
                          f"test images), so pseudo_run '{cfg.pseudo_run}' cannot be used")
    pseudo = (select_pseudo_labels(workdir, cfg.pseudo_run, cfg.pseudo_threshold, data, cfg.pseudo_teacher)
              if cfg.pseudo_run else None)
    check_same_folds(pseudo, None, cfg.n_folds, cfg.folds_seed)
    if cfg.compile:
        check_compile(device)
    if paths is not None:  # a read-only folder (submissions/, say) fails now, not after training
        artifacts.check_writable(*paths.folders_written())
    return Cleared(wanted, device, pseudo, opened)
