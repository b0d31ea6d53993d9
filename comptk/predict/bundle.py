"""What a predictor needs of a trained run (its *recipe* and fold weights), and the bundle: the one
place that knows a bundle's files.

A bundle is a folder holding ``bundle.json`` (the recipe: classes in probability-column order,
model name and create kwargs, img_size, normalisation, TTA, the competition's test-time crop,
precision, CV, versions) and one ``fold<k>.safetensors`` per trained fold. Like timm's
``pretrained_cfg`` beside safetensors weights, it is plain JSON and tensors: loading it runs no
pickled code and needs neither the competition, its data, the work directory nor a network.

A run in a work directory gives the same :class:`Recipe` (its weights are then the run's own
``runs/RUN/fold<k>/model.safetensors``), so ``predict RUN`` and ``predict BUNDLE`` share one path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__, artifacts
from ..config import parse_heads
from ..errors import ComptkError, did_you_mean

BUNDLE_FILE = "bundle.json"
FORMAT = "comptk-bundle"
FORMAT_VERSION = 1  # bump on a change an older reader would misread; readers refuse newer versions


def fold_file(fold: int) -> str:
    return f"fold{fold}.safetensors"


def is_bundle(folder: str | Path) -> bool:
    return (Path(folder) / BUNDLE_FILE).is_file()


@dataclass(frozen=True)
class Recipe:
    """How a run's fold models predict: everything but the weights, which are files (one per fold)."""

    run: str
    competition: str
    classes: tuple[str, ...]  # probability-column order
    model: str  # timm name to create (pretrained=False; the fold weights hold every tensor)
    heads: str  # "3x2x3": factorised heads (comptk.train.models.FactorizedHeads); "" = one head
    drop_rate: float
    drop_path_rate: float
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    tta: str
    tta_merge: str
    precision: str  # the run's setting (auto | fp32 | bf16 | fp16)
    folds: tuple[int, ...]  # the trained folds, in order
    n_folds: int
    weights: tuple[Path, ...]  # one safetensors file per entry of folds
    test_crop: float | None = None  # test images are crops of this fraction of each side: predicted as they are
    metric: str = ""
    cv: dict[str, Any] | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # id_column, image_column, image_dir (relative to the CSV)
    submission: dict[str, Any] = field(default_factory=dict)  # id_column, columns, kind (label | proba)
    trained: dict[str, Any] = field(default_factory=dict)  # device, autocast, config, versions of training
    source: Path | None = None  # the bundle folder or the run folder
    finished: bool = True  # False: an interrupted run (no sidecar yet), predicted with its finished folds
    label_shift: dict[str, Any] | None = None  # the run's label_shift record: re-applied when it corrected

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def partial(self) -> bool:
        return len(self.folds) < self.n_folds

    @property
    def create_kwargs(self) -> dict[str, Any]:
        """What comptk.train.models.create_model passes timm.create_model for this model (besides the name)."""
        outputs = sum(parse_heads(self.heads)) if self.heads else self.n_classes
        regularise = {k: v for k, v in (("drop_rate", self.drop_rate), ("drop_path_rate", self.drop_path_rate)) if v > 0}
        return {"pretrained": False, "num_classes": outputs, **regularise}

    @property
    def weights_bytes(self) -> int:
        return sum(Path(w).stat().st_size for w in self.weights)

    def describe(self) -> str:
        """One line: which models, views and folds predict."""
        folds = f"folds {', '.join(map(str, self.folds))} of {self.n_folds}"
        if self.partial:
            folds += " (partial run: the others are not trained)" if self.finished else " (unfinished run)"
        return (f"{self.run}: {self.model} at {self.img_size} px, TTA '{self.tta}' ({self.tta_merge}), {folds}; "
                f"test images predicted as they are")


# ---- the run in a work directory -------------------------------------------------------------------------------

def read_run_record(paths: artifacts.RunPaths) -> tuple[artifacts.RunRecord, bool]:
    """A run's record and whether the run is finished: its sidecar (oof/RUN.json), or for a run interrupted
    before it wrote one, its identity (runs/RUN/config.json) with the folds whose result.json exists."""
    if paths.sidecar.is_file():
        record = artifacts.read_record(paths.sidecar)
        if record.is_blend:
            raise ComptkError(f"'{paths.name}' is a blend of runs ({paths.sidecar}), not one run's fold models; "
                              f"predict with or export each member run")
        return record, True
    if not paths.config.is_file():
        raise ComptkError(f"no run '{paths.name}' in {paths.workdir} (no {paths.sidecar} nor {paths.config})"
                          f"{did_you_mean(paths.name, artifacts.run_names(paths.workdir))}")
    start = artifacts.RunRecord.from_json(artifacts.load_json(paths.config), paths.config, name=paths.name)
    n_folds = int(start.config["n_folds"])
    results = tuple(artifacts.load_json(paths.fold_result(k)) for k in range(n_folds) if paths.fold_result(k).is_file())
    return replace(start, n_folds=n_folds, folds_trained=tuple(r["fold"] for r in results), folds=results), False


