"""Ensembles: methods on synthetic members with known answers, honest (out-of-fold) scores,
member validation, and one end-to-end CLI blend of two digits runs."""

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
from comptk.data.folds import folds_digest, labels_digest
from comptk.data.layouts import read_data
from comptk.ensemble import (
    BlendOptions,
    Scorer,
    apply_class_bias,
    blend,
    crossfit,
    fit_class_bias,
    fit_log_loss_weights,
    hill_climb,
)
from comptk.ensemble.methods import _candidate_confusions
from comptk.metrics import Metric, get_metric

# ---------------------------------------------------------------- synthetic members

def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def informative(rng, y, n_classes, strength=2.0):
    """A calibrated-ish member: true class logit raised by ``strength`` over N(0,1) noise."""
    z = rng.normal(size=(len(y), n_classes))
    z[np.arange(len(y)), y] += strength
    return softmax(z)


def noise(rng, n_rows, n_classes):
    return rng.dirichlet(np.ones(n_classes), size=n_rows).astype(np.float32)


def problem(seed=0, n_rows=1500, n_classes=4, n_folds=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_rows)
    fold = rng.permutation(np.arange(n_rows) % n_folds)
    return rng, y, fold


# ---------------------------------------------------------------- scoring

@pytest.mark.parametrize("name", ["accuracy", "macro_f1"])
def test_batched_scorer_equals_the_registered_metric(name):
    rng = np.random.default_rng(1)
    metric = get_metric(name)
    for n_classes in (2, 5):
        y = rng.integers(0, n_classes, 300)
        preds = rng.integers(0, n_classes - 1, (4, 300))  # the last class is never predicted
        scorer = Scorer(name, n_classes)
        batched = scorer.gains(scorer.confusions(y, preds))
        assert np.allclose(batched, [metric(y, p, n_classes) for p in preds], atol=1e-12)


def test_scorer_falls_back_to_any_metric_through_the_confusion_counts():
    balanced = Metric("balanced", lambda t, p, c: np.mean([np.mean(p[t == k] == k) for k in np.unique(t)]))
    rng = np.random.default_rng(2)
    y, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert np.isclose(Scorer(balanced, 3).score_labels(y, pred), balanced(y, pred, 3))


def test_hill_candidate_shortcut_equals_brute_force():
    rng = np.random.default_rng(3)
    for trial in range(10):
        P = rng.dirichlet(np.full(4, rng.uniform(0.1, 2)), size=(5, 200)).astype(np.float32)
        if trial % 2:  # many exact ties
            P = np.round(P, 1).astype(np.float32)
        y, scorer = rng.integers(0, 4, 200), Scorer("macro_f1", 4)
        running = np.zeros((200, 4), np.float32)
        for _ in range(5):
            running += P[rng.integers(5)]
            fast = _candidate_confusions(y, P, P.max(axis=2), running, scorer)
            assert (fast == scorer.confusions(y, (P + running).argmax(axis=2))).all()


# ---------------------------------------------------------------- methods: known answers

def test_pure_noise_member_gets_no_weight_from_weights_and_little_from_hill():
    """Log-loss weights give noise exactly 0. Greedy hill climbing on an argmax metric can still
    pick it once or twice in late rounds, when its 1/k share flips a few borderline OOF rows the
    lucky way (in-sample overfitting that the cross-validated estimate exposes): small, never early."""
    hill_noise = []
    for seed in range(5):
        rng, y, _ = problem(seed=seed)
        P = np.stack([informative(rng, y, 4), noise(rng, len(y), 4), informative(rng, y, 4, strength=1.5)])
        hill_weights, info = hill_climb(y, P, Scorer("accuracy", 4))
        assert np.isclose(hill_weights.sum(), 1) and info["picks"][0] == 0  # round 1 = the best single member
        assert 1 not in info["picks"][:4] and hill_weights[1] <= 0.2
        hill_noise.append(hill_weights[1])
        weights = fit_log_loss_weights(y, P)
        assert weights[1] < 1e-3 and weights[0] > weights[2] > 0.05 and np.isclose(weights.sum(), 1)
    assert np.mean(hill_noise) < 0.1


