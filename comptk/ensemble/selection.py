"""Which of the given files are members, and whether an existing blend is this same blend.

Users type ``comptk ensemble oof/*.npy --out submissions/blend.csv``. A blend writes
``oof/NAME.npy`` like a run, so the next glob also matches every earlier blend (its members
would count twice) and the blend being written (it would be its own member); a partial run
(``--folds-subset``) has NaN OOF rows outside its folds, and an oof/RUN.npy without its record is
a run not finished. Those are left out, each with a note;
blends can be stacked on purpose (``allow_blends``), the blend being written never. Re-running
the same command (same members, same options, same --out) rewrites its blend without --force.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import artifacts
from ..errors import ComptkError
from .methods import BlendOptions

MIN_MEMBERS = 2


@dataclass(frozen=True)
class Selection:
    members: tuple[Path, ...]  # the oof/RUN.npy files to blend, in the given order
    left_out: tuple[tuple[Path, str], ...]  # (file, why)

    @property
    def notes(self) -> list[str]:
        return [f"left out {path}: {why}" for path, why in self.left_out]


def select_members(oof_paths: Sequence[str | Path], *, output: Path, allow_blends: bool = False) -> Selection:
    """Split the given oof/*.npy files into members and files left out (earlier blends unless
    ``allow_blends``, the blend being written at ``output`` (its oof/NAME.npy), partial runs).
    Fewer than 2 members left is an error that says what was left out and why."""
    kept: list[Path] = []
    left: list[tuple[Path, str]] = []
    for path in map(Path, oof_paths):
        if path.suffix != ".npy":
            raise ComptkError(f"{path}: a member is a run's oof/RUN.npy file (e.g. oof/*.npy), not a "
                              f"{path.suffix or 'folder or extensionless'} file")
        if not path.is_file():
            raise ComptkError(f"file not found: {path}")
        oof_twin = path.parent.parent / "oof" / path.name
        if path.parent.name == "preds" and artifacts.sidecar_for(oof_twin).is_file():
            raise ComptkError(f"{path}: the test predictions of run '{path.stem}'; a member is given by its OOF file "
                              f"{oof_twin} (the blend is fitted on OOF and applied to preds/ itself)")
        if not artifacts.sidecar_for(path).is_file():  # a run killed while writing, or a stray .npy
            left.append((path, f"no record {artifacts.sidecar_for(path).name} beside it: not a finished run "
                               f"(a run still writing or interrupted: run it again to finish)"))
            continue
        record = artifacts.read_record(artifacts.sidecar_for(path))
        if record.is_blend and path.resolve() == Path(output).resolve():
            left.append((path, "the blend this command writes is never its own member"))
        elif record.is_blend and not allow_blends:
            of = ", ".join(str(m.get("name") if isinstance(m, dict) else m) for m in record.members or ())
            why = f"a blend (of {of}), whose members would count twice; pass --allow-blends to stack blends on purpose"
            left.append((path, why))
        elif record.is_partial:
            done = ", ".join(map(str, record.trained_folds))
            why = (f"run '{path.stem}' is partial (folds {done} of {record.n_folds} trained, its other OOF rows are "
                   f"NaN); train its other folds (the same `comptk train ... --name {path.stem}` without "
                   f"--folds-subset) to include it")
            left.append((path, why))
        else:
            kept.append(path)
    selection = Selection(tuple(kept), tuple(left))
    if len(kept) < MIN_MEMBERS:
        why = f" after leaving out {len(left)} ({'; '.join(selection.notes)})" if left else ""
        raise ComptkError(f"an ensemble needs at least {MIN_MEMBERS} members (oof/RUN.npy files of finished runs), "
                          f"got {len(kept)}{why}")
    return selection


def is_same_blend(sidecar: Path, *, members: Sequence[str], options: BlendOptions, out: Path,
                  label_shift: str = "none") -> bool:
    """True when ``sidecar`` is a blend of the same members (by name, any order) with the same
    options (``label_shift`` included) written to the same --out: the same command run again,
    free to rewrite its blend."""
    if not Path(sidecar).is_file():
        return False
    try:
        record = artifacts.read_record(sidecar)
    except ComptkError:  # unreadable: not provably the same blend, so --force decides
        return False
    if not record.is_blend:
        return False
    saved_members = sorted(str(m.get("name")) for m in record.members or () if isinstance(m, dict))
    saved_out = record.artifacts.get("submission")
    config = json.loads(json.dumps(asdict(options), default=str))  # as the sidecar saved it
    saved_shift = (record.label_shift or {}).get("correction", "none")
    return (saved_members == sorted(members) and record.config == config and saved_shift == label_shift
            and saved_out is not None and Path(saved_out).resolve() == Path(out).resolve())