def run_recipe(workdir: str | Path, name: str) -> Recipe:
    """The recipe of a run in ``workdir`` (finished, partial, or interrupted with some folds finished)."""
    paths = artifacts.RunPaths(Path(workdir), name)
    record, finished = read_run_record(paths)
    folds = record.trained_folds
    if not folds:
        raise ComptkError(f"run '{name}' has no finished fold yet ({paths.run_dir}); train at least one fold first")
    weights = tuple(paths.checkpoint(k) for k in folds)
    missing = [w for w in weights if not w.is_file()]
    if missing:
        raise ComptkError(f"run '{name}': fold weights not found: {missing[0]}")
    config = record.config
    classes = tuple(record.classes)
    model_name, mean, std = _model_facts(config, len(classes))
    results = {r["fold"]: r for r in record.folds}
    test_time = record.test_time or {}
    return Recipe(
        run=name,
        competition=record.competition or "",
        classes=classes,
        model=model_name,
        heads=config.get("heads", ""),
        drop_rate=float(config.get("drop_rate", 0.0)),
        drop_path_rate=float(config.get("drop_path_rate", 0.0)),
        img_size=int(config["img_size"]),
        mean=mean,
        std=std,
        tta=config["tta"],
        tta_merge=config.get("tta_merge", "mean"),
        precision=config.get("precision", "auto"),
        folds=tuple(folds),
        n_folds=int(record.n_folds or config["n_folds"]),
        weights=weights,
        test_crop=test_time.get("test_crop"),
        metric=record.metric or "",
        cv=record.cv.to_json() if record.cv is not None else None,
        inputs=_competition_inputs(record.competition_file, paths.workdir),
        submission=_submission_format(paths.submission, classes),
        trained={
            "device": sorted({str(results[k].get("device")) for k in folds if k in results}),
            "autocast": sorted({str(results[k].get("autocast")) for k in folds if k in results}),
            "torch_threads": record.torch_threads,
            "config": config,
            "versions": record.versions,
            "test_time": test_time,
        },
        source=paths.run_dir,
        finished=finished,
        label_shift=record.label_shift,
    )


def _model_facts(config: dict, n_classes: int) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """The timm name to rebuild the run's model by, and the mean and std its Classifier used: from the
    model built as in training (weights aside). An ``hf-hub:`` model is rebuilt by its architecture's
    name, so a bundle never needs the hub (its model_args, if any, are not carried: a mismatch fails on load)."""
    from ..train.models import normalization  # torch: only when a run's recipe is read

    model = build_model(config["model"], config.get("heads", ""), float(config.get("drop_rate", 0.0)),
                        float(config.get("drop_path_rate", 0.0)), n_classes)
    name = config["model"]
    if name.startswith("hf-hub:"):
        name = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", name)
    mean, std = normalization(model)
    return name, mean, std


def build_model(model: str, heads: str, drop_rate: float, drop_path_rate: float, n_classes: int):
    """The run's network as training built it (comptk.train.models.create_model), without pretrained weights."""
    from ..config import TrainConfig
    from ..train.models import create_model

    cfg = TrainConfig(model=model, heads=heads, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
                      pretrained=False, weights="")
    return create_model(cfg, n_classes)


def _competition_inputs(competition_file: str | None, workdir: Path) -> dict[str, Any]:
    """Defaults for ``predict --csv``: the competition's id and image columns and where its test CSV's
    image paths point, relative to the CSV's folder. Empty when the declaration cannot be read."""
    if not competition_file or not Path(competition_file).is_file():
        return {}
    from ..competition import load_competition

    try:
        comp = load_competition(competition_file, workdir)
    except ComptkError:
        return {}
    inputs: dict[str, Any] = {"layout": comp.layout, "id_column": comp.columns.id, "label_column": comp.columns.label}
    if comp.layout in ("csv", "person-folders"):  # the test split is a CSV of id and image path
        data_dir = Path(comp.data_path(workdir))
        images = data_dir / comp.files.test_images if comp.files.test_images else data_dir
        if comp.columns.image_template:  # ids that are file stems: paths built from the row, e.g. "{id}.png"
            inputs["image_template"] = comp.columns.image_template
        else:
            inputs["image_column"] = comp.columns.image
        inputs["image_dir"] = Path(os.path.relpath(images, (data_dir / comp.files.test).parent)).as_posix()
    return inputs


