"""tune(): run (or resume, or join) an Optuna study over a competition's training settings;
show() and best_settings() read a study back."""

from __future__ import annotations

import gc
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from .. import artifacts
from ..competition import Competition, load_competition
from ..config import FIELD_TYPES, TrainConfig, resolve_run, settings_text
from ..data.facts import competition_facts
from ..data.folds import folds_digest, load_or_make_folds
from ..data.layouts import read_data
from ..errors import ComptkError, did_you_mean
from ..metrics import get_metric
from ..train.crossval import fit_fold
from ..train.preflight import check_run
from .objective import Objective
from .space import Space, build_space
from .storage import resolve_storage

log = logging.getLogger("comptk")
PRUNERS = ("median", "hyperband", "wilcoxon", "none")
ATTR = "comptk"  # the study's user attribute that records what it was made for


@dataclass(frozen=True)
class TuneResult:
    study: str
    storage: str
    n_counted: int  # trials that count toward the total (finished, pruned, failed, running elsewhere)
    n_complete: int
    best_value: float | None
    best_params: dict[str, Any]
    interrupted: bool


def _counts(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial counts toward --trials unless it was interrupted (Ctrl-C, a killed process) or
    was a surplus start after another worker reached the total."""
    if trial.state == TrialState.FAIL:
        return "fail_reason" in trial.user_attrs
    return True


def _make_pruner(name: str, *, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(max_epochs, 2))
    if name == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    return optuna.pruners.NopPruner()


def _open_study(name: str, storage, direction: str, record: dict, sampler, pruner) -> optuna.Study:
    study = optuna.create_study(storage=storage, study_name=name, direction=direction,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ComptkError(f"study '{name}' exists and {study.direction.name.lower()}s its objective; "
                          f"this competition's metric needs {direction}; use another --study")
    saved = study.user_attrs.get(ATTR)
    if saved is None:
        if study.trials:
            raise ComptkError(f"study '{name}' exists but was not made by comptk tune; use another --study")
        study.set_user_attr(ATTR, record)
        return study
    diffs = [k for k in record if saved.get(k) != record[k]]
    if diffs:
        detail = "; ".join(_describe_change(k, saved.get(k), record[k]) for k in diffs)
        raise ComptkError(f"study '{name}' was made with other settings ({detail}); "
                          f"run it with the same ones or choose another --study")
    return study


def _describe_change(key: str, old: Any, new: Any) -> str:
    if key != "space" or not isinstance(old, dict):
        return f"{key} {json.dumps(old)} -> {json.dumps(new)}"
    changed = []
    for part in ("params", "pinned"):
        before, after = old.get(part, {}), new.get(part, {})
        changed += [f"{name} ({'searched' if part == 'params' else 'pinned'}: {json.dumps(before.get(name))} -> "
                    f"{json.dumps(after.get(name))})"
                    for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
    return "search space " + ", ".join(changed)


def _fmt_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def tune(
    competition: Competition | str | Path,
    *,
    workdir: str | Path = ".",
    data_dir: str | Path | None = None,
    study: str | None = None,
    storage: str | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    folds_per_trial: int = 1,
    pruner: str | None = None,
    pins: Mapping[str, Any] | None = None,
    seed: int | None = None,
    progress: bool = False,
    echo: Callable[[str], None] = print,
    fit: Callable[..., Any] = fit_fold,
) -> TuneResult:
    """Run trials until the study holds ``n_trials`` (counting every worker's), or ``timeout``
    seconds pass. Re-running resumes; several processes on one storage share the total."""
    workdir = Path(workdir)
    comp = competition if isinstance(competition, Competition) else load_competition(competition, workdir)
    pins = dict(pins or {})
    base = resolve_run(comp, pins, facts=lambda: competition_facts(comp, comp.data_path(workdir, data_dir)))
    space = build_space(base, comp.tune, pins, where=str(comp.source), test_crop=comp.has_test_crop)
    pruner = _check_options(comp, base, n_trials=n_trials, timeout=timeout, folds_per_trial=folds_per_trial,
                            pruner=pruner)
    _check_space(space, comp)
    data = read_data(comp, comp.data_path(workdir, data_dir))
    check_run(comp, base, data, workdir=workdir)  # the base settings pass train's pre-flight
    fold, _ = load_or_make_folds(workdir, comp.name, data.train, base.n_folds, base.folds_seed, data.classes)
    metric = get_metric(comp.metric)
    direction = "maximize" if metric.greater_is_better else "minimize"
    record = {
        "competition": comp.name, "metric": metric.name, "n_folds": base.n_folds, "folds_seed": base.folds_seed,
        "folds_digest": folds_digest(data.train.ids, fold), "folds_per_trial": folds_per_trial,
        "space": space.to_dict(),
    }
    spec = resolve_storage(storage, workdir)
    name = study or comp.name
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # comptk prints its own trial lines
    storage_obj = spec.open()
    _open_study(name, storage_obj, direction, record, None, None)
    study_obj = optuna.load_study(study_name=name, storage=storage_obj, sampler=None,
                                  pruner=_make_pruner(pruner, max_epochs=_max_epochs(base, space)))
    objective = Objective(comp, data, fold, space, folds_per_trial=folds_per_trial, per_fold=pruner == "wilcoxon",
                          workdir=workdir, progress=progress, fit=fit)
    echo(f"study '{name}' on {spec.url}: {comp.name}, {metric.name} ({direction}), "
         f"{folds_per_trial} of {base.n_folds} folds per trial, pruner {pruner}; "
         f"searching {', '.join(p.name for p in space.params)}")
    trials = _Trials(study_obj, spec, objective, n_trials=n_trials, metric=metric.name, echo=echo)
    trials.run(timeout=timeout, sampler_seed=base.seed if seed is None else seed)
    return _result(study_obj, spec.url, trials.interrupted)


def _check_options(comp: Competition, base: TrainConfig, *, n_trials: int, timeout: float | None,
                   folds_per_trial: int, pruner: str | None) -> str:
    """tune's own rules (the pre-flight checks the settings); the pruner's name, defaulted."""
    if base.pseudo_run:
        raise ComptkError(f"{comp.source} [train] sets pseudo_run: pseudo-labelling is not tuned; tune without it, "
                          f"then `comptk train --pseudo RUN`")
    if n_trials < 1:
        raise ComptkError(f"--trials must be at least 1, got {n_trials}")
    if timeout is not None and not timeout > 0:
        raise ComptkError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    if not 1 <= folds_per_trial <= base.n_folds:
        raise ComptkError(f"--folds-per-trial must be between 1 and the number of folds ({base.n_folds}), "
                          f"got {folds_per_trial}")
    pruner = pruner or ("wilcoxon" if folds_per_trial > 1 else "median")
    if pruner not in PRUNERS:
        raise ComptkError(f"--pruner '{pruner}' is not known{did_you_mean(pruner, PRUNERS)}; "
                          f"choose one of {', '.join(PRUNERS)}")
    if pruner == "wilcoxon" and folds_per_trial < 2:
        raise ComptkError("--pruner wilcoxon compares trials fold by fold: use --folds-per-trial 2 or more")
    return pruner


def _max_epochs(base: TrainConfig, space: Space) -> int:
    """The most epochs a trial may run (Hyperband's maximum resource)."""
    return max([base.epochs] + [int(p.high) for p in space.params if p.name == "epochs" and p.high]
               + [max(p.choices) for p in space.params if p.name == "epochs" and p.choices])


class _Trials:
    """Runs a study's trials one at a time, under the storage's start lock, until the study holds
    ``n_trials`` (every worker's count) or the time is up; prints a line per trial."""

    def __init__(self, study: optuna.Study, spec, objective: Objective, *, n_trials: int, metric: str,
                 echo: Callable[[str], None]) -> None:
        self.study, self.spec, self.objective = study, spec, objective
        self.n_trials, self.metric, self.echo = n_trials, metric, echo
        self.interrupted = self.surplus = False
        self.outcome, self.number = "", -1
        self.lock = None

    def run(self, *, timeout: float | None, sampler_seed: int) -> None:
        started = time.perf_counter()
        while True:
            if timeout is not None and time.perf_counter() - started >= timeout:
                self.echo(f"timeout of {timeout:g} s reached")
                break
            self.lock = self.spec.start_lock()
            self.lock.acquire()
            try:
                with warnings.catch_warnings():  # experimental in optuna; a dead worker's trial: failed, not counted
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(self.study)
                trials = self.study.get_trials(deepcopy=False)
                if sum(_counts(t) for t in trials) >= self.n_trials:
                    break
                # reseeded per trial under the lock: reproducible alone, and workers that start together
                # see different trial counts, so they don't propose the same start-up settings
                self.study.sampler = optuna.samplers.TPESampler(seed=sampler_seed + len(trials), n_startup_trials=5)
                t0 = time.perf_counter()
                try:
                    # optimize() for one trial: it keeps the storage heartbeat, so a trial whose process
                    # dies is marked failed (and not counted) by the next worker.
                    self.study.optimize(self, n_trials=1, catch=(Exception,))
                except KeyboardInterrupt:
                    self.interrupted = True
            finally:
                self.lock.release()
            if self.interrupted:
                self.echo("interrupted: finished trials are kept; run the same command to resume")
                break
            if self.surplus:
                break
            self.echo(_progress_line(self.study, self.number, self.outcome, self.n_trials, time.perf_counter() - t0,
                                     time.perf_counter() - started, self.metric))

    def __call__(self, trial: optuna.Trial) -> float:
        """One trial (the objective optimize() calls); its outcome is kept for the progress line."""
        self.lock.release()  # the trial exists now: other workers may count it and start theirs
        self.number = trial.number
        # Only earlier trials decide: two workers starting at once must not both see the other's trial and
        # both step back (the study would end one short); the later-numbered one is the surplus.
        if sum(_counts(t) for t in self.study.get_trials(deepcopy=False) if t.number < trial.number) >= self.n_trials:
            trial.set_user_attr("surplus", True)  # only with a server storage, when two workers start at once
            self.surplus = True
            raise _Surplus()
        try:
            value = self.objective(trial)
        except optuna.TrialPruned as exc:
            self.outcome = str(exc) or "pruned"
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            self.interrupted = True
            raise
        except Exception as exc:  # a bad combination, out of memory, a diverging loss: the study goes on
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"{type(exc).__name__}: {text}"[:500]
            trial.set_user_attr("fail_reason", reason)
            self.outcome = f"failed ({reason})"
            log.debug("trial %d failed", trial.number, exc_info=True)
            _free_memory()
            raise
        if not np.isfinite(value):
            reason = f"ValueError: the trial's {self.metric} is {value}"
            trial.set_user_attr("fail_reason", reason)
            self.outcome = f"failed ({reason})"
            raise ValueError(reason)
        self.outcome = f"{self.metric} {value:.4f}"
        return value


class _Surplus(Exception):
    """Raised in a trial started after the total was reached by another worker."""


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _progress_line(study: optuna.Study, number: int, outcome: str, n_trials: int, trial_seconds: float,
                   elapsed: float, metric: str) -> str:
    trials = study.get_trials(deepcopy=False)
    done = sum(_counts(t) and t.state.is_finished() for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = f"best {metric} {study.best_value:.4f} (trial {study.best_trial.number})" if complete else "no best yet"
    return f"[{done}/{n_trials}] trial {number}: {outcome} in {_fmt_seconds(trial_seconds)} | {best} | " \
           f"elapsed {_fmt_seconds(elapsed)}"


def _result(study: optuna.Study, url: str, interrupted: bool) -> TuneResult:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    return TuneResult(
        study=study.study_name, storage=url, n_counted=sum(_counts(t) for t in trials), n_complete=len(complete),
        best_value=study.best_value if complete else None,
        best_params=best_settings_of(study) if complete else {}, interrupted=interrupted,
    )


def _check_space(space, comp: Competition) -> None:
    """Model and augment names in the space exist, before any trial runs."""
    import timm

    from ..train import models  # noqa: F401  registers small_resnet with timm
    from ..train.augment import AUGMENTS

    known = {"model": lambda n: timm.is_model(n), "augment": lambda n: n in AUGMENTS.names() or n in comp.augments}
    options = {"model": timm.list_models(), "augment": [*AUGMENTS.names(), *comp.augments]}
    for param in space.params:
        for name in (param.choices or ()) if param.name in known else ():
            if not known[param.name](name):
                raise ComptkError(f"search space: {param.name} '{name}' is not known"
                                  f"{did_you_mean(name, options[param.name])}")
    for key in known:
        if key in space.pinned and not known[key](space.pinned[key]):
            raise ComptkError(f"setting '{key}': '{space.pinned[key]}' is not known"
                              f"{did_you_mean(space.pinned[key], options[key])}")


def load_study(study: str, *, storage: str | None = None, workdir: str | Path = ".") -> optuna.Study:
    """Open an existing study made by comptk tune (one-line errors otherwise)."""
    spec = resolve_storage(storage, Path(workdir))
    if spec.local_file is not None and not spec.local_file.exists():
        raise ComptkError(f"no study storage at {spec.local_file}: run `comptk tune` first (or pass --storage)")
    storage_obj = spec.open()
    names = [s.study_name for s in optuna.get_all_study_summaries(storage_obj, include_best_trial=False)]
    if study not in names:
        raise ComptkError(f"study '{study}' is not in {spec.url}{did_you_mean(study, names)} "
                          f"(studies there: {', '.join(names) or 'none'})")
    loaded = optuna.load_study(study_name=study, storage=storage_obj)
    if ATTR not in loaded.user_attrs:
        raise ComptkError(f"study '{study}' was not made by comptk tune")
    return loaded


def best_settings_of(study: optuna.Study) -> dict[str, Any]:
    """The best trial's sampled settings plus the settings the study pinned."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        raise ComptkError(f"study '{study.study_name}' has no completed trial yet")
    pinned = study.user_attrs[ATTR]["space"]["pinned"]
    settings = {**pinned, **study.best_trial.params}
    return {k: settings[k] for k in sorted(settings) if k in FIELD_TYPES}


def best_settings(study: str, *, storage: str | None = None, workdir: str | Path = ".",
                  competition: str | None = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The best settings of a study; ``competition`` (a name): refuse a study made for another
    competition, as tune() refuses to continue one; ``echo``: say which settings the study gives."""
    loaded = load_study(study, storage=storage, workdir=workdir)
    made_for = loaded.user_attrs[ATTR].get("competition")
    if competition is not None and made_for != competition:
        raise ComptkError(f"study '{study}' was made with other settings "
                          f"({_describe_change('competition', made_for, competition)}); "
                          f"use a study of {competition} (`comptk tune {competition}`), or, to take its settings "
                          f"on purpose, `comptk tune --study {study} --export FILE` and `comptk train {competition} "
                          f"--settings FILE`")
    settings = best_settings_of(loaded)
    if echo is not None:
        echo(f"settings from study '{study}' (best trial {loaded.best_trial.number}): "
             + ", ".join(f"{k}={v}" for k, v in settings.items()))
    return settings


def trials_table(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else np.nan
        note = t.user_attrs.get("fail_reason", "")
        if t.user_attrs.get("interrupted"):
            note = "interrupted (not counted)"
        elif t.user_attrs.get("surplus"):
            note = "surplus start (not counted)"
        elif t.state == TrialState.FAIL and not note:
            note = "worker died (not counted)"
        rows.append({"trial": t.number, "state": t.state.name.lower(), "value": t.value,
                     "epochs": t.user_attrs.get("epochs_run"), "of": t.user_attrs.get("epochs_planned"),
                     "seconds": seconds, **t.params, "note": note})
    return pd.DataFrame(rows)


def show(study: str, *, storage: str | None = None, workdir: str | Path = ".") -> str:
    """The trials table, pruning savings and the best settings, as text."""
    loaded = load_study(study, storage=storage, workdir=workdir)
    attrs = loaded.user_attrs[ATTR]
    table = trials_table(loaded)
    lines = [(f"study '{study}': {attrs['competition']}, {attrs['metric']} ({loaded.direction.name.lower()}), "
              f"{attrs['folds_per_trial']} of {attrs['n_folds']} folds per trial")]
    if table.empty:
        return lines[0] + "\nno trials yet"
    states = table["state"].value_counts()
    lines.append(", ".join(f"{n} {s}" for s, n in states.items()))
    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 500,
                           "display.float_format", lambda v: f"{v:.4g}"):
        lines.append(table.astype(object).where(table.notna(), "").to_string(index=False))
    ran, planned = table["epochs"].fillna(0).sum(), table["of"].fillna(0).sum()
    if planned:
        lines.append(f"epochs run {int(ran)} of {int(planned)} planned "
                     f"({100 * (1 - ran / planned):.0f}% saved by pruning and failures)")
    if (table["state"] == "complete").any():
        lines.append(f"best: trial {loaded.best_trial.number}, {attrs['metric']} {loaded.best_value:.4f}")
        lines.append("best settings: " + ", ".join(f"{k}={v!r}" for k, v in best_settings_of(loaded).items()))
    return "\n".join(lines)


def export_settings(study: str, path: str | Path, *, storage: str | None = None, workdir: str | Path = ".",
                    force: bool = False) -> Path:
    """Write the best settings as a TOML file with a [train] table (``comptk train --settings FILE``);
    an existing file only with ``force``."""
    artifacts.check_new_file(path, force=force, option="--export")
    loaded = load_study(study, storage=storage, workdir=workdir)
    settings = best_settings_of(loaded)
    text = settings_text(settings, f"best trial {loaded.best_trial.number} of study '{study}' "
                                   f"({loaded.user_attrs[ATTR]['metric']} {loaded.best_value:.4f})")
    path = Path(path)
    with artifacts.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
