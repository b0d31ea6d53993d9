"""Competition tables, image decoding and the in-memory image dataset.

Images are decoded once (any PIL mode -> RGB uint8) and resized to the training
size, so epochs index a uint8 array instead of decoding files again.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from .competition import Competition
from .errors import ComptkError, did_you_mean

# Bump DECODE_VERSION whenever decode_image or load_images change the pixels they give:
# it is part of the image cache's key (image_cache.py), so old caches are not reused.
DECODE_VERSION = 1
RESIZE_METHOD = "bilinear"
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Table:
    ids: np.ndarray  # str, unique
    paths: tuple[Path, ...]
    labels: np.ndarray | None = None  # int class index per row (train only)
    groups: np.ndarray | None = None  # str group per row, when declared
    label_fixes: tuple[tuple[str, str, str], ...] = ()  # (id, label in the data, label used): [label_fixes]


@dataclass(frozen=True)
class CompetitionData:
    competition: Competition
    data_dir: Path
    classes: tuple[str, ...]
    train: Table
    test: Table
    sample_submission: pd.DataFrame | None  # read as strings, in its own row order

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ComptkError(f"file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ComptkError(f"{path}: cannot read as CSV: {str(exc).splitlines()[0]}") from None
    if frame.empty:
        raise ComptkError(f"{path}: has no rows")
    return frame


def _require_columns(frame: pd.DataFrame, path: Path, columns: dict[str, str]) -> None:
    for role, column in columns.items():
        if column not in frame.columns:
            raise ComptkError(
                f"{path}: no column '{column}' (declared as the {role} column); "
                f"columns are: {', '.join(frame.columns)}"
            )


def _check_ids(ids: np.ndarray, path: Path) -> None:
    seen: dict[str, int] = {}
    for row, value in enumerate(ids):
        if value == "":
            raise ComptkError(f"{path} line {row + 2}: empty id")
        if value in seen:
            raise ComptkError(f"{path} line {row + 2}: id '{value}' repeats line {seen[value] + 2}")
        seen[value] = row


def _resolve_paths(values: list[str], ids: np.ndarray, base: Path, path: Path) -> tuple[Path, ...]:
    resolved = []
    for row, (value, id_) in enumerate(zip(values, ids)):
        image = Path(value) if Path(value).is_absolute() else base / value
        if not image.is_file():
            raise ComptkError(f"{path} line {row + 2} (id '{id_}'): image file not found: {image}")
        resolved.append(image)
    return tuple(resolved)


def _encode_labels(names: list[str], classes: tuple[str, ...], ids: np.ndarray, path: Path) -> np.ndarray:
    index = {name: i for i, name in enumerate(classes)}
    labels = np.empty(len(names), dtype=np.int64)
    for row, name in enumerate(names):
        if name not in index:
            raise ComptkError(
                f"{path} line {row + 2} (id '{ids[row]}'): label '{name}' is not in the class list "
                f"({len(classes)} classes declared in competition.toml)"
            )
        labels[row] = index[name]
    return labels


def _image_dir(data_dir: Path, folder: str) -> Path:
    """The folder a CSV's image paths are relative to (data_dir unless declared)."""
    base = data_dir / folder if folder else data_dir
    if folder and not base.is_dir():
        raise ComptkError(f"image folder not found: {base}")
    return base


def read_csv_test(comp: Competition, data_dir: Path) -> Table:
    """The test CSV: id and image columns; images under [files] test_images (default data_dir)."""
    cols = comp.columns
    test_path = data_dir / comp.files.test
    test = read_csv(test_path)
    _require_columns(test, test_path, {"id": cols.id, "image": cols.image})
    test_ids = test[cols.id].to_numpy(dtype=str)
    _check_ids(test_ids, test_path)
    base = _image_dir(data_dir, comp.files.test_images)
    return Table(ids=test_ids, paths=_resolve_paths(test[cols.image].tolist(), test_ids, base, test_path))


def _read_csv_layout(comp: Competition, data_dir: Path) -> tuple[Table, Table, tuple[str, ...]]:
    cols = comp.columns
    train_path = data_dir / comp.files.train
    train = read_csv(train_path)
    wanted = {"id": cols.id, "image": cols.image, "label": cols.label}
    if cols.group:
        wanted["group"] = cols.group
    _require_columns(train, train_path, wanted)
    train_ids = train[cols.id].to_numpy(dtype=str)
    _check_ids(train_ids, train_path)
    label_names = train[cols.label].tolist()
    for row, name in enumerate(label_names):
        if name == "":
            raise ComptkError(f"{train_path} line {row + 2} (id '{train_ids[row]}'): empty label")
    label_names, fixes = _fixed_labels(comp, train_ids, label_names, train_path)
    classes = comp.classes or tuple(sorted(set(label_names)))
    base = _image_dir(data_dir, comp.files.train_images)
    train_table = Table(
        ids=train_ids,
        paths=_resolve_paths(train[cols.image].tolist(), train_ids, base, train_path),
        labels=_encode_labels(label_names, classes, train_ids, train_path),
        groups=train[cols.group].to_numpy(dtype=str) if cols.group else None,
        label_fixes=fixes,
    )
    return train_table, read_csv_test(comp, data_dir), classes