def test_identical_members_get_equal_or_merged_weight():
    rng, y, _ = problem(seed=4)
    a, b = informative(rng, y, 4), informative(rng, y, 4, strength=1.7)
    scorer = Scorer("accuracy", 4)
    single, _ = hill_climb(y, np.stack([a, b]), scorer)
    doubled, _ = hill_climb(y, np.stack([a, a, b]), scorer)
    assert np.isclose(doubled[0] + doubled[1], single[0]) and np.isclose(doubled[2], single[1])
    weights = fit_log_loss_weights(y, np.stack([a, a, b]))
    assert np.isclose(weights[0], weights[1], atol=1e-4)
    assert np.isclose(weights[0] + weights[1], fit_log_loss_weights(y, np.stack([a, b]))[0], atol=1e-3)


def test_hill_keeps_its_best_round_and_bagging_is_seeded():
    rng, y, _ = problem(seed=5)
    P = np.stack([informative(rng, y, 4, strength=s) for s in (1.0, 1.4, 1.8, 2.2)])
    scorer = Scorer("macro_f1", 4)
    weights, info = hill_climb(y, P, scorer, n_rounds=25)
    assert info["round_scores"][info["best_round"] - 1] == max(info["round_scores"])
    assert np.allclose(weights * info["best_round"], np.round(weights * info["best_round"]))
    blended = np.tensordot(weights, P, axes=1)
    assert np.isclose(scorer.score_proba(y, blended), max(info["round_scores"]))
    options = BlendOptions(n_bags=5, seed=7)
    fold = np.arange(len(y)) % 3
    one = crossfit("hill", y, fold, P, P[:, :10], scorer, options)
    two = crossfit("hill", y, fold, P, P[:, :10], scorer, options)
    assert np.array_equal(one.weights, two.weights) and np.isclose(one.weights.sum(), 1)


def test_mean_and_rank_give_probabilities():
    rng, y, fold = problem(seed=6, n_rows=300)
    P = np.stack([informative(rng, y, 4), informative(rng, y, 4, 1.0)])
    scorer = Scorer("accuracy", 4)
    for method in ("mean", "rank"):
        result = crossfit(method, y, fold, P, P[:, :50], scorer)
        assert np.allclose(result.oof.sum(1), 1) and (result.oof >= 0).all()
        assert np.allclose(result.test.sum(1), 1)
        assert result.cv == result.in_sample  # nothing fitted on labels
    assert np.allclose(crossfit("mean", y, fold, P, P, scorer).oof, P.mean(0), atol=1e-6)


# ---------------------------------------------------------------- honest scores

@pytest.mark.parametrize("method", ["hill", "weights", "stack"])
def test_held_out_fold_never_sees_its_own_labels(method):
    """Relabelling fold 0 changes nothing in fold 0's cross-validated predictions."""
    rng, y, fold = problem(seed=8, n_rows=600)
    P = np.stack([informative(rng, y, 4, s) for s in (1.0, 1.5, 2.0)])
    scorer = Scorer("macro_f1", 4)
    options = BlendOptions(class_bias=True)
    relabelled = y.copy()
    relabelled[fold == 0] = (relabelled[fold == 0] + 1) % 4
    before = crossfit(method, y, fold, P, P[:, :20], scorer, options)
    after = crossfit(method, relabelled, fold, P, P[:, :20], scorer, options)
    assert np.allclose(before.oof[fold == 0], after.oof[fold == 0])
    assert not np.allclose(before.oof[fold == 1], after.oof[fold == 1])


