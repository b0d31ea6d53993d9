"""Ensembles of finished runs: Caruana hill climbing, log-loss weights, mean, rank average, stacking.

    from comptk.ensemble import blend
    result = blend(["oof/a.npy", "oof/b.npy"], out="submissions/blend.csv", method="hill")
    result.cv, result.weights, result.report

Layout: ``selection`` picks the members from the given files (a glob like oof/*.npy: earlier
blends and partial runs left out) and tells a re-run of the same blend; ``validate`` loads and
checks members; ``methods`` holds the blending methods on arrays; ``crossfit`` fits one on all
OOF rows and scores it out-of-fold over the saved folds; ``bias`` fits per-class log-probability
biases; ``scoring`` is the batched metric; ``report`` renders; ``blend`` ties them together and
writes the files.
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
from .selection import Selection, is_same_blend, select_members
from .validate import Members, check_probabilities, load_members, load_truth

__all__ = [
    "METHODS", "METHOD_ORDER", "BlendOptions", "BlendResult", "Members", "MethodResult", "Scorer", "Selection",
    "apply_class_bias", "blend", "check_probabilities", "crossfit", "fit_class_bias", "fit_log_loss_weights",
    "hill_climb", "is_same_blend", "load_members", "load_truth", "parse_meta_params", "report_paths",
    "select_members",
]
