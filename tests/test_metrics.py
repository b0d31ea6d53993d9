import numpy as np
from sklearn.metrics import f1_score

from comptk.metrics import get_metric


def test_accuracy_and_macro_f1_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    proba = rng.random((200, 5))
    pred = proba.argmax(1)
    assert get_metric("accuracy").score_proba(y, proba) == np.mean(pred == y)
    assert np.isclose(get_metric("macro_f1").score_proba(y, proba), f1_score(y, pred, average="macro"))


def test_pooled_macro_f1_differs_from_mean_of_folds():
    # Fold A: only class 0, all right. Fold B: classes 0/1, half wrong.
    metric = get_metric("macro_f1")
    y_a, p_a = np.array([0, 0]), np.array([0, 0])
    y_b, p_b = np.array([1, 1, 1, 0]), np.array([1, 1, 0, 0])
    mean_of_folds = np.mean([metric(y_a, p_a, 2), metric(y_b, p_b, 2)])
    pooled = metric(np.r_[y_a, y_b], np.r_[p_a, p_b], 2)
    assert not np.isclose(pooled, mean_of_folds)


def test_a_run_reports_pooled_oof_as_cv_and_the_mean_of_folds_beside_it(tiny):
    """On a macro F1 competition the two differ, and the run's CV must be the pooled one."""
    from tests.conftest import assert_cv_is_pooled_oof, make_tiny

    from comptk import run_cv

    root = make_tiny(tiny.parent / "f1", metric="macro_f1", n_per_class=5)
    result = run_cv(root, {"n_folds": 5, "epochs": 1}, workdir=root, name="f1", progress=False, plots=False)
    labels = [["cat", "dog", "fox"].index(v) for v in __import__("pandas").read_csv(root / "data/train.csv")["label"]]
    assert_cv_is_pooled_oof(result, labels)
    assert not np.isclose(result.sidecar["cv"]["oof"], result.sidecar["cv"]["mean_of_folds"])  # they do differ here