def test_stacking_is_not_rewarded_for_a_member_that_leaks_labels_into_one_fold():
    rng, y, fold = problem(seed=9, n_rows=1600, n_classes=3, n_folds=4)
    honest = informative(rng, y, 3, strength=1.2)
    leak = noise(rng, len(y), 3)
    leak[fold == 0] = np.eye(3, dtype=np.float32)[y[fold == 0]]  # perfect on fold 0 only
    scorer = Scorer("accuracy", 3)
    alone = scorer.score_proba(y, honest)
    result = crossfit("stack", y, fold, np.stack([honest, leak]), np.stack([honest, leak])[:, :10], scorer)
    assert result.in_sample > alone + 0.05  # scored in-sample, the leak looks like skill...
    assert result.cv < alone + 0.02  # ...scored out-of-fold it does not


def test_weight_cv_estimate_refits_on_the_other_folds():
    rng, y, fold = problem(seed=10)
    P = np.stack([informative(rng, y, 4, s) for s in (1.0, 2.0)])
    result = crossfit("weights", y, fold, P, P, Scorer("accuracy", 4))
    train = fold != 0
    expected = np.tensordot(fit_log_loss_weights(y[train], P[:, train]), P[:, fold == 0], axes=1)
    assert np.allclose(result.oof[fold == 0], expected, atol=1e-6)
    assert len(result.weights_per_fold) == 3


def test_class_bias_recovers_macro_f1_of_a_suppressed_class():
    rng = np.random.default_rng(11)
    y = rng.choice(4, size=2000, p=[0.4, 0.3, 0.2, 0.1])
    z = rng.normal(size=(2000, 4))
    z[np.arange(2000), y] += 2.0
    z[:, 3] -= 2.5  # the rare class is almost never predicted
    proba = softmax(z)
    scorer = Scorer("macro_f1", 4)
    bias = fit_class_bias(y, proba, scorer)
    assert bias[3] > 1
    assert scorer.score_proba(y, apply_class_bias(proba, bias)) > scorer.score_proba(y, proba) + 0.05
    fold = np.arange(2000) % 3
    P = np.stack([proba, softmax(np.log(proba) + rng.normal(0, 0.3, proba.shape))])
    result = crossfit("mean", y, fold, P, P[:, :5], scorer, BlendOptions(class_bias=True))
    assert result.no_bias is not None and result.cv > result.no_bias["cv"] + 0.03
    assert result.in_sample >= result.cv - 0.02 and np.allclose(result.test.sum(1), 1)


# ---------------------------------------------------------------- files: validation

N_FOLDS = 3


@pytest.fixture
def tiny_work(tmp_path):
    """A workdir with a tiny competition, its folds file and a member writer."""
    root = make_tiny(tmp_path / "competitions" / "tiny")
    comp = load_competition("tiny", tmp_path)
    data = read_data(comp, root / "data")
    fold = np.arange(len(data.train.ids)) % N_FOLDS
    folds_file = tmp_path / "folds" / "tiny.csv"
    artifacts.save_csv(folds_file, pd.DataFrame({"id": data.train.ids, "fold": fold}))
    rng = np.random.default_rng(0)

    def write(name, oof=None, preds=None, **meta):
        n_classes = len(data.classes)
        oof = informative(rng, data.train.labels, n_classes) if oof is None else oof
        preds = noise(rng, len(data.test.ids), n_classes) if preds is None else preds
        paths = artifacts.RunPaths(tmp_path, name)
        artifacts.save_npy(paths.oof, oof)
        artifacts.save_npy(paths.preds, preds)
        sidecar = {
            "name": name, "competition": "tiny", "classes": list(data.classes),
            "train_ids_digest": artifacts.digest(data.train.ids), "test_ids_digest": artifacts.digest(data.test.ids),
            "folds_digest": folds_digest(data.train.ids, fold), "folds_file": str(folds_file),
            "metric": "accuracy", "data_dir": str(root / "data"), "n_folds": N_FOLDS, "cv": {"oof": 0.5},
            "config": {}, **meta,
        }
        artifacts.save_json(paths.sidecar, sidecar)
        return paths.oof

    return tmp_path, data, write


