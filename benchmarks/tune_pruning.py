"""How long a tuning trial takes here, and how much pruning saves.

Runs the same study twice on Fashion-MNIST (a stratified training subset, one fold per trial,
the default search space): once with the default MedianPruner, once with pruning off, with
the same number of trials and the same sampler seed, then prints epochs run, wall time and
the best value of each.

    python benchmarks/tune_pruning.py [--workdir bench/tune] [--train-n 3000] [--trials 16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cli_run import comptk  # benchmarks/cli_run.py (scripts run from their folder)

from comptk.tune import load_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench/tune")
    parser.add_argument("--train-n", type=int, default=3000)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args, extra = parser.parse_known_args()
    workdir = Path(args.workdir)
    if not (workdir / "data" / "fashion").exists():
        comptk("prepare", "fashion", "--train-n", str(args.train_n), "--workdir", str(workdir))
    print(f"Fashion-MNIST, {args.train_n} training images, 1 of 5 folds per trial, {args.trials} trials, "
          f"default search space {' '.join(extra)}".rstrip())
    print(f"{'pruner':<8} {'trials':>6} {'pruned':>6} {'failed':>6} {'epochs run':>10} {'of':>5} "
          f"{'wall s':>7} {'s/trial':>7} {'s/epoch':>7} {'best':>7}")
    for pruner in ("median", "none"):
        study = f"bench-{pruner}-{time.strftime('%H%M%S')}"
        seconds = comptk("tune", "fashion", "--workdir", str(workdir), "--study", study, "--trials", str(args.trials),
                         "--pruner", pruner, "--seed", str(args.seed), *extra)
        trials = load_study(study, workdir=workdir).trials
        ran = sum(t.user_attrs.get("epochs_run", 0) for t in trials)
        planned = sum(t.user_attrs.get("epochs_planned", 0) for t in trials)
        states = [t.state.name for t in trials]
        best = max((t.value for t in trials if t.state.name == "COMPLETE"), default=float("nan"))
        print(f"{pruner:<8} {len(trials):>6} {states.count('PRUNED'):>6} {states.count('FAIL'):>6} {ran:>10} "
              f"{planned:>5} {seconds:>7.0f} {seconds / len(trials):>7.1f} {seconds / max(ran, 1):>7.2f} {best:>7.4f}")


if __name__ == "__main__":
    main()
