"""Sweeps: a cartesian grid of training settings, each a normal K-fold run with a derived name.

    result = sweep("fashion", {"model": ["resnet18", "small_resnet"], "lr": [1e-3, 3e-3]},
                   name="bb", workdir="work", folds_subset=[0], epochs=5)
    result.table        # the sweep's runs (leaderboard columns), also in sweeps/NAME.csv
    result.plot         # sweeps/NAME.png: CV against training time

Every planned run passes train's pre-flight (train/preflight.py: settings, model at img_size, TTA,
augment, heads, pseudo-label run, tracker) before the first run trains. The sweep's
spec is saved in sweeps/NAME.json; running the same sweep again keeps its finished runs, resumes
an interrupted one (its finished folds are kept) and, without ``folds_subset``, trains the folds a
partial run skipped. The same name with another grid or other fixed settings is refused, and so is a
run of the sweep saved with other settings or on other train rows or labels (artifacts.check_same_run,
the check a resumed `comptk train` makes).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import artifacts
from ..competition import Competition, load_competition
from ..config import FIELD_TYPES, TrainConfig, check_keys, resolve_run
from ..data.facts import DataFacts, competition_facts
from ..errors import ComptkError
from . import leaderboard

log = logging.getLogger("comptk")


@dataclass(frozen=True)
class SweepResult:
    name: str
    paths: artifacts.SweepPaths
    run_names: tuple[str, ...]
    table: pd.DataFrame  # leaderboard rows of the sweep's runs, best CV first
    plot: Path | None  # None when plotting failed (a warning says why)

    def summary(self) -> str:
        """What `comptk sweep` prints: the runs' table, then where the table and plot are."""
        lines = [leaderboard.to_text(self.table), f"table: {self.paths.table}"]
        return "\n".join(lines + ([f"plot: {self.plot}"] if self.plot else []))


def parse_values(key: str, text: str) -> list[Any]:
    """'1e-3,3e-3' -> [0.001, 0.003], typed as the TrainConfig field ``key``."""
    check_keys({key: None}, "sweep")
    want = FIELD_TYPES[key]
    values = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            raise ComptkError(f"--{key.replace('_', '-')} '{text}': an empty value in the list")
        try:
            if want is bool:
                if item.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(item)
                values.append(item.lower() in ("true", "1", "yes"))
            else:
                values.append(want(item))
        except ValueError:
            raise ComptkError(f"--{key.replace('_', '-')} '{text}': '{item}' is not a {want.__name__}") from None
    if len(set(values)) != len(values):
        raise ComptkError(f"--{key.replace('_', '-')} '{text}': a value is given twice")
    return values


