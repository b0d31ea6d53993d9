"""Ensembles of finished runs: Caruana hill climbing, log-loss weights, mean, rank average, stacking.

    from comptk.ensemble import blend
    result = blend(["oof/a.npy", "oof/b.npy"], out="submissions/blend.csv", method="hill")
    result.cv, result.weights, result.report

Layout: ``validate`` loads and checks members; ``methods`` holds the blending methods on arrays;
``crossfit`` fits one on all OOF rows and scores it out-of-fold over the saved folds; ``bias``
fits per-class log-probability biases; ``scoring`` is the batched metric; ``report`` renders;
``blend`` ties them together and writes the files.
"""

from .bias import apply_class_bias, fit_class_bias
from .blend import BlendResult, blend, report_paths
from .crossfit import MethodResult, crossfit
from .methods import (
    METHOD_ORDER,
    METHODS,
    BlendOptions,
    fit_log_loss_weights,
    hill_climb,
    parse_meta_params,
)
from .scoring import Scorer
from .validate import Members, check_probabilities, load_members, load_truth

__all__ = [
    "METHODS", "METHOD_ORDER", "BlendOptions", "BlendResult", "Members", "MethodResult", "Scorer",
    "apply_class_bias", "blend", "check_probabilities", "crossfit", "fit_class_bias", "fit_log_loss_weights",
    "hill_climb", "load_members", "load_truth", "parse_meta_params", "report_paths",
]
