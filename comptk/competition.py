"""A competition declaration (``competitions/NAME/competition.toml``) read into frozen dataclasses.

The loader is strict: unknown keys (with a did-you-mean), missing required keys and
wrongly typed values are errors that name the file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import config
from .data.labelers import LABELERS
from .errors import ComptkError, did_you_mean
from .tune.space import check_declaration as check_tune_table

DECLARATION = "competition.toml"
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "competitions"
LAYOUTS = ("csv", "folders", "person-folders")


@dataclass(frozen=True)
class Files:
    train: str  # CSV file (csv, person-folders layouts) or folder of class folders (folders layout)
    test: str  # CSV file or folder of images
    sample_submission: str = ""  # optional; without it a submission is "id,label"
    train_images: str = ""  # folder the train image paths (person-folders: person folders) are under; default data_dir
    test_images: str = ""  # folder the test CSV's image paths are under; default data_dir
    extra_train: tuple[str, ...] = ()  # folders layout: more labelled class-folder splits merged into training


@dataclass(frozen=True)
class Columns:
    id: str = "id"
    image: str = "img_path"
    label: str = "label"
    group: str = ""  # optional: rows sharing a group never straddle folds (person-folders: the folder column)
    # instead of an image column: each row's image path built from its columns, e.g. "{id}.png" (ids that are
    # file stems, as in many Kaggle contests), under [files] train_images / test_images
    image_template: str = ""


@dataclass(frozen=True)
class Competition:
    name: str
    metric: str
    layout: str
    files: Files
    columns: Columns
    data_dir: str  # relative paths are resolved against the work directory
    description: str = ""
    classes: tuple[str, ...] | None = None  # column order of every probability array
    test_crop: float | None = None  # test images show about this fraction of each side
    pretrained_allowed: bool = True  # false: the rules forbid pretrained weights (pretrained / weights are errors)
    # whether the rules allow training on the (unlabelled) test images, as pseudo-labels: true lets `comptk auto`
    # pseudo-label on its own; false makes pseudo_run an error; None (not declared): only when asked for
    pseudo_labels_allowed: bool | None = None
    train: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # [train] values but "auto"
    auto_train: tuple[str, ...] = ()  # settings fitted to the data (no [train] table, or "auto"): config.resolve_run
    folds: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # [folds]: n_folds, seed
    tune: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # search space (comptk tune)
    augments: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # [augment.NAME] pipelines
    label_fixes: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # train id -> right label
    person_labels: str = ""  # person-folders layout: the labeler (comptk.data.labelers.LABELERS) naming each photo's class
    source: Path | None = None  # the declaration file

    def data_path(self, workdir: Path, override: str | Path | None = None) -> Path:
        path = Path(override) if override else Path(self.data_dir)
        return path if path.is_absolute() else Path(workdir) / path

    def train_defaults(self) -> dict[str, Any]:
        return dict(self.train)

    def fold_assignment(self) -> tuple[int, int]:
        """The competition's K and folds seed as declared ([folds], or [train] n_folds / folds_seed), else
        the code defaults: the folds every run shares unless it asks for others."""
        declared = {**self.folds_defaults(), **self.train_defaults()}
        return (int(declared.get("n_folds", config.TrainConfig.n_folds)),
                int(declared.get("folds_seed", config.TrainConfig.folds_seed)))

    def folds_defaults(self) -> dict[str, Any]:
        """The declared fold assignment as settings: K (n_folds) and the folds seed (folds_seed)."""
        return {FOLDS_KEYS[k]: v for k, v in self.folds.items()}

    @property
    def has_test_crop(self) -> bool:
        """Test images are crops of the pictures (``[test_time] crop`` below 1)."""
        return self.test_crop is not None and self.test_crop < 1


# key -> (type, required)
_TOP = {
    "name": (str, True),
    "metric": (str, True),
    "layout": (str, True),
    "description": (str, False),
    "data_dir": (str, False),
    "classes": (list, False),
    "files": (dict, True),
    "columns": (dict, False),
    "test_time": (dict, False),
    "train": (dict, False),
    "tune": (dict, False),
    "augment": (dict, False),
    "pretrained_allowed": (bool, False),
    "pseudo_labels_allowed": (bool, False),
    "label_fixes": (dict, False),
    "person_folders": (dict, False),
    "folds": (dict, False),
}
_FILES = {"train": (str, True), "test": (str, True), "sample_submission": (str, False),
          "train_images": (str, False), "test_images": (str, False), "extra_train": (list, False)}
_COLUMNS = {"id": (str, False), "image": (str, False), "label": (str, False), "group": (str, False),
            "image_template": (str, False)}
_PERSON_FOLDERS = {"labels": (str, True)}
_TEST_TIME = {"crop": (float, False)}
_FOLDS = {"n_folds": (int, False), "seed": (int, False)}
FOLDS_KEYS = {"n_folds": "n_folds", "seed": "folds_seed"}  # [folds] key -> the training setting it declares
_AUGMENT = {"transforms": (list, True)}


def _check_table(table: dict, schema: dict, where: str) -> None:
    for key in table:
        if key not in schema:
            raise ComptkError(f"{where}: unknown key '{key}'{did_you_mean(key, schema)}")
    for key, (kind, required) in schema.items():
        if key not in table:
            if required:
                raise ComptkError(f"{where}: missing required key '{key}'")
            continue
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, kind):
            raise ComptkError(
                f"{where}: key '{key}' must be a {kind.__name__}, got {value!r}"
            )


def _check_augments(tables: dict, img_size: int, path: Path) -> dict[str, tuple[dict, ...]]:
    """[augment.NAME] tables: user-defined albumentations pipelines, built once here so a bad
    transform name or argument fails when the declaration is read."""
    if not tables:
        return {}
    from .train import (
        augment,  # late import: albumentations and torch, only for declared pipelines
    )

    found = {}
    for name, table in tables.items():
        where = f"{path} [augment.{name}]"
        if not isinstance(table, dict):
            raise ComptkError(f"{where}: must be a table with a 'transforms' list")
        if name in augment.AUGMENTS:
            raise ComptkError(f"{where}: '{name}' is a built-in augment preset; give the pipeline another name")
        _check_table(table, _AUGMENT, where)
        augment.build_pipeline(table["transforms"], img_size, 0, where=where)
        found[name] = tuple(table["transforms"])
    return found


def _work_folders(workdir: str | Path) -> list[Path]:
    """Where a work directory's declarations live: WORKDIR/competitions, then ./competitions (a --workdir given
    wins over the folder the command runs in: `comptk init NAME --workdir W` wrote its NAME there)."""
    folders = [Path(workdir) / "competitions", Path("competitions")]
    return folders[:1] if folders[0].resolve() == folders[1].resolve() else folders


def _declarations(folders: list[Path]) -> dict[str, Path]:
    """Folder name -> declaration file; an earlier folder wins a name found twice."""
    found: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.glob(f"*/{DECLARATION}")):
                found.setdefault(path.parent.name, path)
    return found


def competition_names(workdir: str | Path = ".") -> list[str]:
    """Every NAME ``find_declaration`` knows: the work directory's and the bundled competitions."""
    return sorted(_declarations([*_work_folders(workdir), BUNDLED_DIR]))


