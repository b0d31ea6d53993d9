"""Stand-ins for the five reference contests: small generated data sets written in exactly
each contest's file layout, column names and quirks, so the whole pipeline (prepare -> train ->
submission -> score) runs without the real data. ``comptk prepare NAME`` builds one; real contest
data is used by pointing ``--data`` at it instead, with no other change.

Every stand-in writes, besides the contest's own files, ``answers.csv`` (held-out test labels in
the submission's format, for ``comptk score``) and ``STANDIN.md`` (what it reproduces).
Images are synthetic (or drawn from scikit-learn's digits), so nothing needs a download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ComptkError
from ..prepare import check_target
from ..registry import Registry
from ..runs import atomic_folder


@dataclass(frozen=True)
class StandIn:
    # write(folder, rng, train_n, test_n) fills an empty folder and returns STANDIN.md's text
    write: Callable[[Path, np.random.Generator, int | None, int | None], str]
    description: str


STANDINS: Registry[StandIn] = Registry("contest stand-in")


def build_standin(name: str, target: Path, *, seed: int = 0, train_n: int | None = None,
                  test_n: int | None = None, force: bool = False) -> Path:
    """Write stand-in NAME to ``target``, built beside it and renamed into place when complete."""
    standin = STANDINS.get(name)
    target = check_target(target, force)
    for flag, value in (("--train-n", train_n), ("--test-n", test_n)):
        if value is not None and value < 1:
            raise ComptkError(f"{flag} must be a positive number of images, got {value}")
    with atomic_folder(target) as building:
        notes = standin.write(building, np.random.default_rng(seed), train_n, test_n)
        (building / "STANDIN.md").write_text(notes, encoding="utf-8")
    return target


from . import artist, cifar10, illustration, kfood, mask  # noqa: E402,F401  (register the stand-ins)
