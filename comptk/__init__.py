"""comptk: image-classification competitions, done right.

Library API (the CLI is a thin layer over these)::

    from comptk import load_competition, run_cv, prepare, score_submission
    run = run_cv("digits", {"n_folds": 3, "epochs": 2}, workdir="work")
    run.cv, run.paths.oof
    load_predictor("bundle-dir or RUN").predict(["a.png", "b.png"]).labels

Names are imported on first use (PEP 562), so ``import comptk`` and the command line's
``--help`` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BlendResult": "comptk.ensemble",
    "blend": "comptk.ensemble",
    "Competition": "comptk.competition",
    "load_competition": "comptk.competition",
    "ComptkError": "comptk.errors",
    "TrainConfig": "comptk.config",
    "resolve": "comptk.config",
    "resolve_run": "comptk.config",
    "RunPaths": "comptk.artifacts",
    "load_run": "comptk.artifacts",
    "RunResult": "comptk.train.crossval",
    "run_cv": "comptk.train.crossval",
    "prepare": "comptk.datasets",
    "load_predictor": "comptk.predict",
    "export_run": "comptk.predict",
    "score_submission": "comptk.submission",
    "assess_label_shift": "comptk.label_shift",
    "prior_corrected": "comptk.label_shift",
    "init_competition": "comptk.declare",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'comptk' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