def _nothing_written(workdir, name="blend"):
    paths = artifacts.RunPaths(workdir, name)
    return not any(p.exists() for p in (paths.oof, paths.preds, paths.sidecar, workdir / "submissions" / "blend.csv",
                                        workdir / "submissions" / "blend.report.md"))


def _blend(workdir, members, **kwargs):
    kwargs = {"method": "mean", "compare": False, **kwargs}
    return blend(members, out=workdir / "submissions" / "blend.csv", workdir=workdir, **kwargs)


def _invalid_member(case, data, write):
    a = write("a")
    n_train, n_classes = len(data.train.ids), len(data.classes)
    proba = informative(np.random.default_rng(5), data.train.labels, n_classes)
    if case == "competition":
        return [a, write("b", competition="other")], "competition 'other' differs"
    if case == "classes":
        return [a, write("b", classes=["cat", "dog", "wolf"])], "classes differ"
    if case == "train_ids":
        return [a, write("b", train_ids_digest="x")], "other train rows"
    if case == "folds":
        return [a, write("b", folds_digest="x")], "other folds"
    if case == "no_preds":
        b = write("b")
        artifacts.RunPaths(b.parent.parent, "b").preds.unlink()
        return [a, b], "no test predictions"
    if case == "nan":
        proba[3, 1] = np.nan
        return [a, write("b", oof=proba)], "NaN or infinite"
    if case == "inf_test":
        preds = noise(np.random.default_rng(1), len(data.test.ids), n_classes)
        preds[0, 0] = np.inf
        return [a, write("b", preds=preds)], "NaN or infinite"
    if case == "logits":
        return [a, write("b", oof=np.log(proba))], "looks like logits"
    if case == "unnormalised":
        return [a, write("b", oof=proba * 2)], "not probabilities"
    if case == "same_path":
        return [a, a], "given twice"
    if case == "same_arrays":
        return [a, write("b", oof=np.load(a), preds=np.load(artifacts.RunPaths(a.parent.parent, "a").preds))], \
            "identical OOF and test arrays"
    if case == "one_member":
        return [a], "at least 2 members"
    if case == "rows":
        return [a, write("b", oof=proba[: n_train - 1])], "OOF"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["competition", "classes", "train_ids", "folds", "no_preds", "nan", "inf_test",
                                  "logits", "unnormalised", "same_path", "same_arrays", "one_member", "rows"])
def test_invalid_members_are_one_line_errors_and_nothing_is_written(tiny_work, case):
    workdir, data, write = tiny_work
    members, expected = _invalid_member(case, data, write)
    with pytest.raises(ComptkError, match=expected) as caught:
        _blend(workdir, members)
    assert "\n" not in str(caught.value)
    assert _nothing_written(workdir)


def test_reordered_classes_are_realigned_by_name(tiny_work):
    workdir, data, write = tiny_work
    a, b = write("a"), write("b")
    reference = _blend(workdir, [a, b])
    order = [2, 0, 1]
    shuffled = write("b2", oof=np.load(b)[:, order], preds=np.load(artifacts.RunPaths(workdir, "b").preds)[:, order],
                     classes=[data.classes[i] for i in order])
    realigned = _blend(workdir, [a, shuffled], force=True)
    assert np.allclose(np.load(realigned.paths.oof), np.load(reference.paths.oof))


