"""Optuna search over training settings: ``tune`` runs or resumes a study, ``show`` prints it,
``best_settings`` / ``export_settings`` hand the best trial to ``comptk train``.

Names are imported lazily: the competition loader uses :mod:`comptk.tune.space` to check a
declaration's [tune] table without pulling in the training stack.
"""

from __future__ import annotations

__all__ = ["PRUNERS", "TuneResult", "best_settings", "export_settings", "load_study", "show", "tune"]


def __getattr__(name: str):
    if name in __all__:
        from . import study

        return getattr(study, name)
    raise AttributeError(name)