def _fixed_labels(comp: Competition, ids: np.ndarray, labels: list[str], where: Path,
                  classes: tuple[str, ...] = ()) -> tuple[list[str], tuple[tuple[str, str, str], ...]]:
    """The train labels with the declaration's [label_fixes] applied (id -> right label), and
    the fixes as (id, label in the data, label used). ``classes``: the layout's class list when it
    knows one (class folders, a labeler), so a fix may name a class that has no images yet."""
    if not comp.label_fixes:
        return labels, ()
    row_of = {id_: row for row, id_ in enumerate(ids)}
    known = set(comp.classes or classes or labels)
    fixed, applied = list(labels), []
    for id_, label in comp.label_fixes.items():
        if id_ not in row_of:
            raise ComptkError(
                f"{comp.source} [label_fixes]: id '{id_}' is not a train id of {where}{did_you_mean(id_, row_of)}"
            )
        if label not in known:
            raise ComptkError(
                f"{comp.source} [label_fixes]: id '{id_}' -> '{label}' is not a label of {where}"
                f"{did_you_mean(label, known)}"
            )
        applied.append((id_, labels[row_of[id_]], label))
        fixed[row_of[id_]] = label
    return fixed, tuple(applied)


def _is_visible(path: Path) -> bool:
    """Not a hidden file: macOS copies leave '._name.jpg' resource forks beside the images."""
    return not path.name.startswith(".")


def _images_in(folder: Path) -> list[Path]:
    """Image files under folder, not hidden nor in a hidden folder (e.g. .ipynb_checkpoints)."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folder_rows(split_dir: Path, classes: tuple[str, ...],
                       prefix: str) -> tuple[list[Path], list[int], list[str]]:
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and _is_visible(p))
    for name in found:
        if name not in classes:
            raise ComptkError(f"{split_dir / name}: class folder '{name}' is not in the class list")
    paths, labels = [], []
    for index, name in enumerate(classes):
        files = _images_in(split_dir / name) if (split_dir / name).is_dir() else []
        paths += files
        labels += [index] * len(files)
    ids = [prefix + str(p.relative_to(split_dir).with_suffix("")) for p in paths]
    _check_stems(ids, paths)
    return paths, labels, ids


def _check_stems(ids: list[str], paths: list[Path]) -> None:
    """Folder layouts name rows by path without extension: 'a.jpg' beside 'a.png' would share an id."""
    seen: dict[str, Path] = {}
    for id_, path in zip(ids, paths):
        if id_ in seen:
            raise ComptkError(f"{path.parent}: images '{seen[id_].name}' and '{path.name}' differ only in their "
                              f"extension, so both would be id '{id_}'; rename or remove one")
        seen[id_] = path


def _read_folder_layout(comp: Competition, data_dir: Path) -> tuple[Table, Table, tuple[str, ...]]:
    train_dir, test_dir = data_dir / comp.files.train, data_dir / comp.files.test
    extra_dirs = [data_dir / name for name in comp.files.extra_train]
    for folder in (train_dir, test_dir, *extra_dirs):
        if not folder.is_dir():
            raise ComptkError(f"folder not found: {folder}")
    classes = comp.classes or tuple(sorted({p.name for d in (train_dir, *extra_dirs)
                                            for p in d.iterdir() if p.is_dir() and _is_visible(p)}))
    paths, labels, ids = _class_folder_rows(train_dir, classes, "")
    if not paths:
        raise ComptkError(f"{train_dir}: no images in class folders")
    for name, folder in zip(comp.files.extra_train, extra_dirs):  # ids keep the split's name: "val/kimchi/001"
        more = _class_folder_rows(folder, classes, f"{name}/")
        paths, labels, ids = paths + more[0], labels + more[1], ids + more[2]
    test_paths = _images_in(test_dir)
    if not test_paths:
        raise ComptkError(f"{test_dir}: no test images")
    train_ids = np.array(ids, dtype=str)
    label_names, fixes = _fixed_labels(comp, train_ids, [classes[i] for i in labels], train_dir, classes)
    test_ids = [str(p.relative_to(test_dir).with_suffix("")) for p in test_paths]
    _check_stems(test_ids, test_paths)
    test_ids = np.array(test_ids, dtype=str)
    return (
        Table(ids=train_ids, paths=tuple(paths), labels=_encode_labels(label_names, classes, train_ids, train_dir),
              label_fixes=fixes),
        Table(ids=test_ids, paths=tuple(test_paths)),
        classes,
    )


def _match_sample_ids(comp: Competition, data_dir: Path, test: Table, sample_ids: set[str]) -> Table:
    """Folder layouts name test rows by file stem ('0001'); a sample submission may use the file
    name ('0001.jpg') instead: then test rows take the sample's form."""
    if comp.layout != "folders" or sample_ids == set(test.ids):
        return test
    test_dir = data_dir / comp.files.test
    names = np.array([str(p.relative_to(test_dir)) for p in test.paths], dtype=str)
    return Table(ids=names, paths=test.paths) if sample_ids == set(names) else test