@pytest.mark.parametrize("options, expected", [
    ({"out": "submissions/blend.txt"}, "must be a .csv"),
    ({"method": "stack", "meta": "sklearn.nothing.Here"}, "cannot import"),
    ({"method": "stack", "meta_params": {"no_such": 1}}, "does not accept"),
    ({"method": "stack", "meta_params": {"C": "x"}}, r"--meta-params \{'C': 'x'\}: The 'C' parameter of "
                                                   r"LogisticRegression must be a float"),
    ({"method": "hill", "n_rounds": 0}, "--rounds must be at least 1"),
    ({"method": "blendy"}, "unknown ensemble method 'blendy'"),
    ({"out": "submissions/a.csv"}, "would overwrite its member"),
])
def test_bad_options_fail_before_anything_is_written(tiny_work, options, expected):
    workdir, _, write = tiny_work
    members = [write("a"), write("b")]
    options = {"method": "mean", "compare": False, **options}
    if "out" in options:
        options["out"] = workdir / options["out"]
    else:
        options["out"] = workdir / "submissions" / "blend.csv"
    with pytest.raises(ComptkError, match=expected):
        blend(members, workdir=workdir, **options)
    assert _nothing_written(workdir)


def test_members_of_another_work_directory_are_refused(tiny_work, tmp_path):
    workdir, _, write = tiny_work
    members = [write("a"), write("b")]
    other = tmp_path / "other"
    with pytest.raises(ComptkError, match=f"a.npy: not a run of the work directory {other} .*pass --workdir {workdir}$"):
        blend(members, out=workdir / "submissions" / "x.csv", workdir=other, method="mean", compare=False)
    assert not other.exists()


def test_an_existing_blend_is_never_overwritten_without_force(tiny_work):
    workdir, _, write = tiny_work
    members = [write("a"), write("b")]
    first = _blend(workdir, members)
    stamp = first.paths.oof.stat().st_mtime_ns
    with pytest.raises(ComptkError, match="would overwrite .*--force"):
        _blend(workdir, members, method="weights")
    assert first.paths.oof.stat().st_mtime_ns == stamp
    again = _blend(workdir, members, method="weights", force=True)
    assert again.method == "weights" and again.sidecar["config"]["method"] == "weights"


def test_auto_picks_the_best_cross_validated_method(tiny_work):
    workdir, _, write = tiny_work
    result = _blend(workdir, [write("a"), write("b"), write("c")], method="auto")
    cvs = {r["method"]: r["cv"] for r in result.report["methods"]}
    assert set(cvs) == {"mean", "rank", "weights", "hill", "stack"}
    assert result.cv == max(cvs.values()) and result.method in cvs


# ---------------------------------------------------------------- the command users type: a glob

def _ensemble(workdir, members, out="blend", *extra):
    args = ["ensemble", *map(str, members), "--out", str(workdir / "submissions" / f"{out}.csv"),
            "--workdir", str(workdir), "--method", "mean", "--no-compare", *extra]
    return CliRunner().invoke(main, args)


def _glob(workdir):
    """What the shell makes of oof/*.npy."""
    return sorted((workdir / "oof").glob("*.npy"))


def _members(workdir, name="blend"):
    return [m["name"] for m in json.loads(artifacts.RunPaths(workdir, name).sidecar.read_text())["members"]]


def test_a_glob_leaves_out_partial_runs_and_earlier_blends_and_reruns(tiny_work):
    workdir, _, write = tiny_work
    write("a"), write("b"), write("p", folds_trained=[0])  # p: a partial run (fold 0 of 3)
    first = _ensemble(workdir, _glob(workdir))
    assert first.exit_code == 0, first.output
    assert "p.npy: run 'p' is partial (folds 0 of 3 trained" in first.output and _members(workdir) == ["a", "b"]
    paths = artifacts.RunPaths(workdir, "blend")
    oof, stamp = np.load(paths.oof), paths.sidecar.stat().st_mtime_ns

    again = _ensemble(workdir, _glob(workdir))  # the glob now matches oof/blend.npy too
    assert again.exit_code == 0, again.output
    assert "blend.npy: the blend this command writes is never its own member" in again.output
    assert "same members and options: rewriting it" in again.output
    assert _members(workdir) == ["a", "b"] and np.array_equal(np.load(paths.oof), oof)
    assert paths.sidecar.stat().st_mtime_ns != stamp

    second = _ensemble(workdir, _glob(workdir), "blend2")  # an earlier blend is not counted again
    assert second.exit_code == 0, second.output
    assert "blend.npy: a blend (of a, b), whose members would count twice; pass --allow-blends" in second.output
    assert _members(workdir, "blend2") == ["a", "b"]
    stacked = _ensemble(workdir, [paths.oof, workdir / "oof" / "a.npy"], "stacked", "--allow-blends")
    assert stacked.exit_code == 0 and _members(workdir, "stacked") == ["blend", "a"], stacked.output


