"""Label shift: estimate the test set's class prior from test probabilities, and correct them for it.

A leaderboard's test set often has other class proportions than train (a long-tailed train set, a
balanced test set). Under label shift (p(x|y) the same, p(y) changed) Bayes' rule gives the test
posterior from the train one: ``p_test(y|x) ∝ p_train(y|x) * q(y) / pi(y)``, with ``pi`` the train
prior and ``q`` the test prior. ``q`` is unknown; two estimators:

- EM (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs of a classifier to new a priori
  probabilities"): alternate that reweighting with ``q = mean reweighted posterior`` over the test
  rows; it converges to the maximum-likelihood ``q``. It trusts the probabilities, so they must be
  calibrated on the train distribution (checked and, if needed, fixed on OOF rows: ``calibrate``).
- BBSE (Lipton, Wang & Smola 2018, "Detecting and correcting for label shift with black box
  predictors"): solve ``C w = mu`` with ``C`` the OOF joint of predicted and true class and ``mu`` the
  predicted-class frequencies on test; ``q = w * pi``. Hard labels only (no calibration needed) but
  noisier: kept as a cross-check.

``assess_label_shift`` is the one entry point (train, ensemble, and later auto call it): it returns
the sidecar's ``label_shift`` record, a one-line summary and, when asked, the corrected test
probabilities. An estimate is never applied when it is not reliable: EM did not converge, or the
model cannot tell some classes apart on OOF rows (their test shares are then not identified; a few
epochs on a long-tailed set that never predict the rare classes). OOF probabilities are never
corrected: they follow the train prior, as they should. numpy and scipy only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax

from . import artifacts
from .errors import ComptkError

CORRECTIONS = ("none", "em")
CALIBRATIONS = ("auto", "none", "temperature", "temperature+bias")

# When the estimated test prior "differs clearly" from train's (summaries say so):
# - total variation distance > 0.1: a tenth of the probability mass sits in other classes than train's
#   proportions put it; enough to change many borderline argmax decisions, hence accuracy and macro F1;
# - or a class's prior changes more than 2x (either way): its log-odds move by log 2 = 0.69 nats under
#   correction, which flips every prediction whose top-two margin is smaller. Only classes holding at
#   least half an even share (1 / 2C) in either prior count, so one tiny class's noisy estimate does not
#   decide alone (it still counts through the TV distance);
# - and the TV distance exceeds 3x what drawing n_test labels from the train prior gives by chance,
#   so a few dozen test rows never "show" a shift.
TV_CLEAR, RATIO_CLEAR, NOISE_FACTOR = 0.1, 2.0, 3.0

# Calibration check on OOF rows (mode "auto"):
# - top-label ECE (15 bins) above 0.03 -> fit a temperature. A calibrated model's ECE on a few thousand
#   rows is ~0.01 (bin noise); overconfident CNNs show 0.05-0.15 (Guo et al. 2017).
# - then, if the mean OOF posterior still misses the train label frequencies by TV > 0.02, also fit
#   per-class biases (bias-corrected temperature scaling, Alexandari et al. 2020): a model trained
#   toward another prior (weighted sampler, class weights, focal or F1 loss) has posteriors that follow
#   that prior, and EM, which reweights from the label frequencies, would be biased by the gap.
ECE_LIMIT, PRIOR_GAP_LIMIT = 0.03, 0.02

EM_TOL, EM_MAX_ITER = 1e-6, 1000
# Identifiability: with calibrated posteriors the mean test posterior is about M q, M[i, j] the mean calibrated
# OOF probability of class i on rows of class j (soft_confusion), so q is pinned down by inverting M. When M's
# smallest singular value is under 0.1, an error of 1% in the mean test posterior (model mismatch, test
# crops) can move q by 10 points or more: some classes' shares are not identified (a model that cannot
# tell them apart, e.g. never predicts the rare classes after a few epochs). Exact Gaussian posteriors of
# four overlapping classes give ~0.2; an uninformative model gives 0.
MIN_SINGULAR_VALUE = 0.1
LOG_FLOOR = 1e-12  # log(0) guard: a probability of exactly 0 becomes a logit of -27.6


def class_prior(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Label frequencies (the train prior of OOF rows)."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance of two distributions: half the L1 distance, in [0, 1]."""
    return float(0.5 * np.abs(np.asarray(p, np.float64) - np.asarray(q, np.float64)).sum())