def default_competition(workdir: str | Path = ".") -> Path:
    """The declaration a command uses when no NAME is given: the work directory's only competition (those of
    WORKDIR/competitions when it declares any: a --workdir given wins over the folder the command runs in, as
    for a NAME; else ./competitions). None or several is an error that lists what there is."""
    folders = _work_folders(workdir)
    where, found = " or ".join(str(f) for f in folders), {}
    for folder in folders:
        if own := _declarations([folder]):
            where, found = str(folder), own
            break
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        bundled = ", ".join(sorted(_declarations([BUNDLED_DIR])))
        raise ComptkError(f"no competition NAME given and none declared in {where}; pass a NAME "
                          f"(bundled: {bundled}) or declare one in competitions/NAME/{DECLARATION}")
    raise ComptkError(f"no competition NAME given and {where} declares {len(found)}: {', '.join(found)}; "
                      f"pass one of them as NAME")


def find_declaration(name_or_path: str | Path | None, workdir: str | Path = ".") -> Path:
    """NAME (looked up in WORKDIR/competitions, ./competitions, then the bundled ones) or a path;
    None: the work directory's only competition (``default_competition``)."""
    if name_or_path is None:
        return default_competition(workdir)
    given = Path(name_or_path)
    if given.is_file():
        return given
    if (given / DECLARATION).is_file():
        return given / DECLARATION
    for folder in [*_work_folders(workdir), BUNDLED_DIR]:
        if (folder / str(name_or_path) / DECLARATION).is_file():
            return folder / str(name_or_path) / DECLARATION
    known = competition_names(workdir)
    raise ComptkError(
        f"unknown competition '{name_or_path}'{did_you_mean(str(name_or_path), known)}: "
        f"no {DECLARATION} there or in competitions/ (known: {', '.join(known) or 'none'})"
    )


