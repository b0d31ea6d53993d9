"""Benchmark of the Core recipe: Fashion-MNIST, 12,000-image stratified training subset,
all 10,000 test images, `comptk train fashion --folds 5` with the competition's defaults.

    python benchmarks/fashion_core.py [--workdir bench/fashion] [extra train options...]

Prints CV (pooled OOF and mean of folds), test accuracy via `comptk score`, and wall times.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path


def run(*args: str) -> tuple[str, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "comptk", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"comptk {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout + proc.stderr, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench/fashion")
    parser.add_argument("--train-n", type=int, default=12000)
    args, extra = parser.parse_known_args()
    workdir = Path(args.workdir)
    if not (workdir / "data" / "fashion").exists():
        _, seconds = run("prepare", "fashion", "--train-n", str(args.train_n), "--workdir", str(workdir))
        print(f"prepare: {seconds:.1f} s")
    name = f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    _, train_seconds = run("train", "fashion", "--folds", "5", "--workdir", str(workdir), "--name", name,
                           "--quiet", *extra)
    meta = json.loads((workdir / "oof" / f"{name}.json").read_text())
    out, _ = run("score", str(workdir / "submissions" / f"{name}.csv"),
                 "--answers", str(workdir / "data" / "fashion" / "answers.csv"))
    test_accuracy = float(re.search(r"accuracy ([0-9.]+)", out).group(1))
    cfg = meta["config"]
    print(f"run: {name}  ({meta['n_train']} train / {meta['n_test']} test images)")
    print(f"recipe: {cfg['model']} {cfg['img_size']}px, {cfg['epochs']} epochs, batch {cfg['batch_size']}, "
          f"{cfg['optimizer']} lr {cfg['lr']} {cfg['scheduler']}, augment {cfg['augment']}, tta {cfg['tta']}, "
          f"precision {cfg['precision']}")
    print(f"CV accuracy (pooled OOF): {meta['cv']['oof']:.4f}")
    print(f"CV accuracy (mean of folds): {meta['cv']['mean_of_folds']:.4f} +- {meta['cv']['std_of_folds']:.4f}")
    print(f"test accuracy (comptk score): {test_accuracy:.4f}")
    t = meta["timings"]
    print(f"wall time of `comptk train`: {train_seconds:.1f} s (decode {t['decode_seconds']:.1f} s, "
          f"train {t['train_seconds']:.1f} s, predict {t['predict_seconds']:.1f} s)")
    print(f"train images/s: {t['train_images_per_s']:.0f}; predict images/s (with TTA): {t['predict_images_per_s']:.0f}")


if __name__ == "__main__":
    main()