def _submission_format(submission: Path, classes: tuple[str, ...]) -> dict[str, Any]:
    """The run's submission columns (read from its submissions/RUN.csv header): an id column and one
    label column (kind label), or one probability column per class (kind proba)."""
    if not submission.is_file():
        return {}
    columns = list(pd.read_csv(submission, nrows=0).columns)
    if len(columns) < 2:
        return {}
    id_column, others = columns[0], columns[1:]
    kind = "proba" if sorted(others) == sorted(classes) else "label" if len(others) == 1 else ""
    return {"id_column": id_column, "columns": others, "kind": kind} if kind else {}


# ---- the bundle folder -------------------------------------------------------------------------------------------

def recipe_json(recipe: Recipe) -> dict[str, Any]:
    """bundle.json's content (the weights listed by their file names in the bundle)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "comptk_version": __version__,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run": recipe.run,
        "competition": recipe.competition,
        "classes": list(recipe.classes),
        "model": {"name": recipe.model, "heads": recipe.heads, "drop_rate": recipe.drop_rate,
                  "drop_path_rate": recipe.drop_path_rate, "create_kwargs": recipe.create_kwargs,
                  "wrapper": "comptk Classifier: float RGB in [0, 1], (x - mean) / std, then the model"},
        "img_size": recipe.img_size,
        "preprocess": {"decode": "RGB (grey repeated, transparency onto white)", "resize": "bilinear (PIL), to "
                       "img_size x img_size, aspect ratio not kept", "scale": "uint8 / 255"},
        "normalization": {"mean": list(recipe.mean), "std": list(recipe.std)},
        "tta": {"preset": recipe.tta, "merge": recipe.tta_merge,
                "note": "softmax per view, views merged by mean or renormalised geometric mean; folds averaged"},
        "test_time": {"test_crop": recipe.test_crop,
                      "predict": "whole images, as they are" + (" (test images are already crops)"
                                                                if recipe.test_crop is not None else "")},
        "precision": {"setting": recipe.precision, "training_autocast": recipe.trained.get("autocast", []),
                      "training_device": recipe.trained.get("device", []),
                      "note": "auto: fp16/bf16 autocast on CUDA, bf16 on CPUs with native bf16, else fp32; the "
                              "training device and precision reproduce the run's probabilities exactly"},
        "folds": [{"fold": k, "file": fold_file(k)} for k in recipe.folds],
        "n_folds": recipe.n_folds,
        "partial": recipe.partial,
        "metric": recipe.metric,
        "cv": recipe.cv,
        "inputs": recipe.inputs,
        "submission": recipe.submission,
        "trained": recipe.trained,
        "label_shift": recipe.label_shift,
    }


def write_bundle(recipe: Recipe, out: str | Path, *, force: bool = False,
                 check: Callable[[Path], None] | None = None) -> Path:
    """Write ``recipe`` and its fold weights as a bundle folder ``out``, atomically: it appears complete or
    not at all. ``check(folder)`` runs on the finished folder before it is moved into place (e.g. load it).
    An existing ``out`` is replaced only with ``force``, and only when it is a bundle (or empty)."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ComptkError(f"--out {out} is a file; give a folder for the bundle")
        if not force:
            raise ComptkError(f"bundle folder {out} exists; pass --force to replace it, or choose another --out")
        if not is_bundle(out) and any(out.iterdir()):
            raise ComptkError(f"{out} exists and is not a comptk bundle (no {BUNDLE_FILE}); it is never replaced, "
                              f"choose another --out")
    payload = recipe_json(recipe)
    with artifacts.atomic_folder(out) as building:
        for entry, source in zip(payload["folds"], recipe.weights):
            target = building / entry["file"]
            shutil.copyfile(source, target)
            entry["sha256"] = _sha256(target)
            entry["bytes"] = target.stat().st_size
        artifacts.save_json(building / BUNDLE_FILE, payload)
        _shareable(building)
        if check is not None:
            check(building)
    return out