def load_competition(name_or_path: str | Path | None, workdir: str | Path = ".") -> Competition:
    """Read and validate a competition declaration (None: the work directory's only one)."""
    from .metrics import (
        METRICS,  # late import: scikit-learn, not needed to find or list declarations
    )

    path = find_declaration(name_or_path, workdir)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))  # -sig: a BOM from Notepad is dropped
    except tomllib.TOMLDecodeError as exc:
        raise ComptkError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition; Windows editors may save cp1252
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ComptkError(f"{path} line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); "
                          f"save the file as UTF-8") from None
    _check_table(raw, _TOP, str(path))
    _check_table(raw["files"], _FILES, f"{path} [files]")
    _check_table(raw.get("columns", {}), _COLUMNS, f"{path} [columns]")
    _check_image_template(raw.get("columns", {}), path)
    _check_table(raw.get("test_time", {}), _TEST_TIME, f"{path} [test_time]")
    config.check_keys(raw.get("train", {}), f"{path} [train]")
    _check_table(raw.get("folds", {}), _FOLDS, f"{path} [folds]")
    for key, train_key in (("n_folds", "n_folds"), ("seed", "folds_seed")):
        if key in raw.get("folds", {}) and train_key in raw.get("train", {}):
            raise ComptkError(f"{path}: the fold assignment is declared twice ([folds] {key} and [train] "
                              f"{train_key}); keep it in [folds]")
    train_table, auto_train = config.split_auto(raw.get("train"), f"{path} [train]")
    if raw["metric"] not in METRICS:
        raise ComptkError(
            f"{path}: metric '{raw['metric']}' is not known{did_you_mean(raw['metric'], METRICS)}; "
            f"choose one of: {', '.join(METRICS.names())}"
        )
    if raw["layout"] not in LAYOUTS:
        raise ComptkError(f"{path}: layout must be one of {', '.join(LAYOUTS)}, got '{raw['layout']}'")
    classes = raw.get("classes")
    if classes is not None:
        classes = tuple(str(c) for c in classes)
        if len(set(classes)) != len(classes) or len(classes) < 2:
            raise ComptkError(f"{path}: 'classes' must list at least 2 distinct names")
    crop = raw.get("test_time", {}).get("crop")
    if crop is not None and not 0 < crop <= 1:
        raise ComptkError(f"{path} [test_time]: 'crop' must be in (0, 1], got {crop}")
    # Check the [train] defaults now, so a bad value fails before any data is read.
    folds = {FOLDS_KEYS[k]: v for k, v in raw.get("folds", {}).items()}
    # "auto" settings are left to their code defaults here, for the checks
    defaults = config.resolve({**folds, **train_table}, where=f"{path} [train] / [folds]")
    augments = _check_augments(raw.get("augment", {}), defaults.img_size, path)
    check_tune_table(raw.get("tune", {}), str(path))
    pretrained_allowed = raw.get("pretrained_allowed", True)
    if not pretrained_allowed:
        config.check_pretrained_allowed(raw["name"], path, defaults, declared=True)
    files = dict(raw["files"])
    files["extra_train"] = _check_extra_train(files.get("extra_train", []), raw["layout"], path)
    person_labels = _check_person_folders(raw, path)
    return Competition(
        name=raw["name"],
        metric=raw["metric"],
        layout=raw["layout"],
        files=Files(**files),
        columns=Columns(**raw.get("columns", {})),
        data_dir=raw.get("data_dir", f"data/{raw['name']}"),
        description=raw.get("description", ""),
        classes=classes,
        test_crop=float(crop) if crop is not None else None,
        pretrained_allowed=pretrained_allowed,
        pseudo_labels_allowed=raw.get("pseudo_labels_allowed"),
        train=MappingProxyType(train_table),
        auto_train=auto_train,
        folds=MappingProxyType(dict(raw.get("folds", {}))),
        tune=MappingProxyType(dict(raw.get("tune", {}))),
        augments=MappingProxyType(augments),
        label_fixes=MappingProxyType(_check_label_fixes(raw.get("label_fixes", {}), classes, path)),
        person_labels=person_labels,
        source=path,
    )