@pytest.mark.parametrize("change", ["members", "options", "label_shift", "out"])
def test_a_blend_of_the_same_name_but_other_members_or_options_still_needs_force(tiny_work, change):
    workdir, _, write = tiny_work
    write("a"), write("b")
    assert _ensemble(workdir, _glob(workdir)).exit_code == 0
    paths = artifacts.RunPaths(workdir, "blend")
    stamp = paths.oof.stat().st_mtime_ns
    extra: list[str] = []
    if change == "members":
        write("c")
    elif change == "options":
        extra = ["--seed", "1"]
    elif change == "label_shift":
        extra = ["--label-shift", "em"]
    members = _glob(workdir)
    if change == "out":  # the same blend name written to another submission file
        result = CliRunner().invoke(main, ["ensemble", *map(str, members), "--out", str(workdir / "other" / "blend.csv"),
                                           "--workdir", str(workdir), "--method", "mean", "--no-compare"])
    else:
        result = _ensemble(workdir, members, "blend", *extra)
    assert result.exit_code == 2 and "would overwrite" in result.output and "--force" in result.output
    assert result.output.count("error:") == 1 and paths.oof.stat().st_mtime_ns == stamp
    forced = _ensemble(workdir, members, "blend", *extra, "--force") if change != "out" else None
    assert forced is None or (forced.exit_code == 0 and "rewriting" not in forced.output)


def test_fewer_than_two_members_left_is_one_clear_error(tiny_work):
    workdir, _, write = tiny_work
    write("a"), write("p", folds_trained=[1])
    result = _ensemble(workdir, _glob(workdir))
    assert result.exit_code == 2, result.output
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("error: an ensemble needs at least 2 members") and "got 1 after leaving out 1" in error
    assert "run 'p' is partial" in error and _nothing_written(workdir)
    sidecar = _ensemble(workdir, [workdir / "oof" / "a.json", workdir / "oof" / "p.npy"])
    assert sidecar.exit_code == 2 and "a.json: a member is a run's oof/RUN.npy file" in sidecar.output


# ---------------------------------------------------------------- end to end: digits

@pytest.fixture(scope="module")
def digits_runs(digits_workdir):
    common = dict(workdir=digits_workdir, progress=False)
    settings = dict(n_folds=2, epochs=1, img_size=16)
    a = run_cv("digits", settings, name="ens_a", **common)
    b = run_cv("digits", {**settings, "lr": 0.01}, name="ens_b", **common)
    return digits_workdir, a, b