def _check_prior(prior: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (n_classes,):
        raise ComptkError(f"{what}: expected {n_classes} class probabilities, got shape {prior.shape}")
    if not np.all(np.isfinite(prior)) or prior.min() < 0 or abs(prior.sum() - 1) > 1e-6:
        raise ComptkError(f"{what}: not a distribution (min {prior.min():.3g}, sum {prior.sum():.6g}); "
                          f"give non-negative class proportions that sum to 1")
    return prior


def _ratio(test_prior: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """q / pi per class; 0 where pi is 0 (a class without training rows keeps no probability)."""
    return np.divide(test_prior, train_prior, out=np.zeros_like(train_prior), where=train_prior > 0)


def _reweight(proba: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    out = proba * ratio
    sums = out.sum(axis=1, keepdims=True)
    # A row whose every class has weight 0 has nothing to go on: it keeps its probabilities.
    return np.where(sums > 0, out / np.where(sums > 0, sums, 1.0), proba)


def prior_corrected(test_proba: np.ndarray, train_prior: np.ndarray, test_prior: np.ndarray) -> np.ndarray:
    """Test probabilities for the class prior ``test_prior`` from ones made under ``train_prior``:
    each row times ``test_prior / train_prior``, renormalised (Bayes' rule under label shift).
    Exact for calibrated posteriors; float64, rows sum to 1."""
    proba = np.asarray(test_proba, dtype=np.float64)
    if proba.ndim != 2:
        raise ComptkError(f"test probabilities: expected rows x classes, got shape {proba.shape}")
    n_classes = proba.shape[1]
    pi = _check_prior(train_prior, n_classes, "train prior")
    q = _check_prior(test_prior, n_classes, "test prior")
    lost = np.flatnonzero((pi == 0) & (q > 0))
    if lost.size:
        raise ComptkError(f"test prior: class {lost[0]} has probability {q[lost[0]]:.3g} but no training rows "
                          f"(train prior 0); its test probability cannot be derived")
    return _reweight(proba, _ratio(q, pi))


@dataclass(frozen=True)
class EmResult:
    prior: np.ndarray  # the estimated test prior
    n_iter: int
    converged: bool


def em_prior(test_proba: np.ndarray, train_prior: np.ndarray, *, tol: float = EM_TOL,
             max_iter: int = EM_MAX_ITER) -> EmResult:
    """The test prior by EM (Saerens et al. 2002): from ``q = train_prior``, reweight each row's
    posterior by ``q / train_prior``, renormalise, set ``q`` to the mean reweighted posterior; stop
    when no class moves by more than ``tol`` or after ``max_iter`` rounds. ``test_proba`` must be
    calibrated posteriors under ``train_prior`` (see ``calibrate``)."""
    proba = np.asarray(test_proba, dtype=np.float64)
    pi = _check_prior(train_prior, proba.shape[1], "train prior")
    q = pi.copy()
    for n_iter in range(1, max_iter + 1):
        new = _reweight(proba, _ratio(q, pi)).mean(axis=0)
        moved = float(np.abs(new - q).max())
        q = new
        if moved < tol:
            return EmResult(q, n_iter, True)
    return EmResult(q, max_iter, False)


def bbse_prior(oof_proba: np.ndarray, y: np.ndarray, test_proba: np.ndarray) -> np.ndarray | None:
    """The test prior by BBSE (Lipton et al. 2018) from hard predictions: ``w = C^-1 mu``, with
    ``C[i, j]`` the OOF frequency of (predicted i, true j) and ``mu[i]`` the test frequency of
    predicted i; ``q = w * train_prior`` clipped at 0 and renormalised. Classes without OOF rows get 0.
    None when ``C`` is singular (a class never predicted on OOF rows): the estimate is not identified."""
    n_classes = oof_proba.shape[1]
    y = np.asarray(y, dtype=np.int64)
    present = np.flatnonzero(np.bincount(y, minlength=n_classes) > 0)
    joint = np.zeros((n_classes, n_classes))
    np.add.at(joint, (np.asarray(oof_proba).argmax(axis=1), y), 1.0)
    joint = joint[np.ix_(present, present)] / max(len(y), 1)
    if np.linalg.matrix_rank(joint) < len(present):
        return None
    mu = np.bincount(np.asarray(test_proba).argmax(axis=1), minlength=n_classes)[present] / max(len(test_proba), 1)
    q = np.zeros(n_classes)
    q[present] = np.clip(np.linalg.solve(joint, mu) * class_prior(y, n_classes)[present], 0.0, None)
    return q / q.sum() if q.sum() > 0 else None


def soft_confusion(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """M[i, j]: mean probability of class i on the rows of class j (columns sum to 1; a class without
    rows gets a zero column)."""
    proba = np.asarray(proba, dtype=np.float64)
    n_classes = proba.shape[1]
    onehot = np.zeros((len(y), n_classes))
    onehot[np.arange(len(y)), np.asarray(y, np.int64)] = 1.0
    counts = onehot.sum(axis=0)
    return (proba.T @ onehot) / np.where(counts > 0, counts, 1.0)


# ---------------------------------------------------------------- calibration on OOF rows

def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: rows binned by their top probability (equal-width bins), the row-weighted mean
    of |accuracy - mean confidence| over bins (Guo et al. 2017)."""
    proba = np.asarray(proba, dtype=np.float64)
    if not len(proba):
        return float("nan")
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    n = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, confidence, n_bins))
    return float(gap.sum() / n.sum())


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(log_softmax(logits, axis=1)[np.arange(len(y)), y]))


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the OOF log loss of ``softmax(log(proba) / T)`` (Guo et al. 2017).

    Written here on purpose: scikit-learn's CalibratedClassifierCV calibrates each class one-vs-rest
    around an estimator it refits, while comptk has only saved probabilities; netcal or a torch loop
    would be a dependency for one scalar. One scalar keeps every row's argmax (the OOF score does not
    change) and cannot overfit a few thousand rows. The log loss is convex in 1/T, so a bounded Brent
    search (scipy's minimize_scalar) on log T in [1/20, 20] finds the optimum.
    """
    logits, y = np.log(np.maximum(np.asarray(proba, dtype=np.float64), LOG_FLOOR)), np.asarray(y, np.int64)
    found = minimize_scalar(lambda log_t: _log_loss(logits / np.exp(log_t), y), bounds=(-np.log(20), np.log(20)),
                            method="bounded", options={"xatol": 1e-5})
    return float(np.exp(found.x))


def fit_temperature_and_bias(proba: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Bias-corrected temperature scaling (Alexandari et al. 2020): T and per-class biases b minimising
    the OOF log loss of ``softmax(log(proba) / T + b)``. At the optimum the mean calibrated OOF posterior
    equals the label frequencies (the log loss's gradient in b is their difference), which is what EM
    assumes. Convex in (1/T, b); L-BFGS-B with the exact gradient."""
    logits, y = np.log(np.maximum(np.asarray(proba, dtype=np.float64), LOG_FLOOR)), np.asarray(y, np.int64)
    n, n_classes = logits.shape
    onehot = np.zeros_like(logits)
    onehot[np.arange(n), y] = 1.0

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        beta, bias = theta[0], theta[1:]
        scores = beta * logits + bias
        log_p = log_softmax(scores, axis=1)
        diff = (np.exp(log_p) - onehot) / n
        return float(-log_p[np.arange(n), y].mean()), np.concatenate([[np.sum(diff * logits)], diff.sum(axis=0)])

    start = np.concatenate([[1.0 / fit_temperature(proba, y)], np.zeros(n_classes)])
    bounds = [(1 / 20, 20)] + [(-30.0, 30.0)] * n_classes
    found = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", bounds=bounds,
                     options={"maxiter": 500, "gtol": 1e-9})
    bias = found.x[1:] - found.x[1:].mean()  # only differences between classes matter
    return float(1.0 / found.x[0]), bias


@dataclass(frozen=True)
class Calibration:
    """A fitted map of probabilities: ``softmax(log(p) / temperature + bias)``; the identity by default."""

    temperature: float = 1.0
    bias: np.ndarray | None = None
    method: str = "none"
    record: dict[str, Any] = field(default_factory=dict)  # the checks before and after, for the sidecar

    def apply(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=np.float64)
        if self.method == "none":
            return proba
        scores = np.log(np.maximum(proba, LOG_FLOOR)) / self.temperature
        return softmax(scores + (0.0 if self.bias is None else self.bias), axis=1)


def calibration_checks(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ECE, log loss and the TV distance between the mean posterior and the label frequencies."""
    proba = np.asarray(proba, dtype=np.float64)
    return {
        "ece": expected_calibration_error(proba, y),
        "log_loss": _log_loss(np.log(np.maximum(proba, LOG_FLOOR)), np.asarray(y, np.int64)),
        "mean_posterior_tv": tv_distance(proba.mean(axis=0), class_prior(y, proba.shape[1])),
    }


def calibrate(oof_proba: np.ndarray, y: np.ndarray, mode: str = "auto") -> Calibration:
    """Check calibration on OOF rows and fit what EM needs (the comment at ECE_LIMIT says when).
    ``mode``: auto, none, temperature or temperature+bias (fit that regardless of the checks)."""
    if mode not in CALIBRATIONS:
        raise ComptkError(f"calibration '{mode}': choose one of {', '.join(CALIBRATIONS)}")
    before = calibration_checks(oof_proba, y)
    method, temperature, bias = "none", 1.0, None
    if mode == "temperature" or (mode == "auto" and before["ece"] > ECE_LIMIT):
        method, temperature = "temperature", fit_temperature(oof_proba, y)
    if mode == "auto":
        gap = before["mean_posterior_tv"]
        if method == "temperature":
            gap = calibration_checks(Calibration(temperature, None, method).apply(oof_proba), y)["mean_posterior_tv"]
        if gap > PRIOR_GAP_LIMIT:
            method = "temperature+bias"
    if mode == "temperature+bias" or method == "temperature+bias":
        method = "temperature+bias"
        temperature, bias = fit_temperature_and_bias(oof_proba, y)
    fitted = Calibration(temperature, bias, method)
    record: dict[str, Any] = {"method": method, "before": before}
    if method != "none":
        record["after"] = calibration_checks(fitted.apply(oof_proba), y)
        record["temperature"] = temperature
        if bias is not None:
            record["class_bias"] = [float(b) for b in bias]
    record["note"] = (f"checked on OOF rows: ECE > {ECE_LIMIT} fits a temperature; a mean posterior off the label "
                      f"frequencies by TV > {PRIOR_GAP_LIMIT} also fits per-class biases; 'after' is in-sample")
    return Calibration(temperature, bias, method, record)


# ---------------------------------------------------------------- the one entry point

@dataclass(frozen=True)
class LabelShift:
    record: dict[str, Any]  # the sidecar's "label_shift" value
    test: np.ndarray  # the test probabilities to submit: corrected when asked, else the input as given
    corrected: bool
    clear: bool  # the estimated test prior differs clearly from train's (and the estimate is reliable)
    message: str  # one line for the run / blend summary (summary_line says when it is shown)


def _shift_stats(train_prior: np.ndarray, test_prior: np.ndarray, n_test: int) -> dict[str, Any]:
    n_classes = len(train_prior)
    counted = np.maximum(train_prior, test_prior) >= 0.5 / n_classes
    up = np.divide(test_prior, train_prior, out=np.full(n_classes, np.inf), where=train_prior > 0)
    down = np.divide(train_prior, test_prior, out=np.full(n_classes, np.inf), where=test_prior > 0)
    ratio = np.minimum(np.where(counted, np.maximum(up, down), 0.0), 1e6)  # a prior EM drove to ~0: finite in JSON
    worst = int(ratio.argmax())
    # The TV that n_test labels drawn from the train prior show by chance (the null of no shift): the
    # mean |empirical - true| proportion of n draws is ~ sqrt(2 p (1 - p) / (pi n)) per class.
    noise = float(0.5 * np.sqrt(2 * train_prior * (1 - train_prior) / (np.pi * max(n_test, 1))).sum())
    return {"tv_distance": tv_distance(train_prior, test_prior), "max_ratio": float(ratio[worst]),
            "max_ratio_class": worst, "tv_sampling_noise": noise}


def _distribution(prior: np.ndarray | None, classes: tuple[str, ...]) -> dict[str, float] | None:
    return None if prior is None else {c: float(p) for c, p in zip(classes, prior)}


def assess_label_shift(
    oof_proba: np.ndarray, y: np.ndarray, test_proba: np.ndarray, classes: list[str] | tuple[str, ...], *,
    correction: str = "none", calibration: str = "auto", corrected_path: str | Path | None = None,
) -> LabelShift:
    """Estimate the test prior (EM on OOF-calibrated test probabilities; BBSE as a cross-check),
    say whether it differs clearly from the train prior (the OOF rows' label frequencies) and, with
    ``correction="em"``, return the calibrated test probabilities corrected to the estimated prior.

    ``oof_proba``/``y``: the OOF rows that have predictions (a partial run's trained folds) and their
    labels, in ``classes`` order; ``test_proba``: the test probabilities (a fold mean or a blend).
    ``corrected_path`` is where the caller writes the corrected probabilities (recorded only).
    Caveat: the calibration is fitted on single-model OOF predictions and applied to fold-averaged
    test predictions, which are a little less confident.
    """
    if correction not in CORRECTIONS:
        raise ComptkError(f"label shift correction '{correction}': choose one of {', '.join(CORRECTIONS)}")
    classes = tuple(classes)
    oof = np.asarray(oof_proba, dtype=np.float64)
    test = np.asarray(test_proba, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if oof.ndim != 2 or test.ndim != 2 or oof.shape[1] != len(classes) or test.shape[1] != len(classes):
        raise ComptkError(f"label shift: OOF {oof.shape} and test {test.shape} probabilities need "
                          f"{len(classes)} class columns")
    train_prior = class_prior(y, len(classes))
    fitted = calibrate(oof, y, calibration)
    calibrated = fitted.apply(test)
    em = em_prior(calibrated, train_prior)
    bbse = bbse_prior(oof, y, test)  # the model's own hard predictions: independent of the calibration
    stats = _shift_stats(train_prior, em.prior, len(test))
    identifiability = _identifiability(fitted.apply(oof), y, classes)
    problems = _unreliable(em, identifiability)
    clear = bool(not problems and (stats["tv_distance"] > TV_CLEAR or stats["max_ratio"] > RATIO_CLEAR)
                 and stats["tv_distance"] > NOISE_FACTOR * stats["tv_sampling_noise"])
    corrected = correction == "em" and not problems
    out = prior_corrected(calibrated, train_prior, em.prior) if corrected else test_proba
    worst = stats["max_ratio_class"]
    record = {
        "estimator": "em",
        "correction": correction,  # as asked
        "corrected": corrected,  # as done: never on an unreliable estimate
        "clear": clear,
        "reliable": not problems,
        "problems": problems,
        "n_oof_rows": len(y),
        "n_test": len(test),
        "train_prior": _distribution(train_prior, classes),
        "test_prior": _distribution(em.prior, classes),
        "bbse_prior": _distribution(bbse, classes),
        "tv_distance": stats["tv_distance"],
        "max_ratio": stats["max_ratio"],
        "max_ratio_class": classes[worst],
        "tv_sampling_noise": stats["tv_sampling_noise"],
        "bbse_tv_to_em": None if bbse is None else tv_distance(bbse, em.prior),
        "em": {"n_iter": em.n_iter, "converged": em.converged, "tol": EM_TOL},
        "identifiability": identifiability,
        "calibration": fitted.record,
        "corrected_preds": str(corrected_path) if corrected and corrected_path else None,
        "criterion": f"clear when (TV > {TV_CLEAR} or a class's prior changes more than {RATIO_CLEAR:g}x, classes "
                     f"with at least 1/(2C) in either prior) and TV > {NOISE_FACTOR:g}x the TV that n_test labels "
                     f"drawn from the train prior show by chance; train prior = the OOF rows' label frequencies",
    }
    change = (f"TV {stats['tv_distance']:.3f}; '{classes[worst]}' {train_prior[worst]:.3f} -> {em.prior[worst]:.3f}"
              + ("" if bbse is None else f"; BBSE within TV {record['bbse_tv_to_em']:.3f}"))
    if problems:
        message = f"label shift: no reliable estimate ({'; '.join(problems)})"
        if correction != "none":
            message += "; test probabilities NOT corrected"
    elif clear:
        message = f"label shift: the estimated test prior differs clearly from train's ({change})"
    else:
        message = f"label shift: none clear ({change})"
    if corrected:
        message += f"; test probabilities corrected (EM, calibration: {fitted.method})"
    elif clear:
        message += "; correct them with --label-shift em (label_shift='em')"
    record["summary"] = message
    return LabelShift(record, out, corrected, clear, message)


def _identifiability(calibrated_oof: np.ndarray, y: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """How well the calibrated OOF probabilities pin down a test prior (see MIN_SINGULAR_VALUE)."""
    present = np.flatnonzero(np.bincount(y, minlength=len(classes)) > 0)  # a class without rows stays at 0
    m = soft_confusion(calibrated_oof, y)[np.ix_(present, present)]
    recall = np.diag(m)
    worst = int(recall.argmin())
    return {"min_singular_value": float(np.linalg.svd(m, compute_uv=False).min()),
            "least_recognised_class": classes[present[worst]], "its_mean_probability_on_its_rows": float(recall[worst])}


def _unreliable(em: EmResult, identifiability: dict[str, Any]) -> list[str]:
    """Why the EM estimate cannot be trusted, if it cannot."""
    problems = []
    if not em.converged:
        problems.append(f"EM did not converge in {em.n_iter} iterations")
    if identifiability["min_singular_value"] < MIN_SINGULAR_VALUE:
        problems.append(
            f"the model cannot tell some classes apart on OOF rows (smallest singular value of the soft confusion "
            f"matrix {identifiability['min_singular_value']:.3f} < {MIN_SINGULAR_VALUE}; e.g. "
            f"'{identifiability['least_recognised_class']}' gets mean probability "
            f"{identifiability['its_mean_probability_on_its_rows']:.2f} on its own rows), so their test shares "
            f"are not identified")
    return problems


def summary_line(record: dict[str, Any] | None) -> str | None:
    """The sidecar record's one line when a run or blend summary should show it: the shift is clear, or
    a correction was asked for (done or refused); None otherwise (it stays in the sidecar and log)."""
    if not record or not (record.get("clear") or record.get("correction", "none") != "none"):
        return None
    return record["summary"]


def reapply_correction(test_proba: np.ndarray, record: dict[str, Any] | None,
                       classes: tuple[str, ...]) -> tuple[np.ndarray, str | None]:
    """Predicting new images with a run that corrected its submission (``record``: the run's
    ``label_shift``): the run's OOF calibration and train prior, with the test prior re-estimated by EM
    on ``test_proba`` (the images now predicted, e.g. a code competition's hidden test set). On the
    run's own test images this gives exactly the run's corrected probabilities. Returns them and a
    line saying what was done; ``test_proba`` unchanged and None when the run did not correct."""
    if not record or not record.get("corrected"):
        return test_proba, None
    train = record.get("train_prior") or {}
    if list(train) != list(classes):
        raise ComptkError("the run's label_shift record names other classes than its model; cannot re-apply "
                          "its correction")
    train_prior = np.array([train[c] for c in classes], dtype=np.float64)
    cal = record.get("calibration") or {}
    bias = cal.get("class_bias")
    fitted = Calibration(float(cal.get("temperature", 1.0)), None if bias is None else np.asarray(bias, np.float64),
                         str(cal.get("method", "none")))
    calibrated = fitted.apply(test_proba)
    em = em_prior(calibrated, train_prior)
    if not em.converged:
        return test_proba, (f"label shift: EM did not converge on these {len(test_proba)} images; probabilities "
                            f"NOT corrected (the run's submission was)")
    corrected = prior_corrected(calibrated, train_prior, em.prior).astype(np.float32)
    return corrected, (f"label shift: corrected as the run's submission was (test prior re-estimated by EM on "
                       f"these {len(test_proba)} images, TV {tv_distance(train_prior, em.prior):.3f} from train's)")


def save_corrected(path: str | Path, shift: LabelShift) -> None:
    """Write the corrected test probabilities (float32) to ``path``; without a correction remove a
    file left there by an earlier blend of the same name (--force), so none is ever stale."""
    path = Path(path)
    if shift.corrected:
        artifacts.save_npy(path, np.asarray(shift.test, dtype=np.float32))
    elif path.is_file():
        path.unlink()
