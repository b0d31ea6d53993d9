"""Evidence for issue #17 item 5: what correcting for label shift does to the test score on a contest
whose train set is long-tailed and whose test set is balanced (`comptk prepare fashion-lt`: classes of
1000 down to 50 training images, the balanced Fashion-MNIST test set as 0.6 crops, macro F1).

    python benchmarks/label_shift.py [--workdir bench/label-shift] [--train-n 3000] [--test-n 2000]
                                     [--folds 3] [--epochs 3] [--set sampler=weighted ...] [--run NAME]

One K-fold run (`run_cv(..., label_shift="em")`) is trained (or, with --run, a finished one re-read);
its uncorrected test probabilities (preds/RUN.npy) and the corrected ones are scored against
data/fashion-lt/answers.csv with comptk's scorer, so none vs EM is the same model. Also printed: the
test prior EM (and BBSE) estimate against the true one (TV distance), the EM correction applied even
where comptk's reliability check withholds it, and as a ceiling the correction with the true prior.
Run from the repository root (`PYTHONPATH=. python benchmarks/label_shift.py`) to use this checkout.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from comptk import artifacts, load_competition, prepare, run_cv
from comptk.config import parse_assignment
from comptk.data.layouts import read_data
from comptk.label_shift import assess_label_shift, calibrate, class_prior, prior_corrected, tv_distance
from comptk.metrics import get_metric
from comptk.submission import make_submission, score_frames


def scores(data, proba: np.ndarray, answers: pd.DataFrame) -> tuple[float, float]:
    """(macro F1, accuracy) of the submission these probabilities make, against the answers."""
    sub = make_submission(data, proba)
    return score_frames(sub, answers, "macro_f1"), score_frames(sub, answers, "accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench/label-shift"))
    parser.add_argument("--train-n", type=int, help="stratified subset of the long-tailed train set (full: 3,406)")
    parser.add_argument("--test-n", type=int, help="stratified subset of the 10,000 balanced test crops")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="another training setting (as `comptk train --set`), e.g. sampler=weighted")
    parser.add_argument("--run", help="a finished run under WORKDIR to re-assess instead of training one")
    args = parser.parse_args()

    folder = args.workdir / "data" / "fashion-lt"
    if not folder.exists():
        prepare("fashion-lt", args.workdir, train_n=args.train_n, test_n=args.test_n)
    comp = load_competition("fashion-lt", args.workdir)
    data = read_data(comp, folder)
    answers = pd.read_csv(folder / "answers.csv", dtype=str, keep_default_na=False)
    classes = list(data.classes)
    settings = {"n_folds": args.folds, "epochs": args.epochs, "seed": args.seed,
                **dict(parse_assignment(a) for a in args.set)}
    print(f"fashion-lt: {len(data.train.ids)} train images (long-tailed), {len(data.test.ids)} test images "
          f"(balanced, 0.6 crops); settings {settings}, competition defaults otherwise")

    if args.run:  # re-read a finished run: no training, the current label-shift code on its arrays
        paths = artifacts.RunPaths(args.workdir, args.run)
        print(f"run {args.run}: re-assessed from {paths.oof} (not retrained)")
    else:
        started = time.perf_counter()
        name = f"label-shift-{time.strftime('%Y%m%d-%H%M%S')}"
        run = run_cv("fashion-lt", settings, workdir=args.workdir, name=name, progress=False, plots=False,
                     label_shift="em")
        paths = run.paths
        print(f"run {name}: {time.perf_counter() - started:.0f} s")
    oof, preds, y = np.load(paths.oof), np.load(paths.preds), data.train.labels
    print(f"CV macro F1 {get_metric('macro_f1').score_proba(y, oof):.4f} (pooled OOF)")
    shift = assess_label_shift(oof, y, preds, classes, correction="em")
    record = shift.record
    print(shift.message)

    train_prior = class_prior(y, len(classes))
    true_prior = np.array([(answers["label"] == c).mean() for c in classes])
    em_prior = np.array([record["test_prior"][c] for c in classes])
    bbse = record["bbse_prior"]
    bbse_prior = None if bbse is None else np.array([bbse[c] for c in classes])
    calibrated = calibrate(oof, y).apply(preds)
    cal = record["calibration"]
    after = cal.get("after", cal["before"])
    temperature = f", T = {cal['temperature']:.3f}" if "temperature" in cal else ""
    print(f"calibration on OOF: {cal['method']}{temperature}; ECE {cal['before']['ece']:.4f} -> {after['ece']:.4f}, "
          f"mean-posterior TV {cal['before']['mean_posterior_tv']:.4f} -> {after['mean_posterior_tv']:.4f}; "
          f"EM {record['em']['n_iter']} iterations; soft-confusion smallest singular value "
          f"{record['identifiability']['min_singular_value']:.3f}")
    print()
    print("| test predictions | macro F1 | accuracy |")
    print("|---|---|---|")
    applied = "corrected" if shift.corrected else "left uncorrected: estimate not reliable"
    rows = (("none (preds/RUN.npy)", preds),
            (f"--label-shift em as comptk applies it ({applied})", shift.test),
            ("EM estimate applied regardless of the reliability check", prior_corrected(calibrated, train_prior,
                                                                                        em_prior)),
            ("the true test prior applied (ceiling of the correction)", prior_corrected(calibrated, train_prior,
                                                                                        true_prior)))
    for label, proba in rows:
        f1, acc = scores(data, proba, answers)
        print(f"| {label} | {f1:.4f} | {acc:.4f} |")
    print()
    print("| class | train prior | true test prior | EM estimate | BBSE estimate |")
    print("|---|---|---|---|---|")
    for i, c in enumerate(classes):
        b = "-" if bbse_prior is None else f"{bbse_prior[i]:.3f}"
        print(f"| {c} | {train_prior[i]:.3f} | {true_prior[i]:.3f} | {em_prior[i]:.3f} | {b} |")
    print()
    print(f"TV distance to the true test prior: train prior {tv_distance(train_prior, true_prior):.3f}, "
          f"EM {tv_distance(em_prior, true_prior):.3f}"
          + (", BBSE: not identified (a class never predicted on OOF rows)" if bbse_prior is None
             else f", BBSE {tv_distance(bbse_prior, true_prior):.3f}"))


if __name__ == "__main__":
    main()
