"""The one place that knows artifact file names, their shapes and how they are written.

Layout under the work directory:

    oof/RUN.npy         N_train x C float32 out-of-fold probabilities, train-CSV row order
    oof/RUN.json        sidecar: the run record (RunRecord below): classes, data digests, CV, config, versions,
                        timings; written and read only here (write_record / read_record)
    preds/RUN.npy       N_test x C float32 test probabilities (fold mean), test-CSV row order
    preds/label_shift/RUN.npy  the same corrected for the estimated test class prior (--label-shift em)
    submissions/RUN.csv the sample submission's format
    runs/RUN/           config.json, log.txt, metrics.csv, fold<k>/{model.safetensors, metrics.csv, oof.npy, test.npy,
                        result.json}, plots: learning_curves.png, confusion_matrix.png, per_class_f1.png,
                        run.lock (held by the one process training the run: run_lock)
    sweeps/NAME.json    a sweep's grid and run names; sweeps/NAME.csv its table, sweeps/NAME.png CV vs training time
    folds/NAME-k<K>-seed<S>-<digest>.csv   fold of each train row, shared by all runs; digest of the train
                        ids, labels (and groups) it was made from (data/folds.py)
    cache/images/NAME-SPLIT-<size>px-<key>.npy  decoded uint8 images (N, size, size, 3); see image_cache.py
    inspect/NAME/       `comptk inspect`: report.html, images.csv, duplicates.csv, label_issues.csv, outliers.csv,
                        summary.json; derived/{train.csv, competition.toml} (a corrected copy)

Every file is written to a temporary name in its folder and renamed into place,
so a killed process never leaves a half-written artifact; files and folders get the mode a
normal write gives (the umask applies), so a shared work directory stays shared.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .errors import ComptkError, WriteError

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# errno values that mean "the storage refused the bytes", whatever was being written
_NO_ROOM = {errno.ENOSPC: "no space left on the device", errno.EFBIG: "file too large (a file size limit)",
            errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system"}
# numpy's tofile reports a short write without an errno; safetensors (Rust) words the OS error itself
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written|\(os error (\d+)\)")


def _no_room(exc: BaseException) -> str | None:
    """Why a write into a temporary file failed for lack of room, or None for any other failure."""
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        return _NO_ROOM[exc.errno]
    match = _SHORT_WRITE.search(str(exc)) if isinstance(exc, Exception) else None
    if match is None:
        return None
    if match.group(1) is None:
        return "the disk took only part of the bytes (disk full or a file size limit?)"
    return _NO_ROOM.get(int(match.group(1)))


def _cannot_create(target: Path, folder: Path, exc: OSError) -> WriteError:
    reason = _NO_ROOM.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
    return WriteError(f"cannot write {target}: folder {folder} is not writable ({reason}); "
                      f"make it writable or write elsewhere")


def _mkdir(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_create(target, folder, exc) from None


def _create_beside(path: Path, make: Callable[[Path], None], suffix: str) -> Path:
    """A new hidden name beside ``path`` (``.NAME.XXXXXXXXXXXX`` + suffix), created by ``make``.

    Not tempfile.mkstemp/mkdtemp: they create 0600/0700 entries, so every artifact of a shared
    work directory (a group folder, a Docker volume) would be private to whoever wrote it. Here
    the OS applies the umask (and default ACLs) exactly as for a normal write."""
    while True:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"
        try:
            make(candidate)
            return candidate
        except FileExistsError:  # 48 random bits: a clash is all but impossible; try another name
            continue


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.
    The file gets a normal write's mode: 0o666 less the umask.

    A full disk, a file size limit or a read-only folder is a :class:`WriteError` naming ``path``
    (one line); the temporary file is removed and ``path`` keeps its old content."""
    path = Path(path)
    _mkdir(path.parent, path)
    try:
        tmp = _create_beside(path, lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)),
                             ".tmp")
    except OSError as exc:
        raise _cannot_create(path, path.parent, exc) from None
    try:
        try:
            yield tmp
        except Exception as exc:
            reason = _no_room(exc)
            if reason is None:
                raise  # not a storage failure: a bug or the caller's own error
            raise WriteError(f"cannot write {path}: {reason}; free space (or raise the limit) and run "
                             f"the command again") from None
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _cannot_create(path, path.parent, exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` (an existing folder
    is removed first), on failure it is removed and ``path`` is left as it was (a full disk or a
    read-only folder: a :class:`WriteError` naming ``path``). The folder gets a normal mkdir's
    mode: 0o777 less the umask."""
    path = Path(path)
    _mkdir(path.parent, path)
    try:
        # no .tmp suffix: stale_temporary_files unlinks those
        building = _create_beside(path, lambda p: os.mkdir(p, 0o777), "")
    except OSError as exc:
        raise _cannot_create(path, path.parent, exc) from None
    try:
        try:
            yield building
        except Exception as exc:
            reason = _no_room(exc)
            if reason is None:
                raise
            raise WriteError(f"cannot write {path}: {reason}; free space and run the command again") from None
        if path.exists():
            shutil.rmtree(path)
        building.rename(path)
    finally:
        if building.exists():
            shutil.rmtree(building)


def check_writable(*folders: Path) -> None:
    """Fail now, before hours of training, if any folder cannot be written: each existing folder, or
    for a folder not made yet the nearest existing folder above it, must take a new file. Probed by
    creating and removing a temporary file (permission bits alone mislead: root, read-only mounts,
    ACLs); nothing is left behind and no folder is created."""
    probed: set[Path] = set()
    for folder in folders:
        folder = Path(os.path.abspath(folder))
        existing = folder
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise WriteError(f"cannot write into {folder}: {existing} is a file, not a folder; move it away")
        if existing in probed:
            continue
        probed.add(existing)
        try:
            fd, probe = tempfile.mkstemp(prefix=".comptk-write-check.", suffix=".tmp", dir=existing)
        except OSError as exc:
            raise _cannot_create(folder, existing, exc) from None
        os.close(fd)
        os.unlink(probe)


def check_new_file(path: str | Path, *, force: bool, option: str) -> None:
    """A file written where the user says (``option``): an existing one is replaced only with --force,
    as export's bundle folder and ensemble's blend are."""
    if Path(path).exists() and not force:
        raise ComptkError(f"{option} {path} exists; pass --force to replace it, or choose another {option}")


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def save_json(path: Path, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def save_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_npy(path: Path) -> np.ndarray:
    """An array saved by save_npy; a truncated or foreign file is an error naming it (never a pickle)."""
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ComptkError(f"file not found: {path}") from None
    except (ValueError, OSError, EOFError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ComptkError(f"{path}: not a readable .npy array (truncated or not written by comptk: {detail}); "
                          f"re-create it (train or blend that run again)") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ComptkError(f"{path}: an .npz archive, not one .npy array")
    return array


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


def folds_path(workdir: Path, competition: str, n_folds: int, seed: int, key: str) -> Path:
    """key: data.folds.folds_key(train), the digest of what the folds are made from."""
    return Path(workdir) / "folds" / f"{competition}-k{n_folds}-seed{seed}-{key[:12]}.csv"


def saved_folds_files(workdir: Path, competition: str, key: str) -> list[Path]:
    """The folds files (any K and seed) saved for this folds key, newest first."""
    folder = Path(workdir) / "folds"
    found = folder.glob(f"{glob.escape(competition)}-k*-seed*-{key[:12]}.csv") if folder.is_dir() else []
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
            f"run name '{name}' must start with a letter or digit and use only ASCII letters (a-z, A-Z), digits, "
            f"'.', '_' and '-'"
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

    @property
    def lock(self) -> Path:
        return self.run_dir / "run.lock"

    def is_finished(self) -> bool:
        return self.sidecar.exists()

    def is_training_run(self) -> bool:
        """Whether NAME is a training run's (its folder, or a record that is not a blend's): never a blend's name."""
        return self.run_dir.exists() or (self.sidecar.is_file() and not read_record(self.sidecar).is_blend)

    def folders_written(self) -> tuple[Path, ...]:
        """Every folder training this run writes into (folds/ as in folds_path, shared by all runs)."""
        return (Path(self.workdir) / "folds", self.run_dir, self.oof.parent, self.preds.parent,
                self.submission.parent)


@contextlib.contextmanager
def run_lock(paths: RunPaths, *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the run's lock (runs/RUN/run.lock) so one process at a time trains into its folder.

    A second process with the same run name waits (``on_wait`` gets one line saying so) rather
    than exits: once the first is done or killed, the caller re-checks the run and resumes it,
    keeping the folds the first one finished (or finds it finished). The lock is the OS's
    (flock), so a killed process never leaves it held."""
    from filelock import FileLock, Timeout

    paths.run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(paths.lock))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait(f"run '{paths.name}' is being trained by another process ({paths.lock} is held); waiting for it "
                    f"to end, then this one resumes the run (folds it finished are kept)")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def run_names(workdir: Path) -> list[str]:
    """Names of the finished runs and blends under ``workdir`` (their oof/NAME.json sidecars), sorted."""
    return sorted(p.stem for p in (Path(workdir) / "oof").glob("*.json") if not p.name.startswith("."))


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
    record: RunRecord


def load_run(oof_path: Path) -> RunArtifacts:
    """Load and check a finished run or blend from its oof/RUN.npy path (its record must hold
    RunRecord.REQUIRED: what ensemble, inspect and pseudo-labels compare against the data)."""
    oof_path = Path(oof_path)
    if not oof_path.is_file():
        raise ComptkError(f"file not found: {oof_path}")
    name = oof_path.stem
    record = read_record(sidecar_for(oof_path))
    record.require(sidecar_for(oof_path))
    paths = RunPaths(oof_path.parent.parent, name)
    if not paths.preds.is_file():
        raise ComptkError(f"{oof_path}: no test predictions at {paths.preds}")
    oof, preds = load_npy(oof_path), load_npy(paths.preds)
    n_classes = len(record.classes)
    if oof.ndim != 2 or oof.shape[1] != n_classes or preds.ndim != 2 or preds.shape[1] != n_classes:
        raise ComptkError(f"{oof_path}: arrays do not have {n_classes} class columns as its sidecar says")
    return RunArtifacts(name, oof, preds, record)


# --- the run record: oof/RUN.json ---------------------------------------------------------------------------------

RECORD_VERSION = 2  # 1: sidecars without a "version" key (comptk up to cfba1c9); 2 adds the data digests below
# Keys of the record that say what a run was trained on and how: written to runs/RUN/config.json when the run
# starts, and compared when it is resumed (check_same_run). "config" holds the TrainConfig settings.
IDENTITY_KEYS = ("competition", "competition_file", "classes", "train_ids_digest", "test_ids_digest",
                 "train_labels_digest", "train_images_digest", "test_images_digest", "folds_digest", "test_time",
                 "augment_pipeline", "pseudo_labels", "label_fixes", "config")
# Identity keys a record written before them lacks: such a saved run is not compared on them.
ADDED_IN_V2 = ("train_labels_digest", "train_images_digest", "test_images_digest")
DATA_KEYS = ("classes", "train_ids_digest", "test_ids_digest", "train_labels_digest", "train_images_digest",
             "test_images_digest", "folds_digest", "label_fixes")
DESCRIBE_KEY = {  # how a difference reads in an error message
    "classes": "classes", "train_ids_digest": "train rows (ids)", "test_ids_digest": "test rows (ids)",
    "train_labels_digest": "train labels", "train_images_digest": "train image contents",
    "test_images_digest": "test image contents", "folds_digest": "folds", "label_fixes": "[label_fixes]",
    "competition": "competition", "competition_file": "declaration file", "test_time": "test-time handling",
    "augment_pipeline": "augment pipeline", "pseudo_labels": "pseudo-labels",
}
_RUN_KEYS = ("version", "name", "kind", "competition", "competition_file", "classes", "train_ids_digest",
             "test_ids_digest", "train_labels_digest", "train_images_digest", "test_images_digest", "folds_digest",
             "test_time", "augment_pipeline", "pseudo_labels", "label_fixes", "metric", "n_train", "n_test",
             "n_folds", "folds_trained", "partial", "folds_file", "data_dir", "cv", "folds", "config", "seed",
             "folds_seed", "versions", "torch_threads", "timings", "artifacts", "finished_at", "label_shift")
_BLEND_KEYS = ("version", "name", "kind", "competition", "competition_file", "classes", "train_ids_digest",
               "test_ids_digest", "train_labels_digest", "folds_digest", "metric", "n_train", "n_test", "n_folds",
               "folds_file", "data_dir", "cv", "method", "members", "weights", "class_bias", "methods", "config",
               "seed", "folds_seed", "versions", "timings", "artifacts", "finished_at", "label_shift")
_OMITTED_WHEN_NONE = ("pseudo_labels", "label_fixes", "train_labels_digest", "folds_seed", "label_shift")  # written only when known


@dataclass(frozen=True)
class CVScores:
    """A run's (or blend's) cross-validated score. ``oof`` is the metric of the pooled out-of-fold
    predictions, the one to select on; ``mean_of_folds`` averages the per-fold scores (they differ for
    macro F1)."""

    oof: float | None = None
    n_rows: int | None = None  # runs: the rows scored (a partial run's trained folds only)
    mean_of_folds: float | None = None
    std_of_folds: float | None = None
    per_fold: tuple[float, ...] = ()
    in_sample: float | None = None  # blends: fitted and scored on the same rows (optimistic)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["per_fold"] = list(self.per_fold)
        return {k: v for k, v in out.items() if not (v is None and k in ("n_rows", "in_sample"))}

    @classmethod
    def from_json(cls, payload: Any, where: Path | str) -> CVScores:
        if not isinstance(payload, dict):
            raise ComptkError(f"{where}: 'cv' must be a JSON object, got {payload!r}")
        per_fold = payload.get("per_fold") or ()
        if not isinstance(per_fold, (list, tuple)):
            raise ComptkError(f"{where}: 'cv.per_fold' must be a list, got {per_fold!r}")
        return cls(oof=payload.get("oof"), n_rows=payload.get("n_rows"), mean_of_folds=payload.get("mean_of_folds"),
                   std_of_folds=payload.get("std_of_folds"), per_fold=tuple(per_fold),
                   in_sample=payload.get("in_sample"), note=str(payload.get("note") or ""))


@dataclass(frozen=True)
class RunRecord:
    """What a finished run or blend is: the sidecar oof/RUN.json, a plain JSON object with these keys.

    Written by write_record and read by read_record only. A sidecar without "version" (written by
    comptk up to cfba1c9) reads as version 1: its data digests (train labels, image contents) and
    torch_threads are None. Keys a blend or an older comptk did not write read as None (or empty).
    """

    REQUIRED: ClassVar[tuple[str, ...]] = ("competition", "classes", "train_ids_digest", "test_ids_digest",
                                           "folds_digest", "folds_file", "metric", "data_dir")

    version: int = RECORD_VERSION
    name: str = ""
    kind: str = "run"  # run | blend
    competition: str | None = None
    competition_file: str | None = None  # absolute path of the declaration, when there is one
    classes: tuple[str, ...] = ()  # column order of the OOF and test probabilities
    train_ids_digest: str | None = None  # artifacts.digest of the train ids, in row order
    test_ids_digest: str | None = None
    train_labels_digest: str | None = None  # data.folds.labels_digest: ids and labels used (after [label_fixes])
    train_images_digest: str | None = None  # data.image_cache.images_digest of the decoded train images at img_size
    test_images_digest: str | None = None
    folds_digest: str | None = None  # data.folds.folds_digest: ids and their fold
    test_time: dict[str, Any] | None = None  # runs: how validation and test rows were predicted
    augment_pipeline: list[Any] | None = None  # runs: the declaration's pipeline, when the augment names one
    pseudo_labels: dict[str, Any] | None = None  # runs trained with pseudo-labels
    label_fixes: tuple[dict[str, str], ...] | None = None  # runs: [label_fixes] as applied (id, from, to)
    metric: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    n_folds: int | None = None
    folds_trained: tuple[int, ...] | None = None  # runs; None (older sidecars): every fold
    folds_file: str | None = None  # absolute: an ensemble may run from elsewhere
    data_dir: str | None = None
    cv: CVScores | None = None
    folds: tuple[dict[str, Any], ...] = ()  # runs: each trained fold's result (score, best epoch, timings)
    method: str | None = None  # blends: the method written
    members: tuple[dict[str, Any], ...] | None = None  # blends: name, path, cv of each member
    weights: dict[str, float] | None = None  # blends
    class_bias: dict[str, float] | None = None  # blends
    methods: dict[str, Any] | None = None  # blends: every method fitted, with its scores
    config: dict[str, Any] = field(default_factory=dict)  # runs: TrainConfig.to_dict(); blends: BlendOptions
    seed: int | None = None  # runs: seed of sampling, augmentation and initialisation
    folds_seed: int | None = None  # runs: seed of the fold assignment (None: older runs, where it was ``seed``)
    versions: dict[str, str] = field(default_factory=dict)  # Python and library versions
    torch_threads: int | None = None  # runs: torch.get_num_threads() (OOF differs in the last digits with it)
    timings: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # paths of the files the run wrote
    finished_at: str | None = None
    label_shift: dict[str, Any] | None = None  # the test prior estimated against train's (label_shift.py)

    @property
    def is_blend(self) -> bool:
        return self.kind == "blend"

    @property
    def trained_folds(self) -> list[int]:
        """The folds a run trained; sidecars written before partial runs existed trained all of them."""
        return list(self.folds_trained) if self.folds_trained is not None else list(range(self.n_folds or 0))

    @property
    def is_partial(self) -> bool:
        """True for a run trained on some folds only (``--folds-subset``): its other OOF rows are NaN."""
        return len(self.trained_folds) < (self.n_folds or 0)

    def identity(self, keys: tuple[str, ...] = IDENTITY_KEYS) -> dict[str, Any]:
        """The identity keys (all, or ``keys``) as JSON values, None included: what a resume compares."""
        return self.to_json(keys=keys, omit_none=False)

    def require(self, where: Path | str, keys: tuple[str, ...] | None = None) -> None:
        """A ComptkError naming the first of ``keys`` (default REQUIRED) the record lacks."""
        for key in keys or self.REQUIRED:
            if getattr(self, key) in (None, (), {}):
                raise ComptkError(f"{where}: no '{key}' key; is it a finished comptk run?")

    def to_json(self, keys: tuple[str, ...] | None = None, omit_none: bool = True) -> dict[str, Any]:
        """The sidecar's JSON object (keys in a fixed order: a run's or a blend's)."""
        keys = keys or (_BLEND_KEYS if self.is_blend else _RUN_KEYS)
        out: dict[str, Any] = {}
        for key in keys:
            value = self.is_partial if key == "partial" else getattr(self, key)
            if value is None and omit_none and key in _OMITTED_WHEN_NONE:
                continue
            if key == "folds_trained" and value is None:
                value = self.trained_folds
            out[key] = _plain(value)
        return out

    @classmethod
    def from_json(cls, payload: Any, where: Path | str, *, name: str = "") -> RunRecord:
        """Read a sidecar's object (any version up to RECORD_VERSION); ``name`` fills a missing name."""
        if not isinstance(payload, dict):
            raise ComptkError(f"{where}: not a run record (a JSON object with the run's keys)")
        version = payload.get("version", 1)
        if not isinstance(version, int) or version > RECORD_VERSION:
            raise ComptkError(f"{where}: record version {version!r} is newer than this comptk reads "
                              f"(up to {RECORD_VERSION}); upgrade comptk")
        values: dict[str, Any] = {"version": version}
        for f in fields(cls):
            if f.name in payload and f.name != "version" and payload[f.name] is not None:
                values[f.name] = _typed(f.name, payload[f.name], where)
        values.setdefault("name", name)
        return cls(**values)


def _plain(value: Any) -> Any:
    """JSON-shaped: tuples become lists, nested records their objects."""
    if isinstance(value, CVScores):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_TUPLE_KEYS = ("classes", "folds_trained", "folds", "members", "label_fixes")
_DICT_KEYS = ("label_shift", "test_time", "pseudo_labels", "weights", "class_bias", "methods", "config", "versions", "timings",
              "artifacts")
_INT_KEYS = ("n_train", "n_test", "n_folds", "seed", "folds_seed", "torch_threads")


def _typed(key: str, value: Any, where: Path | str) -> Any:
    if key == "cv":
        return CVScores.from_json(value, where)
    if key in _TUPLE_KEYS:
        if not isinstance(value, list):
            raise ComptkError(f"{where}: '{key}' must be a list, got {value!r}")
        return tuple(str(v) for v in value) if key == "classes" else tuple(value)
    if key in _DICT_KEYS and not isinstance(value, dict):
        raise ComptkError(f"{where}: '{key}' must be a JSON object, got {value!r}")
    if key in _INT_KEYS and (not isinstance(value, int) or isinstance(value, bool)):
        raise ComptkError(f"{where}: '{key}' must be an integer, got {value!r}")
    return value


def write_record(path: Path, record: RunRecord) -> None:
    """Write a sidecar atomically (last of a run's files: its presence marks the run finished)."""
    save_json(path, record.to_json())


def read_record(path: Path) -> RunRecord:
    """A sidecar as a RunRecord; a missing name reads as the file's stem."""
    return RunRecord.from_json(load_json(path), path, name=Path(path).stem)


def run_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    """What differs between a run's saved identity (runs/RUN/config.json, or its sidecar) and ``new``
    (RunRecord.identity(), or some of its keys: only the keys ``new`` holds are compared), as
    (kind, text) pairs, kind "data" or "settings".

    A data digest the saved record lacks was added to comptk since the run started: not compared.
    A setting added to TrainConfig since the run started counts as its default.
    """
    from .config import TrainConfig

    diffs = []
    for key in IDENTITY_KEYS:
        if key == "config" or key not in new or (key in ADDED_IN_V2 and saved.get(key) is None):
            continue
        if saved.get(key) != _plain(new[key]):
            diffs.append(("data" if key in DATA_KEYS else "settings", f"{DESCRIBE_KEY.get(key, key)} ({key})"))
    if "config" in new:
        before = saved.get("config") or {}
        defaults = TrainConfig().to_dict()
        if "folds_seed" not in before and "seed" in before:  # before folds_seed existed, the seed made the folds
            defaults["folds_seed"] = before["seed"]
        diffs += [("settings", f"{k} ({before.get(k, defaults.get(k))!r} -> {v!r})")
                  for k, v in new["config"].items() if before.get(k, defaults.get(k)) != v]
    return diffs


def check_same_run(paths: RunPaths, new: dict[str, Any], *, fix: str) -> None:
    """Refuse to resume (or keep) run ``paths.name`` when its saved identity differs from ``new``
    (run_differences); a run with nothing saved yet passes. ``fix``: what to do instead."""
    saved_path = paths.config if paths.config.is_file() else paths.sidecar if paths.sidecar.is_file() else None
    if saved_path is None:
        return
    saved = load_json(saved_path)
    diffs = run_differences(saved if isinstance(saved, dict) else {}, new)
    if diffs:
        what = " and ".join(kind for kind in ("data", "settings") if any(k == kind for k, _ in diffs))
        changed = ", ".join(text for _, text in diffs)
        raise ComptkError(f"run '{paths.name}' exists ({saved_path}) with other {what}: {changed}; {fix}")


def write_identity(paths: RunPaths, record: RunRecord) -> None:
    """runs/RUN/config.json: the identity of a run as it starts (what a resume is checked against)."""
    save_json(paths.config, record.to_json(keys=IDENTITY_KEYS))
