"""What tuning hands to training: the ``base`` settings of a run (a settings file written by
``comptk tune --export``, a study's best trial) and the study a competition's commands mean.

Optuna is imported only when a study is read, so these stay cheap for `comptk train --settings`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import read_settings
from ..errors import ComptkError


def base_settings(settings_file: str | Path | None = None, from_study: str | None = None, *,
                  storage: str | None = None, workdir: str | Path = ".",
                  competition: str | Path | None = None,
                  echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The ``base`` of a run (config.resolve_run): the settings file's [train] table, then the best trial
    of a study made for ``competition`` over it; explicit overrides (flags) come on top of both. Empty
    when neither is given. ``echo``: say which settings the study gives."""
    if storage and not from_study:
        raise ComptkError("--storage is only used with --from-study")
    base = read_settings(settings_file) if settings_file else {}
    if from_study:
        from ..competition import load_competition
        from .study import best_settings  # late import: optuna

        base.update(best_settings(from_study, storage=storage, workdir=workdir,
                                  competition=load_competition(competition, workdir).name, echo=echo))
    return base


def study_name(study: str | None, competition: str | Path | None, workdir: str | Path = ".") -> str:
    """The study meant: ``study`` if given, else the competition's name, as ``tune()`` names a new study
    (competition None: the work directory's only competition)."""
    if study:
        return study
    from ..competition import load_competition

    return load_competition(competition, workdir).name
