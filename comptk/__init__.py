"""comptk: image-classification competitions, done right.

Library API (the CLI is a thin layer over these)::

    from comptk import load_competition, run_cv, prepare, score_submission
    run = run_cv("digits", workdir="work", n_folds=3, epochs=2)
    run.cv, run.paths.oof
"""

__version__ = "0.1.0"

from .competition import Competition, load_competition  # noqa: E402
from .config import TrainConfig, resolve  # noqa: E402
from .crossval import RunResult, run_cv  # noqa: E402
from .ensemble import BlendResult, blend  # noqa: E402
from .errors import ComptkError  # noqa: E402
from .prepare import prepare  # noqa: E402
from .runs import RunPaths, load_run  # noqa: E402
from .submission import score_submission  # noqa: E402

__all__ = [
    "BlendResult", "Competition", "ComptkError", "RunPaths", "RunResult", "TrainConfig", "blend", "load_competition", "load_run",
    "prepare", "resolve", "run_cv", "score_submission", "__version__",
]