def test_cli_blends_two_digits_runs(digits_runs):
    workdir, a, b = digits_runs
    out = workdir / "submissions" / "ens_blend.csv"
    args = ["ensemble", str(a.paths.oof), str(b.paths.oof), "--out", str(out), "--workdir", str(workdir),
            "--method", "hill", "--class-bias"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "cross-validated" in result.output and "ens_a" in result.output

    sample = pd.read_csv(workdir / "data/digits/sample_submission.csv", dtype=str)
    sub = pd.read_csv(out, dtype=str)
    assert list(sub.columns) == list(sample.columns) and sub["id"].tolist() == sample["id"].tolist()
    assert set(sub["label"]) <= {str(i) for i in range(10)}

    paths = artifacts.RunPaths(workdir, "ens_blend")
    meta = json.loads(paths.sidecar.read_text())
    member = json.loads(a.paths.sidecar.read_text())
    for key in ("competition", "classes", "train_ids_digest", "test_ids_digest", "folds_digest", "folds_file",
                "metric", "data_dir", "n_folds"):
        assert meta[key] == member[key], key
    assert meta["method"] == "hill" and set(meta["weights"]) <= {"ens_a", "ens_b"}  # zero weights dropped
    assert np.isclose(sum(meta["weights"].values()), 1) and len(meta["class_bias"]) == 10
    oof, preds = np.load(paths.oof), np.load(paths.preds)
    assert oof.shape == np.load(a.paths.oof).shape and preds.shape == np.load(a.paths.preds).shape
    assert np.allclose(oof.sum(1), 1, atol=1e-4) and np.allclose(preds.sum(1), 1, atol=1e-4)

    report = json.loads((workdir / "submissions" / "ens_blend.report.json").read_text())
    assert [m["name"] for m in report["members"]] == ["ens_a", "ens_b"]
    assert np.isclose(report["members"][0]["cv"], member["cv"]["oof"])
    assert {r["method"] for r in report["methods"]} == {"mean", "rank", "weights", "hill", "stack"}
    hill = next(r for r in report["methods"] if r["method"] == "hill")
    assert {"in_sample", "cv", "without_class_bias"} <= set(hill) and np.isclose(hill["cv"], meta["cv"]["oof"])
    markdown = (workdir / "submissions" / "ens_blend.report.md").read_text()
    assert "| ens_a |" in markdown and "cross-validated" in markdown

    scored = CliRunner().invoke(main, ["score", str(out), "--answers", str(workdir / "data/digits/answers.csv")])
    assert scored.exit_code == 0 and scored.output.startswith("macro_f1 ")

    again = CliRunner().invoke(main, args)  # the same command again rewrites its blend
    assert again.exit_code == 0 and "same members and options: rewriting it" in again.output, again.output
    assert np.array_equal(np.load(paths.oof), oof) and np.array_equal(np.load(paths.preds), preds)
    other = CliRunner().invoke(main, [*args[:-1]])  # without --class-bias: another blend of that name
    assert other.exit_code == 2 and "--force" in other.output and "\n" not in other.output.strip()
    # A blend is stacked on purpose only.
    stack = ["ensemble", str(paths.oof), str(a.paths.oof), "--out", str(workdir / "submissions" / "ens_blend2.csv"),
             "--workdir", str(workdir), "--method", "weights", "--no-compare"]
    refused = CliRunner().invoke(main, stack)
    assert refused.exit_code == 2 and "left out" in refused.output and "--allow-blends" in refused.output
    rerun = CliRunner().invoke(main, [*stack, "--allow-blends"])
    assert rerun.exit_code == 0, rerun.output


def test_a_runs_test_predictions_given_as_a_member_name_its_oof_file(tiny_work):
    workdir, _, write = tiny_work
    write("a"), write("b")
    result = _ensemble(workdir, [workdir / "preds" / "a.npy", workdir / "oof" / "b.npy"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "preds/a.npy: the test predictions of run 'a'; a member is given by its OOF file" in result.output
    assert str(workdir / "oof" / "a.npy") in result.output


def test_an_unfinished_run_in_the_glob_is_left_out_with_a_note(tiny_work):
    workdir, _, write = tiny_work
    write("a"), write("b")
    stray = workdir / "oof" / "killed.npy"  # a run killed before it wrote its record
    np.save(stray, np.zeros((3, 3), np.float32))
    result = _ensemble(workdir, _glob(workdir))
    assert result.exit_code == 0, result.output
    assert "killed.npy: no record killed.json beside it: not a finished run" in result.output
    assert _members(workdir) == ["a", "b"]


def test_every_member_is_checked_against_the_current_labels_not_only_the_first(tiny_work):
    workdir, _, write = tiny_work
    a = write("a")  # recorded before label digests existed: nothing to compare
    b = write("b", train_labels_digest="0" * 64)  # trained on labels that are not the current ones
    with pytest.raises(ComptkError, match=r"train labels changed since .*b\.npy was trained"):
        _blend(workdir, [a, b])
    assert _nothing_written(workdir)


def test_a_class_order_declared_since_is_not_a_change_of_labels(tiny_work):
    """Label digests are made in each run's own class order: a run trained before `classes` was declared in another
    order blends with one trained after it; a label changed since is still refused."""
    workdir, data, write = tiny_work
    a = write("a", train_labels_digest=labels_digest(data.train))  # classes cat, dog, fox
    toml = workdir / "competitions" / "tiny" / "competition.toml"
    toml.write_text(toml.read_text().replace('data_dir = "data"', 'data_dir = "data"\nclasses = ["fox", "dog", "cat"]'))
    now = read_data(load_competition(toml), data.data_dir)
    assert now.classes == ("fox", "dog", "cat") and labels_digest(now.train) != labels_digest(data.train)
    rng = np.random.default_rng(1)
    b = write("b", oof=informative(rng, now.train.labels, 3), classes=list(now.classes),
              train_labels_digest=labels_digest(now.train))
    _blend(workdir, [a, b])
    assert artifacts.RunPaths(workdir, "blend").sidecar.is_file()
    train_csv = data.data_dir / "train.csv"
    frame = pd.read_csv(train_csv, dtype=str)
    frame.loc[0, "label"] = "dog" if frame.loc[0, "label"] != "dog" else "cat"
    frame.to_csv(train_csv, index=False)
    with pytest.raises(ComptkError, match=r"train labels changed since .*a\.npy was trained"):
        blend([a, b], out=workdir / "submissions" / "blend2.csv", workdir=workdir, method="mean", compare=False)


def test_members_that_predicted_other_test_images_are_refused(tiny_work):
    workdir, _, write = tiny_work
    a = write("a", test_images_digest="1" * 64, config={"img_size": 12})
    b = write("b", test_images_digest="2" * 64, config={"img_size": 12})
    with pytest.raises(ComptkError, match="predicted other test images"):
        _blend(workdir, [a, b])
    c = write("c", test_images_digest="3" * 64, config={"img_size": 16})  # another size: not comparable
    assert _blend(workdir, [a, c]).name == "blend"


def test_label_shift_correction_of_a_rank_blend_is_refused(tiny_work):
    workdir, _, write = tiny_work
    with pytest.raises(ComptkError, match="rank blend writes rank averages"):
        _blend(workdir, [write("a"), write("b")], method="rank", label_shift="em")


class OwnMeta:
    """A meta-model from outside scikit-learn (as LightGBM's or a user's own): fit, predict_proba, get_params, but
    none of scikit-learn's private parameter checks."""

    def __init__(self, depth=3):
        self.depth = depth

    def get_params(self, deep=True):
        return {"depth": self.depth}

    def set_params(self, **params):
        self.__dict__.update(params)
        return self

    def fit(self, X, y):
        return self

    def predict_proba(self, X):
        return np.full((len(X), 2), 0.5)


def test_a_meta_model_from_outside_scikit_learn_is_built_without_its_private_checks(monkeypatch):
    """LightGBM's and XGBoost's classifiers subclass scikit-learn's BaseEstimator (which has _validate_params)
    without scikit-learn's parameter constraints."""
    from sklearn.base import BaseEstimator

    from comptk.ensemble.methods import make_meta

    class Sub(OwnMeta, BaseEstimator):
        pass

    monkeypatch.setitem(globals(), "Sub", Sub)
    assert make_meta("tests.ensemble.test_ensemble.Sub", {"depth": 5}, seed=0).depth == 5
