"""What to predict: image files (or folders of them) given one by one, or a CSV of ids and image paths."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..competition import template_fields
from ..data.images import images_in
from ..data.tables import ImageStems, check_ids, check_image_values, first_repeat, read_csv
from ..errors import ComptkError


@dataclass(frozen=True)
class ImageList:
    ids: tuple[str, ...]  # unique, in input order
    paths: tuple[Path, ...]  # may name missing or unreadable files: the predictor reports them


def images_from_paths(items: Sequence[str | Path]) -> ImageList:
    """Files and folders as given: a file's id is its path as given; a folder gives its images (hidden
    ones aside, sorted) with ids as the folders layout names test rows: the path inside it, no extension."""
    ids: list[str] = []
    paths: list[Path] = []
    for item in items:
        item = Path(item)
        if item.is_dir():
            found = images_in(item)
            if not found:
                raise ComptkError(f"{item}: a folder with no image files in it")
            ids += [str(p.relative_to(item).with_suffix("")) for p in found]
            paths += found
        else:
            if item.suffix.lower() == ".csv":
                raise ComptkError(f"{item} is a CSV, not an image; to predict its rows pass --csv {item}")
            ids.append(str(item))
            paths.append(item)
    if not paths:
        raise ComptkError("no images given: pass image files or folders, or --csv FILE")
    repeat = first_repeat(ids)
    if repeat is not None:
        raise ComptkError(f"two images would both get id '{ids[repeat[1]]}' ({paths[repeat[0]]} and "
                          f"{paths[repeat[1]]}); give each file or folder once, or use --csv with an id column")
    return ImageList(tuple(ids), tuple(paths))


def images_from_csv(csv: str | Path, *, image_column: str | None = None, id_column: str | None = None,
                    image_dir: str | Path | None = None, defaults: Mapping[str, Any] | None = None) -> ImageList:
    """Rows of a CSV with an id and an image-path column. ``defaults`` (the run's or bundle's ``inputs``)
    give the competition's column names and its test images' folder relative to the CSV's folder, so
    the competition's own test CSV needs no options; relative image paths resolve against ``image_dir``."""
    csv = Path(csv)
    defaults = defaults or {}
    frame = read_csv(csv)
    image_column = image_column or defaults.get("image_column")
    template = "" if image_column else defaults.get("image_template", "")  # the competition's [columns] image_template
    if not image_column and not template:
        raise ComptkError(f"{csv}: which column holds the image paths? pass --image-col COL "
                          f"(columns: {', '.join(frame.columns)})")
    id_column = id_column or defaults.get("id_column") or "id"
    wanted = [("image", c, "--image-col") for c in ([image_column] if image_column else template_fields(template))]
    for role, column, flag in (*wanted, ("id", id_column, "--id-col")):
        if column not in frame.columns:
            raise ComptkError(f"{csv}: no {role} column '{column}'; pass {flag} COL (columns: {', '.join(frame.columns)})")
    ids = frame[id_column].to_numpy(dtype=str)
    check_ids(ids, csv)
    if image_dir is not None:
        base = Path(image_dir)
        if not base.is_dir():
            raise ComptkError(f"--image-dir {base}: folder not found")
    else:
        base = csv.parent / defaults.get("image_dir", ".")
        if not base.is_dir():
            raise ComptkError(f"{csv}: its image paths are relative to {base} in the competition, but there is no "
                              f"such folder; pass --image-dir DIR (the folder the paths in '{image_column}' start from)")
    if template:
        fields = template_fields(template)
        values = [template.format(**dict(zip(fields, row))) for row in zip(*(frame[f] for f in fields))]
    else:
        values = frame[image_column].tolist()
        check_image_values(values, ids, csv)
    paths = tuple(Path(v) if Path(v).is_absolute() else base / v for v in values)
    if template:  # as reading the competition's data does (tables.resolve_paths)
        stems = ImageStems()
        paths = tuple(p if p.is_file() else stems.only(p) or p for p in paths)
    return ImageList(tuple(ids.tolist()), paths)
