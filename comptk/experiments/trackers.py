"""Optional experiment trackers (MLflow, Weights & Biases): off by default, nothing needs a server.

The run's local files stay the record; a tracker only mirrors them. A tracker asked for but not
installed is a one-line error before training; a tracker that fails during a run is a warning
and is switched off, never a lost run.

    tracker = open_tracker("mlflow", workdir)   # WORKDIR/mlflow.db unless MLFLOW_TRACKING_URI is set
    tracker.start(run_name, competition, params); tracker.log_epoch(fold, record)
    tracker.finish(record, artifact_paths)       # record: the run's artifacts.RunRecord; or tracker.fail()
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ComptkError, did_you_mean

if TYPE_CHECKING:
    from ..artifacts import RunRecord

log = logging.getLogger("comptk")

TRACKERS = ("none", "mlflow", "wandb")


def _numbers(record: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def _summary(record: RunRecord) -> dict[str, float]:
    cv = record.cv
    summary = {"cv": cv.oof if cv else None, "cv_mean_of_folds": cv.mean_of_folds if cv else None,
               "cv_std_of_folds": cv.std_of_folds if cv else None,
               "train_seconds": record.timings.get("train_seconds"),
               "train_images_per_s": record.timings.get("train_images_per_s")}
    summary.update({f"cv_fold{r['fold']}": r.get("score") for r in record.folds})
    return _numbers({k: v for k, v in summary.items() if v is not None})


class Tracker:
    """The no-op tracker, and the safety net of the real ones: any failure warns and turns it off."""

    kind = "none"

    def __init__(self) -> None:
        self.active = False

    def _guard(self, what: str, call: Callable[[], Any]) -> None:
        if not self.active:
            return
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - a tracker must never cost a run
            self.active = False
            log.warning("tracker %s: %s failed (%s: %s); tracking off for this run, local files unaffected",
                        self.kind, what, type(exc).__name__, exc)

    def start(self, run_name: str, competition: str, params: dict) -> None:
        if self.kind == "none":
            return
        self.active = True
        self._guard("start", lambda: self._start(run_name, competition, params))

    def log_epoch(self, fold: int, record: dict) -> None:
        self._guard("log", lambda: self._log_epoch(fold, record))

    def finish(self, record: RunRecord, artifacts: Sequence[Path]) -> None:
        self._guard("finish", lambda: self._finish(record, [Path(p) for p in artifacts if Path(p).is_file()]))
        self.active = False

    def fail(self) -> None:
        self._guard("end", self._fail)
        self.active = False

    def _start(self, run_name: str, competition: str, params: dict) -> None: ...
    def _log_epoch(self, fold: int, record: dict) -> None: ...
    def _finish(self, record: RunRecord, artifacts: list[Path]) -> None: ...
    def _fail(self) -> None: ...


class MlflowTracker(Tracker):
    kind = "mlflow"

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.mlflow = importlib.import_module("mlflow")
        # A local SQLite store (MLflow 3 retired the plain file store) with artifacts beside it, both in
        # the work directory; MLFLOW_TRACKING_URI (e.g. a server) takes precedence.
        workdir = Path(workdir).resolve()
        self.uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workdir / 'mlflow.db'}"
        self.artifacts = None if os.environ.get("MLFLOW_TRACKING_URI") else (workdir / "mlartifacts").as_uri()

    def _start(self, run_name: str, competition: str, params: dict) -> None:
        self.mlflow.set_tracking_uri(self.uri)
        if self.mlflow.get_experiment_by_name(competition) is None:
            self.mlflow.create_experiment(competition, artifact_location=self.artifacts)
        self.mlflow.set_experiment(competition)
        self.mlflow.start_run(run_name=run_name)
        self.mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
        self.step = 0

    def _log_epoch(self, fold: int, record: dict) -> None:
        # One step counter over all folds; the metric names carry the fold.
        self.mlflow.log_metrics(_numbers(record, f"fold{fold}_"), step=self.step)
        self.step += 1

    def _finish(self, record: RunRecord, artifacts: list[Path]) -> None:
        self.mlflow.log_metrics(_summary(record))
        for path in artifacts:
            self.mlflow.log_artifact(str(path))
        self.mlflow.end_run()

    def _fail(self) -> None:
        self.mlflow.end_run(status="FAILED")


class WandbTracker(Tracker):
    kind = "wandb"

    def __init__(self, workdir: Path) -> None:
        super().__init__()
        self.wandb = importlib.import_module("wandb")
        self.dir = Path(workdir).resolve()

    def _start(self, run_name: str, competition: str, params: dict) -> None:
        # Offline unless the user chose otherwise (WANDB_MODE=online): nothing needs a server.
        self.run = self.wandb.init(project=competition, name=run_name, config=params, dir=str(self.dir),
                                   mode=os.environ.get("WANDB_MODE", "offline"), reinit=True)

    def _log_epoch(self, fold: int, record: dict) -> None:
        self.run.log(_numbers(record, f"fold{fold}/"))

    def _finish(self, record: RunRecord, artifacts: list[Path]) -> None:
        self.run.summary.update(_summary(record))
        if artifacts:
            artifact = self.wandb.Artifact(f"{record.name}-files", type="run-files")
            for path in artifacts:
                artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        self.run.finish()

    def _fail(self) -> None:
        self.run.finish(exit_code=1)


def open_tracker(kind: str | None, workdir: str | Path = ".") -> Tracker:
    """A tracker by name; a real one whose package is not importable is a ComptkError."""
    kind = kind or "none"
    if kind not in TRACKERS:
        raise ComptkError(f"--tracker must be one of {', '.join(TRACKERS)}; got '{kind}'{did_you_mean(kind, TRACKERS)}")
    if kind == "none":
        return Tracker()
    if importlib.util.find_spec(kind) is None:
        raise ComptkError(f"--tracker {kind}: the '{kind}' package is not installed (pip install {kind}); "
                          f"or leave --tracker out (the local files record every run)")
    return {"mlflow": MlflowTracker, "wandb": WandbTracker}[kind](Path(workdir))