def settings(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the grid, in the order given (first key varies slowest)."""
    check_keys(grid, "sweep grid")
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ComptkError(f"sweep grid: '{key}' needs a non-empty list of values, got {values!r}")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def run_name(sweep_name: str, setting: Mapping[str, Any], varying: Sequence[str], model: str) -> str:
    """NAME-MODEL, then KEYVALUE for each other key the grid varies: bb-resnet18-lr0.001."""
    parts = [sweep_name, model] + [f"{k}{_text(setting[k])}" for k in varying if k != "model"]
    return artifacts.check_run_name(re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(parts)))


def _plan(comp: Competition, grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any], name: str,
          facts: Callable[[], DataFacts] | None = None) -> list[tuple[str, TrainConfig]]:
    overlap = sorted(set(grid) & {k for k, v in fixed.items() if v is not None})
    if overlap:
        raise ComptkError(f"sweep: '{overlap[0]}' is given both as a list and as a fixed setting")
    varying = [k for k, v in grid.items() if len(v) > 1]
    plan, seen = [], {}
    for setting in settings(grid):
        cfg = resolve_run(comp, {**fixed, **setting}, facts=facts)
        run = run_name(name, setting, varying, cfg.model)
        if run in seen:
            raise ComptkError(f"sweep: settings {seen[run]} and {setting} both give run name '{run}'")
        seen[run] = setting
        plan.append((run, cfg))
    return plan


def _save_spec(paths: artifacts.SweepPaths, spec: dict) -> None:
    if paths.spec.is_file():
        saved = artifacts.load_json(paths.spec)
        for key in ("competition", "grid", "fixed"):
            if saved.get(key) != spec[key]:
                raise ComptkError(f"sweep '{spec['name']}' exists ({paths.spec}) with another {key}: "
                                  f"{saved.get(key)} -> {spec[key]}; use another --name")
    artifacts.save_json(paths.spec, spec)


# What a sweep compares of its saved runs before training anything (image and folds digests need the
# images decoded and the folds made: run_cv compares them when it resumes a run).
# What a finished sweep run must share with its planned setting to be kept: rows, labels, settings and how the
# declaration shaped the run (test crops, a declared augment pipeline, [label_fixes]); images are not decoded here.
SAME_RUN_KEYS = ("classes", "train_ids_digest", "test_ids_digest", "train_labels_digest", "test_time",
                 "augment_pipeline", "label_fixes", "config")


def _needs_training(paths: artifacts.RunPaths, wanted: list[int]) -> bool:
    """False for a run that has trained the wanted folds already."""
    if not paths.sidecar.is_file():
        return True
    return not set(wanted) <= set(artifacts.read_record(paths.sidecar).trained_folds)


def parse_grid(texts: Mapping[str, str | None]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Command-line text per setting ('resnet18,small_resnet', '3', None) -> (grid, fixed): a list of two or
    more values is swept, one value is fixed for every run, None is not given. A single model alone is a grid
    of one, so ``sweep --model X`` still names its run."""
    given = {key: parse_values(key, text) for key, text in texts.items() if text is not None}
    grid = {key: values for key, values in given.items() if len(values) > 1}
    fixed = {key: values[0] for key, values in given.items() if len(values) == 1}
    if not grid and "model" in fixed:
        grid["model"] = [fixed.pop("model")]
    return grid, fixed


def sweep(
    competition: Competition | str | Path,
    grid: Mapping[str, Sequence[Any]],
    *,
    name: str | None = None,
    workdir: str | Path = ".",
    data_dir: str | Path | None = None,
    folds_subset: Sequence[int] | None = None,
    progress: bool = True,
    tracker: str = "none",
    plots: bool = True,
    **fixed: Any,
) -> SweepResult:
    """Run every setting of ``grid`` (TrainConfig key -> list of values) with the ``fixed`` overrides.

    Each run is ``run_cv(..., name=NAME-MODEL[-KEYVALUE...], folds_subset=folds_subset)``.
    """
    from ..data.layouts import read_data
    from ..train.crossval import run_cv, start_record
    from ..train.preflight import check_folds_subset, check_run

    workdir = Path(workdir)
    comp = competition if isinstance(competition, Competition) else load_competition(competition, workdir)
    name = artifacts.check_run_name(name or comp.name)
    grid = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in grid.items()}
    if not grid:
        raise ComptkError("sweep: give at least one setting as a list, e.g. --models resnet18,small_resnet")
    check_keys(fixed, "sweep")
    fixed = {k: v for k, v in fixed.items() if v is not None}
    plan = _plan(comp, grid, fixed, name, facts=lambda: competition_facts(comp, comp.data_path(workdir, data_dir)))
    data = read_data(comp, comp.data_path(workdir, data_dir))
    todo = []
    for run, cfg in plan:
        run_paths = artifacts.RunPaths(workdir, run)
        artifacts.check_same_run(run_paths, start_record(comp, cfg, data).identity(SAME_RUN_KEYS),
                                 fix="use another sweep --name")
        if _needs_training(run_paths, check_folds_subset(folds_subset, cfg.n_folds)):
            todo.append((run, cfg))
    checked: set[tuple] = set()
    for run, cfg in todo:  # every planned run passes the pre-flight before the first one trains
        check_run(comp, cfg, data, workdir=workdir, paths=artifacts.RunPaths(workdir, run), folds_subset=folds_subset,
                  tracker=tracker, models_checked=checked)
    paths = artifacts.SweepPaths(workdir, name)
    _save_spec(paths, {"name": name, "competition": comp.name, "grid": grid, "fixed": fixed,
                       "folds_subset": list(folds_subset) if folds_subset is not None else None,
                       "runs": [run for run, _ in plan]})
    to_train = {run for run, _ in todo}
    level = log.level
    log.setLevel(logging.DEBUG if log.getEffectiveLevel() > logging.INFO else level)  # as run_cv does
    try:
        for i, (run, cfg) in enumerate(plan, 1):
            if run not in to_train:
                log.info("sweep %s: run %d/%d %s finished earlier, kept", name, i, len(plan), run)
                continue
            log.info("sweep %s: run %d/%d %s", name, i, len(plan), run)
            run_cv(comp, cfg, workdir=workdir, data_dir=data_dir, name=run, progress=progress,
                   folds_subset=folds_subset, tracker=tracker, plots=plots)
    finally:
        log.setLevel(level)
    names = tuple(run for run, _ in plan)
    table = leaderboard.collect(workdir, names=names)
    artifacts.save_csv(paths.table, table)
    plot = None
    try:
        from .plots import sweep_scatter

        plot = sweep_scatter(table, f"sweep {name}: CV against training time", paths.plot)
    except Exception as exc:  # noqa: BLE001 - the runs are on disk; the plot can be remade
        log.warning("sweep %s: plot not written (%s: %s)", name, type(exc).__name__, exc)
    return SweepResult(name, paths, names, table, plot)
