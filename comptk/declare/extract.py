"""A contest's zip (as ``kaggle competitions download`` gives it) extracted safely into WORKDIR/data/NAME.

Safely: no member may land outside the target (absolute names, drive letters, ``..`` parts and symbolic links
are refused before anything is written); the files are written to a temporary folder beside the target and
renamed into place when complete. A zip whose files all sit in one top folder is unwrapped (the folder's
content becomes the data folder), and zips inside it (``train.zip``) are extracted beside it, one level deep.
A mark file records which zip the folder came from: the same zip is not extracted twice, and ``--force``
replaces only a folder that ``init`` extracted.
"""

from __future__ import annotations

import json
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from ..artifacts import atomic_folder
from ..errors import ComptkError

MARK = ".comptk-init.json"
_SKIP = ("__MACOSX/",)  # macOS resource forks: not contest files


def _stamp(zip_path: Path) -> dict:
    info = zip_path.stat()
    return {"zip": str(zip_path.resolve()), "bytes": info.st_size, "mtime_ns": info.st_mtime_ns}


def safe_members(archive: zipfile.ZipFile, where: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """(member, relative path) of every file to extract; a name that could escape the target is an error."""
    found = []
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        if name.startswith(_SKIP) or name.endswith("/"):
            continue
        path = PurePosixPath(name)
        mode = info.external_attr >> 16
        if (name.startswith("/") or ":" in path.parts[0] or ".." in path.parts
                or (mode and stat.S_ISLNK(mode))):
            raise ComptkError(f"{where}: member '{info.filename}' would be written outside the data folder "
                              f"(an absolute path, a '..' or a link); refusing to extract this zip")
        found.append((info, path))
    return found


def _extract(zip_path: Path, into: Path, *, unwrap: bool) -> list[str]:
    """Extract zip_path into the folder ``into``; returns notes on what was done."""
    notes = []
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = safe_members(archive, zip_path)
            if not members:
                raise ComptkError(f"{zip_path}: the zip holds no files")
            tops = {path.parts[0] for _, path in members}
            strip = 0
            if unwrap and len(tops) == 1 and all(len(path.parts) > 1 for _, path in members):
                strip = 1
                notes.append(f"its files were in one top folder '{next(iter(tops))}/', unwrapped")
            for info, path in members:
                target = into.joinpath(*path.parts[strip:])
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as exc:
        raise ComptkError(f"{zip_path}: not a readable zip file ({exc})") from None
    return notes


def extract_contest(zip_path: Path, target: Path, *, force: bool = False) -> tuple[Path, list[str]]:
    """Extract the contest zip into ``target`` (WORKDIR/data/NAME); returns the folder and notes for the summary.
    The same zip already extracted there is reused."""
    zip_path, target = Path(zip_path), Path(target)
    if not zip_path.is_file():
        raise ComptkError(f"--data {zip_path}: no such file")
    mark = target / MARK
    if target.exists():
        previous = json.loads(mark.read_text(encoding="utf-8")) if mark.is_file() else None
        if previous == _stamp(zip_path) and not force:
            return target, [f"already extracted from {zip_path.name} into {target}: reused (--force extracts again)"]
        if not force:
            what = (f"was extracted from another zip ({previous['zip']})" if previous else "exists")
            raise ComptkError(f"{target} {what}; pass --force to replace it with {zip_path.name}, or --data that "
                              f"folder to use it as it is")
        if previous is None and any(target.iterdir()):
            raise ComptkError(f"{target} exists and was not extracted by `comptk init` (no {MARK}); --force replaces "
                              f"only such folders: remove it yourself, or pass --data {target} to use it")
    notes = [f"extracted from {zip_path.name} into {target}"]
    with atomic_folder(target) as building:
        notes += _extract(zip_path, building, unwrap=True)
        for inner in sorted(p for p in building.iterdir() if p.suffix.lower() == ".zip" and p.is_file()):
            # Kaggle ships image folders as train.zip / test.zip beside the CSVs: extract them one level deep
            try:
                with zipfile.ZipFile(inner) as archive:
                    members = safe_members(archive, inner)
            except zipfile.BadZipFile as exc:
                raise ComptkError(f"{zip_path}: inner {inner.name} is not a readable zip file ({exc})") from None
            own_folder = all(path.parts[0] == inner.stem and len(path.parts) > 1 for _, path in members)
            _extract(inner, building if own_folder else building / inner.stem, unwrap=False)
            inner.unlink()
            notes.append(f"inner {inner.name} extracted into {inner.stem}/")
        (building / MARK).write_text(json.dumps(_stamp(zip_path)) + "\n", encoding="utf-8")
    return target, notes
