"""Speed of `comptk ensemble`'s fitting on synthetic members: 20 members x 60,000 OOF rows x 10 classes,
10,000 test rows, 5 saved folds (defaults).

    python benchmarks/ensemble_speed.py [--members 20] [--rows 60000] [--methods hill,weights,stack] [--class-bias]

Each method is timed as `comptk ensemble` runs it: the fit on all OOF rows plus one refit per fold
for the cross-validated score (the honest estimate). Member loading and validation (the
oof/RUN.npy + preds/RUN.npy + sidecar files written to a temporary folder) is timed too. Not
timed: reading the competition's tables (image paths) and writing the outputs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from comptk import artifacts
from comptk.ensemble import BlendOptions, Scorer, crossfit, load_members


def synthetic_members(rng: np.random.Generator, n_members: int, n_rows: int, n_classes: int) -> tuple:
    """Correlated members of 80-90% accuracy: a shared 'hard example' logit noise plus their own."""
    y = rng.integers(0, n_classes, n_rows)
    shared = rng.normal(size=(n_rows, n_classes)) * 1.5
    members = []
    for m in range(n_members):
        logits = shared + rng.normal(size=(n_rows, n_classes)) * 1.2
        logits[np.arange(n_rows), y] += 4.5 + 0.05 * m
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        members.append((p / p.sum(axis=1, keepdims=True)).astype(np.float32))
    return y, np.stack(members)


def write_members(folder: Path, oof: np.ndarray, preds: np.ndarray) -> list[Path]:
    paths = []
    for m in range(len(oof)):
        run = artifacts.RunPaths(folder, f"m{m:02d}")
        artifacts.save_npy(run.oof, oof[m])
        artifacts.save_npy(run.preds, preds[m])
        artifacts.save_json(run.sidecar, {
            "competition": "synthetic", "classes": [str(c) for c in range(oof.shape[2])], "train_ids_digest": "t",
            "test_ids_digest": "s", "folds_digest": "f", "folds_file": "-", "metric": "macro_f1", "data_dir": "-",
        })
        paths.append(run.oof)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--test-rows", type=int, default=10000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--metric", default="macro_f1")
    parser.add_argument("--methods", default="hill,weights,stack", help="comma-separated: hill,weights,mean,rank,stack")
    parser.add_argument("--class-bias", action="store_true", help="also fit per-class biases (nested in the CV)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    y, oof = synthetic_members(rng, args.members, args.rows, args.classes)
    _, preds = synthetic_members(rng, args.members, args.test_rows, args.classes)
    fold = rng.permutation(np.arange(args.rows) % args.folds)
    scorer = Scorer(args.metric, args.classes)
    print(f"{args.members} members x {args.rows} OOF rows x {args.classes} classes, {args.test_rows} test rows, "
          f"{args.folds} folds, metric {args.metric}; best member {args.metric} "
          f"{max(scorer.score_proba(y, p) for p in oof):.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_members(Path(tmp), oof, preds)
        started = time.perf_counter()
        members = load_members(paths)
        load_seconds = time.perf_counter() - started
    print(f"{'load + validate members':<24} {load_seconds:6.2f} s")

    options = BlendOptions(class_bias=args.class_bias)
    total = load_seconds
    for method in args.methods.split(","):
        started = time.perf_counter()
        result = crossfit(method, y, fold, members.oof, members.preds, scorer, options)
        seconds = time.perf_counter() - started
        total += seconds
        print(f"{method:<24} {seconds:6.2f} s   in-sample {result.in_sample:.4f}   cross-validated {result.cv:.4f}")
    print(f"{'total':<24} {total:6.2f} s")


if __name__ == "__main__":
    main()
