"""Blending methods on arrays: ``P`` is (members, rows, classes) probabilities, ``y`` int labels.

Each method's ``fit(y, P)`` returns a fitted blend whose ``apply(P)`` gives (rows, classes)
probabilities; ``uses_labels`` says whether fitting looks at ``y`` (and so needs a
cross-validated score to be honest). Methods are registry names: hill, weights, mean, rank, stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize
from scipy.stats import rankdata

from ..errors import ComptkError, did_you_mean
from ..registry import Registry
from .scoring import EPS, Scorer

DEFAULT_META = "sklearn.linear_model.LogisticRegression"
DEFAULT_META_PARAMS = {"C": 1.0, "tol": 1e-3, "max_iter": 1000}  # tol 1e-3: same score, 40% fewer steps


@dataclass(frozen=True)
class BlendOptions:
    """The blend's settings (saved as its sidecar's ``config``)."""

    method: str = "hill"
    n_rounds: int = 25
    n_bags: int = 1
    bag_fraction: float = 0.5
    seed: int = 0
    meta: str = DEFAULT_META
    meta_params: dict[str, Any] = field(default_factory=dict)
    class_bias: bool = False
    compare: bool = True

    def check(self) -> None:
        if self.method != "auto" and self.method not in METHODS:
            choices = ["auto", *METHOD_ORDER]
            raise ComptkError(f"unknown ensemble method '{self.method}'{did_you_mean(self.method, choices)}; "
                              f"choose one of: {', '.join(choices)}")
        for name, value in (("rounds", self.n_rounds), ("bags", self.n_bags)):
            if value < 1:
                raise ComptkError(f"--{name} must be at least 1, got {value}")
        if not 0 < self.bag_fraction <= 1:
            raise ComptkError(f"bag_fraction must be in (0, 1], got {self.bag_fraction}")


class Fitted(Protocol):
    weights: np.ndarray | None  # per member, for linear blends
    info: dict

    def apply(self, P: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Linear:
    """sum_m weights[m] * P[m]; weights are non-negative and sum to 1."""

    weights: np.ndarray
    info: dict = field(default_factory=dict)

    def apply(self, P: np.ndarray) -> np.ndarray:
        used = np.flatnonzero(self.weights)
        return np.tensordot(self.weights[used], P[used], axes=1)


def hill_climb(y: np.ndarray, P: np.ndarray, scorer: Scorer, n_rounds: int = 25) -> tuple[np.ndarray, dict]:
    """Caruana ensemble selection: greedy forward selection with replacement.

    Each round adds the member whose addition scores best (ties: lower log-loss, then lower
    index); round 1 therefore picks the best single member. The best round is kept (ties:
    lower log-loss, then earlier) and weights = picks up to it / its round number.
    """
    P = np.ascontiguousarray(P)  # the flat views below must not copy
    n_members, n_rows, n_classes = P.shape
    rows = np.arange(n_rows)
    true_p = P[:, rows, y]  # (M, n): all that log-loss needs
    top_p = P.max(axis=2)  # (M, n)
    running = np.zeros((n_rows, n_classes), np.float32)
    running_true = np.zeros(n_rows)
    picks: list[int] = []
    history: list[tuple[float, float]] = []  # (gain, log-loss) after each round
    for r in range(n_rounds):
        if r == 0:
            conf = scorer.confusions(y, P.argmax(axis=2))
        else:
            conf = _candidate_confusions(y, P, top_p, running, scorer)
        gains = scorer.gains(conf)
        tied = np.flatnonzero(gains >= gains.max() - 1e-12)
        losses = -np.log(np.maximum((running_true + true_p[tied]) / (r + 1), EPS)).mean(axis=1)
        pick = int(tied[np.argmin(losses)])  # argmin: the first (lowest index) of equal losses
        running += P[pick]
        running_true += true_p[pick]
        picks.append(pick)
        history.append((float(gains[pick]), float(losses.min())))
    best = 0
    for r, (gain, loss) in enumerate(history):
        if gain > history[best][0] + 1e-12 or (abs(gain - history[best][0]) <= 1e-12 and loss < history[best][1]):
            best = r
    counts = np.bincount(picks[: best + 1], minlength=n_members)
    info = {"best_round": best + 1, "picks": picks, "round_scores": [scorer.sign * g for g, _ in history]}
    return counts / (best + 1), info


def _candidate_confusions(
    y: np.ndarray, P: np.ndarray, top_p: np.ndarray, running: np.ndarray, scorer: Scorer
) -> np.ndarray:
    """(M, C, C) confusion of argmax(running + P[m]) for every member m, exactly.

    Adding P[m] can move a row's argmax away from the running leader c* only if the leader's
    margin over the runner-up is at most max_c P[m, row, c] - P[m, row, c*]; only those
    (member, row) pairs (a few percent) are recomputed, the rest keep c*.
    """
    n_members, n_rows, c = P.shape
    rows = np.arange(n_rows)
    leader = running.argmax(axis=1)
    top2 = np.partition(running, c - 2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    at_leader = np.take(P.reshape(n_members, -1), rows * c + leader, axis=1)  # P[:, rows, leader]
    pair = np.flatnonzero(margin[None, :] <= top_p - at_leader + 1e-5)  # slack for float32 rounding
    member, row = np.divmod(pair, n_rows)
    moved = (P.reshape(-1, c)[pair] + running[row]).argmax(axis=1)
    base = scorer.confusions(y, leader)[0]
    cells = member * (c * c) + y[row] * c
    size = n_members * c * c
    delta = np.bincount(cells + moved, minlength=size) - np.bincount(cells + leader[row], minlength=size)
    return base[None] + delta.reshape(n_members, c, c)


class Hill:
    uses_labels = True

    def __init__(self, options: BlendOptions, scorer: Scorer) -> None:
        self.options, self.scorer = options, scorer

    def fit(self, y: np.ndarray, P: np.ndarray) -> Linear:
        o = self.options
        if o.n_bags <= 1:
            weights, info = hill_climb(y, P, self.scorer, o.n_rounds)
            return Linear(weights, info)
        rng = np.random.default_rng(o.seed)
        size = max(1, int(round(o.bag_fraction * len(P))))
        weights, bags = np.zeros(len(P)), []
        for _ in range(o.n_bags):
            subset = np.sort(rng.choice(len(P), size=size, replace=False))
            bag_weights, _ = hill_climb(y, P[subset], self.scorer, o.n_rounds)
            weights[subset] += bag_weights / o.n_bags
            bags.append(subset.tolist())
        return Linear(weights / weights.sum(), {"bags": bags})


def fit_log_loss_weights(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise log-loss (convex in the weights)."""
    n_members, n_rows, _ = P.shape
    true_p = np.maximum(P[:, np.arange(n_rows), y].astype(np.float64), EPS)

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        blended = np.maximum(w @ true_p, EPS)
        return float(-np.log(blended).mean()), -(true_p / blended).mean(axis=1)

    start = np.full(n_members, 1.0 / n_members)
    result = minimize(
        loss_and_grad, start, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * n_members,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    weights = np.where(result.x > 1e-6, result.x, 0.0)
    return weights / weights.sum()


class Weights:
    uses_labels = True

    def __init__(self, options: BlendOptions, scorer: Scorer) -> None:
        pass

    def fit(self, y: np.ndarray, P: np.ndarray) -> Linear:
        return Linear(fit_log_loss_weights(y, P))


class Mean:
    uses_labels = False

    def __init__(self, options: BlendOptions, scorer: Scorer) -> None:
        pass

    def fit(self, y: np.ndarray, P: np.ndarray) -> Linear:
        return Linear(np.full(len(P), 1.0 / len(P)))


@dataclass(frozen=True)
class RankAverage:
    """Each member's per-class ranks among the rows it is applied to (scaled to (0, 1]),
    averaged over members; rows normalised to sum to 1 so the result reads as probabilities."""

    weights: None = None
    info: dict = field(default_factory=dict)

    def apply(self, P: np.ndarray) -> np.ndarray:
        ranks = rankdata(P, axis=1).mean(axis=0) / P.shape[1]
        return ranks / ranks.sum(axis=1, keepdims=True)


class Rank:
    uses_labels = False

    def __init__(self, options: BlendOptions, scorer: Scorer) -> None:
        pass

    def fit(self, y: np.ndarray, P: np.ndarray) -> RankAverage:
        return RankAverage()


def parse_meta_params(text: str | None) -> dict[str, Any] | None:
    """``--meta-params`` text (a JSON object, e.g. '{"n_estimators": 200}') -> keyword arguments of the
    meta-model; None stays None."""
    import json

    if text is None:
        return None
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ComptkError(f"--meta-params '{text}': not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise ComptkError(f"--meta-params '{text}': must be a JSON object")
    return params


def is_classifier_class(obj: Any) -> bool:
    """A class (not a function or an instance) that is a scikit-learn classifier: a ClassifierMixin
    subclass, or one with the estimator API (fit, predict_proba, get_params: CatBoost, for one)."""
    from sklearn.base import ClassifierMixin

    if not isinstance(obj, type):
        return False
    return issubclass(obj, ClassifierMixin) or all(callable(getattr(obj, a, None))
                                                   for a in ("fit", "predict_proba", "get_params"))


def make_meta(path: str, params: dict[str, Any], seed: int) -> Any:
    """An unfitted scikit-learn classifier from its import path; fails before any fitting."""
    module_name, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr) if module_name else None
    except (ImportError, AttributeError):
        cls = None
    if cls is None:
        raise ComptkError(f"--meta '{path}': cannot import it; give an import path such as "
                          f"sklearn.ensemble.RandomForestClassifier")
    if not is_classifier_class(cls):  # checked on the class: nothing is called before this
        raise ComptkError(f"--meta '{path}' is not a scikit-learn classifier class (a class with fit, "
                          f"predict_proba and get_params); give one such as sklearn.ensemble.RandomForestClassifier")
    given = dict(params)
    params = {**DEFAULT_META_PARAMS, **given} if path == DEFAULT_META else given
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ComptkError(f"--meta-params {given}: {path} does not accept them ({exc})") from None
    validate = getattr(estimator, "_validate_params", None)  # scikit-learn >= 1.2: the checks fit() would make,
    if callable(validate) and hasattr(type(estimator), "_parameter_constraints"):  # on its own classifiers only
        try:
            validate()
        except (TypeError, ValueError) as exc:  # InvalidParameterError: "The 'C' parameter of ... Got 'x' instead."
            raise ComptkError(f"--meta-params {given}: {str(exc).splitlines()[0]}") from None
    if not all(hasattr(estimator, a) for a in ("fit", "predict_proba", "get_params")):
        raise ComptkError(f"--meta '{path}' is not a scikit-learn classifier with predict_proba")
    if "random_state" in estimator.get_params() and "random_state" not in params:
        estimator.set_params(random_state=seed)
    return estimator


def stack_features(P: np.ndarray) -> np.ndarray:
    """(rows, members x classes) float32 log-probabilities centred per member and row
    (logits up to a constant), member-major. Centring lets the solver converge in few steps;
    per-feature scaling is left out on purpose: it magnifies a near-constant member's
    fold-to-fold differences (each fold's OOF comes from another model) into noise."""
    logp = np.log(np.clip(P, 1e-6, 1.0, dtype=np.float32))
    logp -= logp.mean(axis=2, keepdims=True)
    return logp.transpose(1, 0, 2).reshape(P.shape[1], -1)


@dataclass(frozen=True)
class StackModel:
    estimator: Any
    n_classes: int
    weights: None = None
    info: dict = field(default_factory=dict)

    def apply(self, P: np.ndarray) -> np.ndarray:
        proba = self.estimator.predict_proba(stack_features(P))
        out = np.zeros((P.shape[1], self.n_classes))
        out[:, np.asarray(self.estimator.classes_, dtype=int)] = proba
        return out


class Stack:
    uses_labels = True

    def __init__(self, options: BlendOptions, scorer: Scorer) -> None:
        self.options, self.n_classes = options, scorer.n_classes
        self.prototype = make_meta(options.meta, options.meta_params, options.seed)

    def fit(self, y: np.ndarray, P: np.ndarray) -> StackModel:
        from sklearn.base import clone

        params = dict(self.options.meta_params)
        if self.options.meta == DEFAULT_META:
            params = {**DEFAULT_META_PARAMS, **params}
        info = {"meta": self.options.meta, "meta_params": params,
                "features": "log-probabilities centred per member and row"}
        return StackModel(clone(self.prototype).fit(stack_features(P), y), self.n_classes, info=info)


MethodFactory = Callable[[BlendOptions, Scorer], Any]
METHODS: Registry[MethodFactory] = Registry("ensemble method")
for _name, _factory in (("hill", Hill), ("weights", Weights), ("mean", Mean), ("rank", Rank), ("stack", Stack)):
    METHODS.add(_name, _factory)
# Simplest first: 'auto' keeps the earlier of equal cross-validated scores.
METHOD_ORDER = ("mean", "rank", "weights", "hill", "stack")
