"""Compare training recipes quickly: train a few folds of a prepared competition with given settings and
score their test predictions against the answers (one fold's test accuracy tracks a recipe's, at 1/K the time).

    python benchmarks/recipe_probe.py --workdir bench/f12k --name base
    python benchmarks/recipe_probe.py --workdir bench/f12k --name wide8 --set model=small_resnet_wide --set epochs=8
    python benchmarks/recipe_probe.py --workdir bench/f12k --name shift --set augment=shift --folds 0,1

The competition must be prepared under WORKDIR first (`comptk prepare fashion --workdir bench/f12k
--train-n 12000`). Each call is a partial run (runs/NAME, `folds_subset`), so `comptk train` can finish it
later. Prints validation score (pooled over the folds trained), the mean single-fold test score, the test
score of the folds' average and the wall time. Time nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from comptk import artifacts, load_competition
from comptk.config import parse_assignment
from comptk.metrics import get_metric
from comptk.train.crossval import run_cv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--competition", default="fashion")
    parser.add_argument("--name", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--folds", default="0", help="fold indices to train, e.g. 0 or 0,1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = dict(parse_assignment(a) for a in args.set)
    folds = [int(f) for f in args.folds.split(",")]
    started = time.perf_counter()
    result = run_cv(args.competition, settings, workdir=args.workdir, name=args.name, folds_subset=folds,
                    progress=False, plots=False)
    wall = time.perf_counter() - started
    comp = load_competition(args.competition, args.workdir)
    data = args.workdir / "data" / args.competition
    answers = pd.read_csv(data / "answers.csv", dtype=str, keep_default_na=False)
    test_ids = pd.read_csv(data / "test.csv", dtype=str, keep_default_na=False)["id"]
    y = answers.set_index("id").loc[test_ids, "label"].map(list(comp.classes).index).to_numpy()
    metric = get_metric(comp.metric)
    paths = artifacts.RunPaths(args.workdir, args.name)
    tests = [np.load(paths.fold_test(k)) for k in folds]
    single = np.mean([metric.score_proba(y, p) for p in tests])
    print(f"{args.name} {settings}: valid {result.cv:.4f}, test {metric.name} one fold {single:.4f}, "
          f"average of {len(folds)} fold(s) {metric.score_proba(y, np.mean(tests, 0)):.4f}; {wall:.1f} s")


if __name__ == "__main__":
    main()
