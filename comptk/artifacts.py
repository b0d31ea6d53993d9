"""The one place that knows artifact file names, their shapes and how they are written.

Layout under the work directory:

    oof/RUN.npy         N_train x C float32 out-of-fold probabilities, train-CSV row order
    oof/RUN.json        sidecar: classes, digests, CV, config, versions, timings
    preds/RUN.npy       N_test x C float32 test probabilities (fold mean), test-CSV row order
    preds/label_shift/RUN.npy  the same corrected for the estimated test class prior (--label-shift em)
    submissions/RUN.csv the sample submission's format
    runs/RUN/           config.json, log.txt, metrics.csv, fold<k>/{model.safetensors, metrics.csv, oof.npy, test.npy,
                        result.json}, plots: learning_curves.png, confusion_matrix.png, per_class_f1.png
    sweeps/NAME.json    a sweep's grid and run names; sweeps/NAME.csv its table, sweeps/NAME.png CV vs training time
    folds/NAME-k<K>-seed<S>-<digest>.csv   fold of each train row, shared by all runs
    cache/images/NAME-SPLIT-<size>px-<key>.npy  decoded uint8 images (N, size, size, 3); see image_cache.py
    inspect/NAME/       `comptk inspect`: report.html, images.csv, duplicates.csv, label_issues.csv, outliers.csv,
                        summary.json; derived/{train.csv, competition.toml} (a corrected copy)

Every file is written to a temporary name in its folder and renamed into place,
so a killed process never leaves a half-written artifact.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ComptkError

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (an existing folder
    is removed first), on failure it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield building
        if path.exists():
            shutil.rmtree(path)
        building.rename(path)
    finally:
        if building.exists():
            shutil.rmtree(building)


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def save_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def save_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComptkError(f"file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ComptkError(f"{path}: not valid JSON: {exc}") from None


def digest(values: Iterable[Any]) -> str:
    """Order-sensitive sha256 of the values' text, for telling row sets apart."""
    h = hashlib.sha256()
    for value in values:
        h.update(str(value).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a run's results depend on, for its sidecar."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("comptk", "torch", "timm", "albumentations", "ttach", "numpy", "scipy", "scikit-learn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def folds_path(workdir: Path, competition: str, n_folds: int, seed: int, train_digest: str) -> Path:
    return Path(workdir) / "folds" / f"{competition}-k{n_folds}-seed{seed}-{train_digest[:12]}.csv"


def saved_folds_files(workdir: Path, competition: str, train_digest: str) -> list[Path]:
    """The folds files (any K and seed) saved for these train rows, newest first."""
    folder = Path(workdir) / "folds"
    found = folder.glob(f"{glob.escape(competition)}-k*-seed*-{train_digest[:12]}.csv") if folder.is_dir() else []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def tune_storage_path(workdir: Path) -> Path:
    """The embedded SQLite file that holds a work directory's Optuna studies."""
    return Path(workdir) / "tune" / "studies.db"
def image_cache_path(workdir: Path, label: str, size: int, key: str) -> Path:
    """label: the competition and split, e.g. 'fashion-train'; key: image_cache.cache_key()."""
    return image_cache_dir(workdir) / f"{_safe(label)}-{size}px-{key[:16]}.npy"


def image_cache_files(workdir: Path, label: str, size: int) -> list[Path]:
    """The cache files of one label and size, whatever their key."""
    pattern = re.compile(re.escape(f"{_safe(label)}-{size}px-") + r"[0-9a-f]{16}\.npy$")
    folder = image_cache_dir(workdir)
    return sorted(p for p in folder.iterdir() if pattern.match(p.name)) if folder.is_dir() else []


def image_cache_dir(workdir: Path) -> Path:
    return Path(workdir) / "cache" / "images"


def stale_temporary_files(folder: Path, older_than_s: float) -> list[Path]:
    """atomic_path's temporary files in folder left by killed processes (older than older_than_s)."""
    if not Path(folder).is_dir():
        return []
    now = time.time()
    found = []
    for path in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > older_than_s:
                found.append(path)
    return found


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def check_run_name(name: str) -> str:
    if not RUN_NAME.match(name):
        raise ComptkError(
            f"run name '{name}' must start with a letter or digit and use only letters, digits, '.', '_' and '-'"
        )
    return name


def new_run_name(competition: str, model: str) -> str:
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-")
    return f"{competition}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass(frozen=True)
class RunPaths:
    workdir: Path
    name: str

    @property
    def oof(self) -> Path:
        return Path(self.workdir) / "oof" / f"{self.name}.npy"

    @property
    def sidecar(self) -> Path:
        return Path(self.workdir) / "oof" / f"{self.name}.json"

    @property
    def preds(self) -> Path:
        return Path(self.workdir) / "preds" / f"{self.name}.npy"

    @property
    def preds_label_shift(self) -> Path:
        """Test probabilities corrected for the estimated test class prior (``--label-shift em``)."""
        return Path(self.workdir) / "preds" / "label_shift" / f"{self.name}.npy"

    @property
    def submission(self) -> Path:
        return Path(self.workdir) / "submissions" / f"{self.name}.csv"

    @property
    def run_dir(self) -> Path:
        return Path(self.workdir) / "runs" / self.name

    @property
    def config(self) -> Path:
        return self.run_dir / "config.json"

    @property
    def log(self) -> Path:
        return self.run_dir / "log.txt"

    @property
    def metrics(self) -> Path:
        return self.run_dir / "metrics.csv"

    @property
    def plot_learning_curves(self) -> Path:
        return self.run_dir / "learning_curves.png"

    @property
    def plot_confusion(self) -> Path:
        return self.run_dir / "confusion_matrix.png"

    @property
    def plot_per_class_f1(self) -> Path:
        return self.run_dir / "per_class_f1.png"

    def fold_dir(self, fold: int) -> Path:
        return self.run_dir / f"fold{fold}"

    def checkpoint(self, fold: int) -> Path:
        return self.fold_dir(fold) / "model.safetensors"

    def fold_metrics(self, fold: int) -> Path:
        return self.fold_dir(fold) / "metrics.csv"

    def fold_oof(self, fold: int) -> Path:
        return self.fold_dir(fold) / "oof.npy"

    def fold_test(self, fold: int) -> Path:
        return self.fold_dir(fold) / "test.npy"

    def fold_result(self, fold: int) -> Path:
        """Written last: its presence marks the fold finished."""
        return self.fold_dir(fold) / "result.json"

    def is_finished(self) -> bool:
        return self.sidecar.exists()


def run_names(workdir: Path) -> list[str]:
    """Names of the finished runs and blends under ``workdir`` (their oof/NAME.json sidecars), sorted."""
    return sorted(p.stem for p in (Path(workdir) / "oof").glob("*.json") if not p.name.startswith("."))


def folds_trained(sidecar: dict) -> list[int]:
    """The folds a run trained; sidecars written before partial runs existed trained all of them."""
    return list(sidecar.get("folds_trained", range(int(sidecar.get("n_folds", 0)))))


def is_partial(sidecar: dict) -> bool:
    """True for a run trained on some folds only (``--folds-subset``): its other OOF rows are NaN."""
    return len(folds_trained(sidecar)) < int(sidecar.get("n_folds", 0))


@dataclass(frozen=True)
class SweepPaths:
    workdir: Path
    name: str

    @property
    def spec(self) -> Path:
        return Path(self.workdir) / "sweeps" / f"{self.name}.json"

    @property
    def table(self) -> Path:
        return Path(self.workdir) / "sweeps" / f"{self.name}.csv"

    @property
    def plot(self) -> Path:
        return Path(self.workdir) / "sweeps" / f"{self.name}.png"


@dataclass(frozen=True)
class InspectPaths:
    workdir: Path
    competition: str

    @property
    def folder(self) -> Path:
        return Path(self.workdir) / "inspect" / self.competition

    @property
    def report(self) -> Path:
        return self.folder / "report.html"

    @property
    def images(self) -> Path:
        return self.folder / "images.csv"

    @property
    def duplicates(self) -> Path:
        return self.folder / "duplicates.csv"

    @property
    def label_issues(self) -> Path:
        return self.folder / "label_issues.csv"

    @property
    def outliers(self) -> Path:
        return self.folder / "outliers.csv"

    @property
    def summary(self) -> Path:
        return self.folder / "summary.json"

    @property
    def derived(self) -> Path:
        """A corrected copy of the competition: train.csv and competition.toml."""
        return self.folder / "derived"


def sidecar_of_submission(submission: Path) -> Path:
    """submissions/RUN.csv -> oof/RUN.json of the run that wrote it."""
    return Path(submission).parent.parent / "oof" / f"{Path(submission).stem}.json"


def sidecar_for(array_path: Path) -> Path:
    """oof/RUN.npy -> oof/RUN.json (the run's description)."""
    return Path(array_path).with_suffix(".json")


@dataclass(frozen=True)
class RunArtifacts:
    name: str
    oof: np.ndarray
    preds: np.ndarray
    sidecar: dict


def load_run(oof_path: Path) -> RunArtifacts:
    """Load and check a finished run from its oof/RUN.npy path."""
    oof_path = Path(oof_path)
    if not oof_path.is_file():
        raise ComptkError(f"file not found: {oof_path}")
    name = oof_path.stem
    meta = load_json(sidecar_for(oof_path))
    paths = RunPaths(oof_path.parent.parent, name)
    if not paths.preds.is_file():
        raise ComptkError(f"{oof_path}: no test predictions at {paths.preds}")
    oof, preds = np.load(oof_path), np.load(paths.preds)
    n_classes = len(meta["classes"])
    if oof.ndim != 2 or oof.shape[1] != n_classes or preds.ndim != 2 or preds.shape[1] != n_classes:
        raise ComptkError(f"{oof_path}: arrays do not have {n_classes} class columns as its sidecar says")
    return RunArtifacts(name, oof, preds, meta)