def _shareable(folder: Path) -> None:
    """The permissions a plain copy would have (the atomic helpers' temporary names are private: 0700/0600),
    so a bundle can be shared or uploaded as it is."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _need(table: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ComptkError(f"{where}: missing key '{key}'; the bundle is damaged, export it again")
    if not isinstance(table[key], kind):
        raise ComptkError(f"{where}: key '{key}' has the wrong type ({table[key]!r}); export the bundle again")
    return table[key]


def read_bundle(folder: str | Path) -> Recipe:
    """The recipe of a bundle folder; every file it names is checked to exist."""
    folder = Path(folder)
    path = folder / BUNDLE_FILE
    if not path.is_file():
        raise ComptkError(f"{folder} is not a comptk bundle (no {BUNDLE_FILE}); `comptk export RUN --out DIR` "
                          f"writes one")
    raw = artifacts.load_json(path)
    where = str(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ComptkError(f"{where}: not a comptk bundle description (format is not '{FORMAT}')")
    version = _need(raw, "format_version", int, where)
    if version > FORMAT_VERSION:
        raise ComptkError(f"{where}: bundle format {version} is newer than this comptk reads ({FORMAT_VERSION}); "
                          f"upgrade comptk (the bundle was written by comptk {raw.get('comptk_version', '?')})")
    model = _need(raw, "model", dict, where)
    norm = _need(raw, "normalization", dict, where)
    tta = _need(raw, "tta", dict, where)
    folds = _need(raw, "folds", list, where)
    classes = _need(raw, "classes", list, where)
    if len(classes) < 2 or len(set(map(str, classes))) != len(classes):
        raise ComptkError(f"{where}: 'classes' must list at least 2 distinct names")
    if not folds:
        raise ComptkError(f"{where}: lists no fold weights")
    weights = []
    for entry in folds:
        file = folder / _need(entry, "file", str, f"{where} folds")
        if not file.is_file():
            raise ComptkError(f"bundle {folder}: fold weights file {file.name} is missing; copy the whole folder")
        if entry.get("sha256") and _sha256(file) != entry["sha256"]:
            raise ComptkError(f"bundle {folder}: fold weights file {file.name} differs from the one exported "
                              f"(sha256 mismatch): a damaged or partial copy; copy the whole folder again")
        weights.append(file)
    return Recipe(
        run=str(raw.get("run", folder.name)),
        competition=str(raw.get("competition", "")),
        classes=tuple(str(c) for c in classes),
        model=_need(model, "name", str, f"{where} model"),
        heads=str(model.get("heads", "")),
        drop_rate=float(model.get("drop_rate", 0.0)),
        drop_path_rate=float(model.get("drop_path_rate", 0.0)),
        img_size=_need(raw, "img_size", int, where),
        mean=tuple(float(v) for v in _need(norm, "mean", list, f"{where} normalization")),
        std=tuple(float(v) for v in _need(norm, "std", list, f"{where} normalization")),
        tta=_need(tta, "preset", str, f"{where} tta"),
        tta_merge=str(tta.get("merge", "mean")),
        precision=_need(_need(raw, "precision", dict, where), "setting", str, f"{where} precision"),
        folds=tuple(int(_need(e, "fold", int, f"{where} folds")) for e in folds),
        n_folds=int(raw.get("n_folds", len(folds))),
        weights=tuple(weights),
        test_crop=(raw.get("test_time") or {}).get("test_crop"),
        metric=str(raw.get("metric", "")),
        cv=raw.get("cv"),
        inputs=dict(raw.get("inputs") or {}),
        submission=dict(raw.get("submission") or {}),
        trained=dict(raw.get("trained") or {}),
        source=folder,
        finished=True,
        label_shift=raw.get("label_shift"),
    )


def find_recipe(source: str | Path, workdir: str | Path = ".") -> Recipe:
    """A bundle folder, a run name in ``workdir``, or a run's oof/RUN.npy path."""
    given = Path(source)
    if is_bundle(given):
        return read_bundle(given)
    paths = artifacts.RunPaths(Path(workdir), str(source))
    if artifacts.RUN_NAME.match(str(source)) and (paths.sidecar.is_file() or paths.config.is_file()):
        return run_recipe(workdir, str(source))
    if given.suffix == ".npy" and given.is_file() and given.parent.name == "oof":
        return run_recipe(given.parent.parent, given.stem)
    known = artifacts.run_names(Path(workdir))
    what = (f"a folder without {BUNDLE_FILE}" if given.is_dir()
            else f"no bundle folder and no run of that name in {Path(workdir)}")
    raise ComptkError(f"'{source}' is neither a bundle nor a run ({what}){did_you_mean(str(source), known)}; "
                      f"give a folder written by `comptk export`, or a run name (runs here: "
                      f"{', '.join(known[:8]) or 'none'}{', ...' if len(known) > 8 else ''}; --workdir picks another)")
