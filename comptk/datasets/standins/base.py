"""The stand-in registry: what a stand-in is and how one is built into a folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...artifacts import atomic_folder
from ...errors import ComptkError
from ...registry import Registry
from ..target import check_target


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
