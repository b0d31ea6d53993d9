"""Evidence for issue #5: what the weighted sampler, crop-to-test augmentation and TTA each
bring on a harder Fashion-MNIST (`comptk prepare fashion-lt`: long-tailed training set,
largest/smallest class = 20, images upscaled to 56 px, test images random 0.6 crops).

    python benchmarks/techniques.py [--workdir bench/fashion-lt] [--train-n N] [--test-n N]
                                    [--epochs 10] [--folds 3] [--img-size 56] [--arms baseline,tta]

Each arm is one K-fold `run_cv` on the same folds; the table gives the held-out test macro F1
(`score_submission` against data/fashion-lt/answers.csv), the CV macro F1 (pooled OOF, validation
rows predicted as five 0.6 crops) and both differences from the baseline. An arm whose settings
comptk does not know (e.g. `sampler` before that feature is merged) is reported as failed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from comptk import ComptkError, prepare, run_cv, score_submission

# arm -> settings on top of the common ones; rename a setting here if its name changes.
BASELINE = {"augment": "basic", "tta": "none"}  # random sampler, plain flips + shift-scale-rotate, no TTA
ARMS: dict[str, dict] = {
    "baseline": BASELINE,
    "+weighted sampler": {**BASELINE, "sampler": "weighted"},
    "+crop-to-test": {**BASELINE, "augment": "crop-to-test"},
    "+TTA hflip": {**BASELINE, "tta": "hflip"},
    "all three": {**BASELINE, "sampler": "weighted", "augment": "crop-to-test", "tta": "hflip"},
}
ARM_KEYS = {"baseline": "baseline", "sampler": "+weighted sampler", "crop": "+crop-to-test", "tta": "+TTA hflip",
            "all": "all three"}


def run_arm(name: str, settings: dict, common: dict, workdir: Path, answers: Path, stamp: str) -> dict:
    run_name = f"tech-{stamp}-{next(k for k, v in ARM_KEYS.items() if v == name)}"
    started = time.perf_counter()
    try:
        result = run_cv("fashion-lt", {**common, **settings}, workdir=workdir, name=run_name, progress=False)
    except ComptkError as exc:
        return {"arm": name, "error": str(exc), "seconds": time.perf_counter() - started}
    test = score_submission(result.paths.submission, answers, "macro_f1")
    return {"arm": name, "run": run_name, "cv": result.cv, "test": test, "seconds": time.perf_counter() - started}


def table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["arm"] == "baseline" and "error" not in r), None)
    lines = ["| arm | test macro F1 | vs baseline | CV macro F1 (pooled OOF) | vs baseline | seconds |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arm']} | failed: {r['error']} | | | | {r['seconds']:.0f} |")
            continue
        d_test = f"{r['test'] - base['test']:+.4f}" if base else ""
        d_cv = f"{r['cv'] - base['cv']:+.4f}" if base else ""
        lines.append(f"| {r['arm']} | {r['test']:.4f} | {d_test} | {r['cv']:.4f} | {d_cv} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench/fashion-lt"))
    parser.add_argument("--train-n", type=int, help="stratified subset of the long-tailed training set (full: 3,406)")
    parser.add_argument("--test-n", type=int, default=5000, help="stratified subset of the 10,000 test crops")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--img-size", type=int, default=56)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--arms", default=",".join(ARM_KEYS), help=f"comma-separated, of: {', '.join(ARM_KEYS)}")
    args = parser.parse_args()
    arms = [ARM_KEYS[a.strip()] for a in args.arms.split(",")]
    data = args.workdir / "data" / "fashion-lt"
    if not data.exists():
        prepare("fashion-lt", args.workdir, train_n=args.train_n, test_n=args.test_n)
    common = {"model": "small_resnet", "img_size": args.img_size, "epochs": args.epochs, "n_folds": args.folds,
              "seed": args.seed}
    n_train = len((data / "train.csv").read_text().splitlines()) - 1
    n_test = len((data / "test.csv").read_text().splitlines()) - 1
    print(f"fashion-lt: {n_train} train images (long-tailed, 56 px), {n_test} test images (0.6 crops, 34 px)")
    print(f"common settings: {common}; competition defaults otherwise (competitions/fashion-lt); "
          f"validation rows predicted as five 0.6 crops")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for arm in arms:
        print(f"arm {arm}: {ARMS[arm]} ...", flush=True)
        rows.append(run_arm(arm, ARMS[arm], common, args.workdir, data / "answers.csv", stamp))
        done = rows[-1]
        print(f"  failed: {done['error']}" if "error" in done else
              f"  test {done['test']:.4f}, CV {done['cv']:.4f}, {done['seconds']:.0f} s", flush=True)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