def template_fields(template: str) -> list[str]:
    """The column names an image path template such as "{id}.png" reads."""
    import string

    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def _check_image_template(columns: dict, path: Path) -> None:
    template = columns.get("image_template")
    if template is None:
        return
    where = f"{path} [columns]"
    if "image" in columns:
        raise ComptkError(f"{where}: give either 'image' (a column of image paths) or 'image_template' "
                          f"(paths built from columns), not both")
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise ComptkError(f"{where}: image_template '{template}' is not a valid template ({exc})") from None
    if not fields or any(not f or not f.replace("_", "").replace("-", "").replace(" ", "").isalnum()
                         for f in fields):
        raise ComptkError(f"{where}: image_template '{template}' must name columns in braces, "
                          f"e.g. \"{{id}}.png\" (got fields {fields})")


def _check_extra_train(extra: list, layout: str, path: Path) -> tuple[str, ...]:
    if extra and layout != "folders":
        raise ComptkError(f"{path} [files]: 'extra_train' is for the folders layout only (layout is '{layout}')")
    if not all(isinstance(e, str) and e for e in extra) or len(set(extra)) != len(extra):
        raise ComptkError(f"{path} [files]: 'extra_train' must list distinct folder names, got {extra!r}")
    return tuple(extra)


def _check_person_folders(raw: dict, path: Path) -> str:
    """person-folders layout: [person_folders] labels names the labeler; [columns] group the folder column."""
    table = raw.get("person_folders")
    if raw["layout"] != "person-folders":
        if table is not None:
            raise ComptkError(f"{path}: [person_folders] is for layout = \"person-folders\" "
                              f"(layout is '{raw['layout']}')")
        return ""
    if table is None:
        raise ComptkError(f"{path}: layout \"person-folders\" needs a [person_folders] table with 'labels'")
    _check_table(table, _PERSON_FOLDERS, f"{path} [person_folders]")
    LABELERS.get(table["labels"])
    if not raw.get("columns", {}).get("group"):
        raise ComptkError(f"{path} [columns]: layout \"person-folders\" needs 'group', the train CSV's "
                          f"person-folder column (rows of one person share a fold)")
    return table["labels"]


def _check_label_fixes(fixes: dict, classes: tuple[str, ...] | None, path: Path) -> dict[str, str]:
    """[label_fixes]: train id -> the right label; ids and labels are checked against the data at load."""
    for id_, label in fixes.items():
        if not isinstance(label, str) or not label:
            raise ComptkError(f"{path} [label_fixes]: id '{id_}' must map to a label name (a string), got {label!r}")
        if classes is not None and label not in classes:
            raise ComptkError(f"{path} [label_fixes]: id '{id_}' -> '{label}' is not in the declared classes"
                              f"{did_you_mean(label, classes)}")
    return dict(fixes)
