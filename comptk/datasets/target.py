"""Where ``comptk prepare`` may write: never the current folder or one of its parents, and
``--force`` replaces only a folder that ``prepare`` made."""

from __future__ import annotations

from pathlib import Path

from ..errors import ComptkError

PREPARED_MARKS = ("answers.csv", "STANDIN.md")  # files every prepared data folder has (one of them)


def check_target(target: Path, force: bool) -> Path:
    """The folder ``prepare`` may build (and, with ``force``, replace): never the current folder or one
    of its parents, and ``force`` replaces only an empty folder or one that ``prepare`` made."""
    target = Path(target).resolve()
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        raise ComptkError(f"{target} is the current folder or holds it; name a folder of its own for the data")
    if target.exists():
        if not force:
            raise ComptkError(f"{target} already exists; pass --force to build it again")
        if not target.is_dir() or (any(target.iterdir()) and not any((target / m).exists() for m in PREPARED_MARKS)):
            raise ComptkError(f"{target} exists and was not made by `comptk prepare` (it has no "
                              f"{' or '.join(PREPARED_MARKS)}); --force replaces only prepared data: remove it "
                              f"yourself or choose another folder")
    return target
