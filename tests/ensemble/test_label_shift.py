"""Label shift: EM and BBSE recover known test priors from exact posteriors, the correction is Bayes'
rule, calibration is checked and fixed on OOF rows, and train / ensemble write corrected predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tests.conftest import make_tiny

from comptk import ComptkError, artifacts, run_cv
from comptk.cli import main
from comptk.competition import load_competition
from comptk.data.folds import folds_digest
from comptk.data.layouts import read_data
from comptk.ensemble import blend
from comptk.label_shift import (
    CORRECTIONS,
    assess_label_shift,
    bbse_prior,
    calibrate,
    class_prior,
    em_prior,
    expected_calibration_error,
    fit_temperature,
    prior_corrected,
    summary_line,
    tv_distance,
)

# ---------------------------------------------------------------- a model whose true posteriors are known

N_CLASSES = 4
MEANS = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
LONG_TAIL = np.array([0.6, 0.25, 0.1, 0.05])
BALANCED = np.full(N_CLASSES, 0.25)


def draw(rng, prior, n):
    y = rng.choice(N_CLASSES, n, p=prior)
    return MEANS[y] + rng.normal(size=(n, 2)), y


def posterior(x, prior):
    """Exact p(y|x) for unit-variance Gaussian classes under ``prior``: calibrated by construction."""
    log_joint = -0.5 * ((x[:, None, :] - MEANS[None]) ** 2).sum(-1) + np.log(prior)
    log_joint -= log_joint.max(axis=1, keepdims=True)
    p = np.exp(log_joint)
    return p / p.sum(axis=1, keepdims=True)


def sharpen(p, power):
    """Overconfident probabilities: logits times ``power`` (so temperature ``power`` undoes it)."""
    q = p ** power
    return q / q.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def shifted():
    """OOF rows from a long-tailed train prior, test rows from a balanced one; model under the train prior."""
    rng = np.random.default_rng(0)
    x_oof, y_oof = draw(rng, LONG_TAIL, 6000)
    x_test, y_test = draw(rng, BALANCED, 6000)
    return x_oof, y_oof, x_test, y_test


def test_em_recovers_the_test_prior_from_calibrated_posteriors(shifted):
    x_oof, _, x_test, y_test = shifted
    em = em_prior(posterior(x_test, LONG_TAIL), LONG_TAIL)
    assert em.converged and 1 < em.n_iter < 1000
    assert tv_distance(em.prior, class_prior(y_test, N_CLASSES)) < 0.03
    # no shift: EM on rows drawn from the train prior stays there
    assert tv_distance(em_prior(posterior(x_oof, LONG_TAIL), LONG_TAIL).prior, LONG_TAIL) < 0.03


def test_em_stops_at_max_iter_and_says_so(shifted):
    _, _, x_test, _ = shifted
    em = em_prior(posterior(x_test, LONG_TAIL), LONG_TAIL, max_iter=2)
    assert not em.converged and em.n_iter == 2 and np.isclose(em.prior.sum(), 1)


def test_bbse_recovers_the_test_prior_from_hard_predictions(shifted):
    x_oof, y_oof, x_test, y_test = shifted
    q = bbse_prior(posterior(x_oof, LONG_TAIL), y_oof, posterior(x_test, LONG_TAIL))
    assert q is not None and tv_distance(q, class_prior(y_test, N_CLASSES)) < 0.06
    never_predicted = np.tile([[0.7, 0.1, 0.1, 0.1]], (len(y_oof), 1))
    assert bbse_prior(never_predicted, y_oof, posterior(x_test, LONG_TAIL)) is None


def test_prior_correction_is_bayes_rule(shifted):
    _, _, x_test, y_test = shifted
    under_train = posterior(x_test, LONG_TAIL)
    assert np.allclose(prior_corrected(under_train, LONG_TAIL, BALANCED), posterior(x_test, BALANCED))
    assert np.allclose(prior_corrected(under_train, LONG_TAIL, LONG_TAIL), under_train)
    corrected = prior_corrected(under_train, LONG_TAIL, BALANCED)
    assert np.allclose(corrected.sum(axis=1), 1)
    assert (corrected.argmax(1) == y_test).mean() > (under_train.argmax(1) == y_test).mean() + 0.05


def test_prior_correction_rejects_what_it_cannot_do():
    p = np.full((3, 3), 1 / 3)
    with pytest.raises(ComptkError, match="no training rows"):
        prior_corrected(p, np.array([0.5, 0.5, 0.0]), np.full(3, 1 / 3))
    with pytest.raises(ComptkError, match="expected 3 class probabilities"):
        prior_corrected(p, np.full(4, 0.25), np.full(3, 1 / 3))
    with pytest.raises(ComptkError, match="not a distribution"):
        prior_corrected(p, np.array([0.5, 0.5, 0.5]), np.full(3, 1 / 3))
    # a class without training rows and without test prior: fine, it keeps no probability
    out = prior_corrected(p, np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.8, 0.0]))
    assert np.allclose(out, [[0.2, 0.8, 0.0]] * 3)


def test_temperature_undoes_overconfidence(shifted):
    x_oof, y_oof, _, _ = shifted
    calibrated = posterior(x_oof, LONG_TAIL)
    overconfident = sharpen(calibrated, 3.0)
    assert abs(fit_temperature(overconfident, y_oof) - 3.0) < 0.3
    assert abs(fit_temperature(calibrated, y_oof) - 1.0) < 0.1
    assert expected_calibration_error(overconfident, y_oof) > 0.05 > expected_calibration_error(calibrated, y_oof)
    fitted = calibrate(overconfident, y_oof)
    assert fitted.method == "temperature" and fitted.record["after"]["ece"] < 0.03
    assert np.array_equal(fitted.apply(overconfident).argmax(1), overconfident.argmax(1))  # argmax kept
    assert calibrate(calibrated, y_oof).method == "none"


def test_em_after_temperature_recovers_the_prior_of_an_overconfident_model(shifted):
    x_oof, y_oof, x_test, y_test = shifted
    oof, test = sharpen(posterior(x_oof, LONG_TAIL), 3.0), sharpen(posterior(x_test, LONG_TAIL), 3.0)
    raw = em_prior(test, LONG_TAIL).prior
    shift = assess_label_shift(oof, y_oof, test, list("abcd"))
    estimated = np.array(list(shift.record["test_prior"].values()))
    truth = class_prior(y_test, N_CLASSES)
    assert shift.record["calibration"]["method"] == "temperature"
    assert tv_distance(estimated, truth) < 0.04 < tv_distance(raw, truth)


def test_a_model_trained_toward_another_prior_gets_class_biases(shifted):
    """A balanced-sampler model's posteriors follow a uniform prior, not the label frequencies: a
    temperature alone leaves EM far off, per-class biases bring it back."""
    x_oof, y_oof, x_test, y_test = shifted
    oof, test = posterior(x_oof, BALANCED), posterior(x_test, BALANCED)
    truth = class_prior(y_test, N_CLASSES)
    only_t = assess_label_shift(oof, y_oof, test, list("abcd"), calibration="temperature")
    auto = assess_label_shift(oof, y_oof, test, list("abcd"))
    assert auto.record["calibration"]["method"] == "temperature+bias"
    assert auto.record["calibration"]["after"]["mean_posterior_tv"] < 0.005
    assert tv_distance(list(auto.record["test_prior"].values()), truth) < 0.04
    assert tv_distance(list(only_t.record["test_prior"].values()), truth) > 0.2


def test_assess_says_clear_only_for_a_real_shift_and_corrects_only_when_asked(shifted):
    x_oof, y_oof, x_test, y_test = shifted
    oof, test = posterior(x_oof, LONG_TAIL), posterior(x_test, LONG_TAIL)
    shift = assess_label_shift(oof, y_oof, test, list("abcd"))
    assert shift.clear and not shift.corrected and shift.test is test
    assert "differs clearly" in shift.message and "--label-shift em" in shift.message
    record = json.loads(json.dumps(shift.record))  # JSON-ready
    assert record["correction"] == "none" and record["tv_distance"] > 0.3 and record["max_ratio_class"] == "d"
    assert record["bbse_tv_to_em"] < 0.06 and record["em"]["converged"]

    corrected = assess_label_shift(oof, y_oof, test, list("abcd"), correction="em", corrected_path="p.npy")
    assert corrected.corrected and corrected.record["corrected_preds"] == "p.npy"
    assert np.allclose(corrected.test.sum(1), 1)
    assert (corrected.test.argmax(1) == y_test).mean() > (test.argmax(1) == y_test).mean() + 0.05

    rng = np.random.default_rng(1)
    x_same, _ = draw(rng, LONG_TAIL, 3000)
    same = assess_label_shift(oof, y_oof, posterior(x_same, LONG_TAIL), list("abcd"))
    assert not same.clear and same.record["tv_distance"] < 0.05 and "none clear" in same.message
    assert summary_line(same.record) is None and summary_line(shift.record) == shift.message
    few = assess_label_shift(oof, y_oof, test[:12], list("abcd"))  # 12 test rows show nothing for sure
    assert not few.clear and few.record["tv_distance"] < 3 * few.record["tv_sampling_noise"]
    with pytest.raises(ComptkError, match="choose one of none, em"):
        assess_label_shift(oof, y_oof, test, list("abcd"), correction="bbse")


def test_classes_the_model_cannot_tell_apart_get_no_estimate_and_no_correction(shifted):
    """A model that never tells classes c and d apart: their test shares are not identified (only their
    sum is), so nothing is corrected and the summary says why."""
    x_oof, y_oof, x_test, _ = shifted

    def merged(x):
        p = posterior(x, LONG_TAIL)
        p[:, 2:] = p[:, 2:].mean(axis=1, keepdims=True)
        return p

    test = merged(x_test)
    shift = assess_label_shift(merged(x_oof), y_oof, test, list("abcd"), correction="em")
    assert not shift.record["reliable"] and shift.record["identifiability"]["min_singular_value"] < 0.01
    assert not shift.corrected and not shift.clear and shift.test is test
    assert summary_line(shift.record) == shift.message  # shown: a correction was asked for and refused
    assert shift.record["corrected_preds"] is None
    assert "NOT corrected" in shift.message and "cannot tell some classes apart" in shift.message
    # the exact posteriors of the same rows are fine
    fine = assess_label_shift(posterior(x_oof, LONG_TAIL), y_oof, posterior(x_test, LONG_TAIL), list("abcd"))
    assert fine.record["reliable"] and fine.record["identifiability"]["min_singular_value"] > 0.15


def test_a_class_without_training_rows_stays_at_zero_and_does_not_block_the_estimate():
    rng = np.random.default_rng(3)

    def proba(labels):
        z = rng.normal(size=(len(labels), 4))
        z[np.arange(len(labels)), labels] += 3
        z[:, 3] -= 5  # class d: declared, never in the data
        return np.exp(z) / np.exp(z).sum(1, keepdims=True)

    y, y_test = rng.integers(0, 3, 900), rng.choice(3, 600, p=[0.7, 0.2, 0.1])
    shift = assess_label_shift(proba(y), y, proba(y_test), list("abcd"), correction="em")
    assert shift.corrected and shift.record["test_prior"]["d"] == 0 and shift.record["bbse_prior"]["d"] == 0
    assert tv_distance(list(shift.record["test_prior"].values()), [0.7, 0.2, 0.1, 0]) < 0.05


def test_the_cli_offers_the_library_corrections():
    for command in ("train", "ensemble"):
        option = next(p for p in main.commands[command].params if p.name == "label_shift")
        assert tuple(option.type.choices) == CORRECTIONS


# ---------------------------------------------------------------- end to end: train and ensemble

def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_train_label_shift_em_writes_corrected_preds_and_submission(tmp_path):
    root = make_tiny(tmp_path / "tiny")
    # 8 epochs at lr 0.01 tell the three colours apart (an estimate that is not identified is never applied)
    common = ["--workdir", root, "--folds", "2", "--epochs", "8", "--lr", "0.01", "--quiet", "--no-plots"]
    plain = invoke("train", root, "--name", "plain", *common)
    em = invoke("train", root, "--name", "em", "--label-shift", "em", *common)
    assert plain.exit_code == 0 and em.exit_code == 0, plain.output + em.output
    assert "test probabilities corrected" in em.output
    data = read_data(load_competition(str(root), root), root / "data")

    paths = artifacts.RunPaths(root, "em")
    meta = json.loads(paths.sidecar.read_text())
    shift = meta["label_shift"]
    assert shift["correction"] == "em" and shift["corrected"] and shift["reliable"]
    assert shift["corrected_preds"] == str(paths.preds_label_shift)
    assert list(shift["test_prior"]) == list(data.classes) and shift["n_test"] == len(data.test.ids)
    assert "test probabilities corrected" in paths.log.read_text()
    # preds/RUN.npy and the OOF stay the model's own (fold mean), the corrected copy feeds the submission
    folds = [np.load(paths.fold_test(k)) for k in range(2)]
    assert np.allclose(np.load(paths.preds), np.mean(folds, axis=0), atol=1e-6)
    corrected = np.load(paths.preds_label_shift)
    assert corrected.shape == np.load(paths.preds).shape and np.allclose(corrected.sum(1), 1, atol=1e-5)
    submitted = pd.read_csv(paths.submission, dtype=str)
    assert submitted["label"].tolist() == [data.classes[i] for i in corrected.argmax(1)]

    plain_paths = artifacts.RunPaths(root, "plain")
    plain_meta = json.loads(plain_paths.sidecar.read_text())
    assert plain_meta["label_shift"]["correction"] == "none" and plain_meta["label_shift"]["corrected_preds"] is None
    assert not plain_paths.preds_label_shift.exists()
    assert pd.read_csv(plain_paths.submission, dtype=str)["label"].tolist() == [
        data.classes[i] for i in np.load(plain_paths.preds).argmax(1)]
    # the same training either way: the option is post-processing, not a training setting
    assert np.array_equal(np.load(paths.oof), np.load(plain_paths.oof))
    assert meta["config"] == plain_meta["config"]
    with pytest.raises(ComptkError, match="label_shift 'x': choose one of none, em"):
        run_cv(str(root), {"n_folds": 2}, workdir=root, name="bad", label_shift="x")
    assert not artifacts.RunPaths(root, "bad").run_dir.exists()  # refused before anything is written


def test_ensemble_label_shift_em_corrects_the_blend_submission_only(tmp_path):
    root = make_tiny(tmp_path / "competitions" / "tiny", n_per_class=30)
    data = read_data(load_competition("tiny", tmp_path), root / "data")
    fold = np.arange(len(data.train.ids)) % 3
    folds_file = tmp_path / "folds" / "tiny.csv"
    artifacts.save_csv(folds_file, pd.DataFrame({"id": data.train.ids, "fold": fold}))
    rng = np.random.default_rng(0)
    y = data.train.labels
    test_y = rng.choice(3, len(data.test.ids), p=[0.1, 0.1, 0.8])  # a test set heavy in one class

    def member(name, strength):
        def proba(labels):
            z = rng.normal(size=(len(labels), 3))
            z[np.arange(len(labels)), labels] += strength
            return (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)

        paths = artifacts.RunPaths(tmp_path, name)
        artifacts.save_npy(paths.oof, proba(y))
        artifacts.save_npy(paths.preds, proba(test_y))
        artifacts.save_json(paths.sidecar, {
            "name": name, "competition": "tiny", "classes": list(data.classes),
            "train_ids_digest": artifacts.digest(data.train.ids), "test_ids_digest": artifacts.digest(data.test.ids),
            "folds_digest": folds_digest(data.train.ids, fold), "folds_file": str(folds_file), "metric": "accuracy",
            "data_dir": str(root / "data"), "n_folds": 3, "cv": {"oof": 0.5}, "config": {}})
        return paths.oof

    members = [member("a", 3.0), member("b", 2.5)]
    out = tmp_path / "submissions" / "blend.csv"
    result = invoke("ensemble", *members, "--out", out, "--workdir", tmp_path, "--method", "mean", "--no-compare",
                    "--label-shift", "em")
    assert result.exit_code == 0, result.output
    assert "label shift:" in result.output
    paths = artifacts.RunPaths(tmp_path, "blend")
    meta = json.loads(paths.sidecar.read_text())
    assert meta["label_shift"]["correction"] == "em" and meta["label_shift"]["clear"]
    assert meta["label_shift"]["test_prior"][data.classes[2]] > 0.6
    oofs = [np.load(m) for m in members]
    preds = [np.load(artifacts.RunPaths(tmp_path, n).preds) for n in ("a", "b")]
    assert np.allclose(np.load(paths.oof), np.mean(oofs, axis=0), atol=1e-6)  # OOF never corrected
    assert np.allclose(np.load(paths.preds), np.mean(preds, axis=0), atol=1e-6)
    corrected = np.load(paths.preds_label_shift)
    assert pd.read_csv(out, dtype=str)["label"].tolist() == [data.classes[i] for i in corrected.argmax(1)]
    report = (tmp_path / "submissions" / "blend.report.md").read_text()
    assert "## Label shift" in report and "differs clearly" in report

    # the same blend again without the correction (--force): no corrected file is left behind
    again = blend(members, out=out, workdir=tmp_path, method="mean", compare=False, force=True)
    assert again.sidecar["label_shift"]["correction"] == "none" and not paths.preds_label_shift.exists()
    with pytest.raises(ComptkError, match="label_shift 'x'"):
        blend(members, out=out, workdir=tmp_path, method="mean", compare=False, force=True, label_shift="x")


def test_a_runs_correction_is_reapplied_exactly_on_its_own_test_rows_and_re_estimated_on_new_ones():
    from comptk.label_shift import reapply_correction

    rng = np.random.default_rng(3)
    x, y = draw(rng, LONG_TAIL, 4000)
    oof = sharpen(posterior(x, LONG_TAIL), 2.0)  # overconfident: the record carries a calibration
    test = sharpen(posterior(draw(rng, BALANCED, 3000)[0], LONG_TAIL), 2.0).astype(np.float32)
    classes = tuple("abcd")
    shift = assess_label_shift(oof, y, test, classes, correction="em")
    assert shift.corrected
    again, note = reapply_correction(test, json.loads(json.dumps(shift.record)), classes)  # as read from JSON
    assert np.allclose(again, shift.test, atol=1e-6) and "corrected as the run's submission was" in note
    other = sharpen(posterior(draw(rng, LONG_TAIL, 3000)[0], LONG_TAIL), 2.0).astype(np.float32)
    fresh, _ = reapply_correction(other, shift.record, classes)  # a new test set: its own prior
    assert tv_distance(fresh.mean(0), LONG_TAIL) < tv_distance(fresh.mean(0), BALANCED)
    unchanged, none = reapply_correction(test, {**shift.record, "corrected": False}, classes)
    assert unchanged is test and none is None