def _read_person_folders(comp: Competition, data_dir: Path) -> tuple[Table, Table, tuple[str, ...]]:
    from .persons import read_person_folders  # late import: persons builds on this module

    train, classes = read_person_folders(comp, data_dir)
    return train, read_csv_test(comp, data_dir), classes


_READERS = {"csv": _read_csv_layout, "folders": _read_folder_layout, "person-folders": _read_person_folders}


def read_data(comp: Competition, data_dir: Path) -> CompetitionData:
    """Read and check the train table (with [label_fixes] applied), the test table and the sample submission."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        from .standins import STANDINS

        if comp.name in STANDINS:
            raise ComptkError(
                f"data folder not found: {data_dir} (put the contest's data there or pass --data DIR; "
                f"`comptk prepare {comp.name}` writes a small generated stand-in there)"
            )
        raise ComptkError(
            f"data folder not found: {data_dir} (run `comptk prepare {comp.name}` "
            f"if comptk can build it, or pass --data DIR)"
        )
    train, test, classes = _READERS[comp.layout](comp, data_dir)
    sample = None
    if comp.files.sample_submission:
        sample_path = data_dir / comp.files.sample_submission
        sample = read_csv(sample_path)
        _require_columns(sample, sample_path, {"id": comp.columns.id})
        if len(sample.columns) < 2:
            raise ComptkError(f"{sample_path}: needs an id column and a label column")
        test = _match_sample_ids(comp, data_dir, test, set(sample[comp.columns.id]))
        missing = set(sample[comp.columns.id]) ^ set(test.ids)
        if missing:
            raise ComptkError(
                f"{sample_path}: ids differ from the test table's "
                f"(e.g. '{sorted(missing)[0]}'; {len(missing)} ids in one but not the other)"
            )
    return CompetitionData(comp, data_dir, classes, train, test, sample)


def decode_image(path: Path) -> Image.Image:
    """Open any image as RGB: grayscale is repeated, transparency goes onto white."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(canvas, rgba).convert("RGB")
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                array = np.asarray(img, dtype=np.float64)
                span = max(array.max() - array.min(), 1e-12)
                return Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8)).convert("RGB")
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        detail = "not a readable image file" if str(path) in str(exc) else str(exc)
        raise ComptkError(f"cannot read image {path}: {detail}") from None


def load_images(paths: tuple[Path, ...] | list[Path], size: int) -> np.ndarray:
    """Decode and resize images to size x size, as one uint8 array (N, size, size, 3)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def load(i: int) -> None:
        img = decode_image(paths[i])
        if img.size != (size, size):
            img = img.resize((size, size), _RESAMPLE[RESIZE_METHOD])
        out[i] = np.asarray(img)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(load, range(len(paths))))
    return out


class ImageArrayDataset(torch.utils.data.Dataset):
    """Decoded images (N, H, W, 3 uint8) with optional labels and per-image augmentation.

    Batches are fetched whole (``__getitems__``) and stay uint8 until the engine
    moves them to the device, where they are normalised.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray | None = None, transform=None):
        self.images = images
        self.labels = labels
        self.transform = transform  # albumentations (per image) or a batch callable (augment.BatchAugment)
        self.batched = getattr(transform, "batched", False)

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        index = np.asarray(indices)
        batch = self.images[index]
        if self.transform is not None and not self.batched:
            batch = np.stack([self.transform(image=image)["image"] for image in batch])
        batch = torch.from_numpy(batch)
        if self.batched:
            batch = self.transform(batch)
        labels = None if self.labels is None else torch.from_numpy(self.labels[index])
        return batch, labels

    def without_batch_transform(self) -> ImageArrayDataset:
        """The same images and labels with no batch-level augmentation (the engine then
        applies it itself, on the device, after the copy)."""
        return ImageArrayDataset(self.images, self.labels, None if self.batched else self.transform)

    def __getitem__(self, index: int):
        images, labels = self.__getitems__([index])
        return images[0], None if labels is None else labels[0]


def keep_batch(batch):
    """collate_fn for ImageArrayDataset: batches arrive already stacked."""
    return batch
