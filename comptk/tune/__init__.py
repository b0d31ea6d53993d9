"""Optuna search over training settings: ``tune`` runs or resumes a study, ``show`` prints it,
``best_settings`` / ``export_settings`` hand the best trial to ``comptk train``; ``base_settings``
(a settings file and/or a study's best trial) is the ``base`` of a run, ``study_name`` the study a
command means.

Names are imported lazily: the competition loader uses :mod:`comptk.tune.space` to check a
declaration's [tune] table without pulling in the training stack.
"""

from __future__ import annotations

__all__ = ["PRUNERS", "TuneResult", "base_settings", "best_settings", "export_settings", "load_study", "show",
           "study_name", "tune"]


def __getattr__(name: str):
    if name in ("base_settings", "study_name"):
        from . import handoff

        return getattr(handoff, name)
    if name in __all__:
        from . import study

        return getattr(study, name)
    raise AttributeError(name)
