"""Benchmark of `comptk inspect` on Fashion-MNIST with planted problems, and the duplicate
search's speed on all 70,000 Fashion-MNIST images.

    flock /tmp/bench.lock python benchmarks/inspect_planted.py [--workdir bench/inspect] [--epochs 6]

Planted (seeded) in a 12,000-image stratified training subset and a 2,000-image stratified
test subset (--train-n, --test-n):
  * 3% of the training labels flipped to another class (uniformly);
  * 50 exact duplicates: test rows whose pixels are a training image's (a new PNG file);
  * 50 near duplicates: test rows that are a training image re-lit (+20 brightness), with
    lower contrast (x0.85), re-encoded as JPEG (quality 90), or re-lit and re-encoded;
  * 60 out-of-domain training rows with random labels: 30 scikit-learn digits upscaled to
    28 px and 30 smooth random "photo-like" textures.
Then `comptk train fashion --folds 5 --epochs 4 --tta none` (small_resnet, otherwise the
competition's recipe) and `comptk inspect fashion --run RUN`; prints each detector's
precision and recall.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from cli_run import comptk  # benchmarks/cli_run.py (scripts run from their folder)
from PIL import Image
from sklearn.model_selection import train_test_split

N_EXACT, N_NEAR, N_DIGITS, N_TEXTURES, FLIP_RATE = 50, 50, 30, 30, 0.03


def _near(image: np.ndarray, variant: int) -> tuple[np.ndarray, str]:
    """A near copy of a grey uint8 image, and the format to save it in."""
    pixels = image.astype(np.float64)
    if variant in (0, 3):
        pixels = pixels + 20
    if variant == 1:
        pixels = pixels * 0.85 + 10
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    return pixels, "JPEG" if variant in (2, 3) else "PNG"


def _texture(rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture over the whole frame (no object on a black background)."""
    low = rng.integers(0, 256, (4, 4)).astype(np.uint8)
    big = np.asarray(Image.fromarray(low).resize((28, 28), Image.Resampling.BICUBIC)).astype(int)
    return np.clip(big + rng.integers(-25, 25, big.shape), 0, 255).astype(np.uint8)


def build(workdir: Path, train_n: int, test_n: int, seed: int) -> dict:
    """WORKDIR/data/fashion with the planted problems; returns what was planted."""
    from sklearn.datasets import load_digits

    from comptk.datasets.sources import read_fashion


    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test, classes = read_fashion()
    keep, _ = train_test_split(np.arange(len(x_train)), train_size=train_n, stratify=y_train, random_state=seed)
    keep = np.sort(keep)
    x_train, y_train = x_train[keep], y_train[keep].astype(np.int64)
    if test_n < len(x_test):
        keep, _ = train_test_split(np.arange(len(x_test)), train_size=test_n, stratify=y_test, random_state=seed)
        x_test, y_test = x_test[np.sort(keep)], y_test[np.sort(keep)]
    n = len(x_train)
    order = rng.permutation(n)
    flipped = np.sort(order[: round(FLIP_RATE * n)])
    exact_src = order[len(flipped): len(flipped) + N_EXACT]
    near_src = order[len(flipped) + N_EXACT: len(flipped) + N_EXACT + N_NEAR]
    given = y_train.copy()
    given[flipped] = (y_train[flipped] + rng.integers(1, len(classes), len(flipped))) % len(classes)

    digits = load_digits()
    picks = rng.choice(len(digits.images), N_DIGITS, replace=False)
    ood = [np.asarray(Image.fromarray(np.clip(digits.images[i] * 16, 0, 255).astype(np.uint8)).resize(
        (28, 28), Image.Resampling.BILINEAR)) for i in picks]
    ood += [_texture(rng) for _ in range(N_TEXTURES)]

    data = workdir / "data" / "fashion"
    for sub in ("train", "test"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    train_rows, test_rows, answers = [], [], []
    for i, (image, label) in enumerate(zip(x_train, given)):
        path = f"train/TRAIN_{i:05d}.png"
        Image.fromarray(image).save(data / path)
        train_rows.append((f"TRAIN_{i:05d}", path, classes[label]))
    ood_ids = []
    for j, image in enumerate(ood):
        path, id_ = f"train/OOD_{j:03d}.png", f"OOD_{j:03d}"
        Image.fromarray(image).save(data / path)
        train_rows.append((id_, path, classes[rng.integers(len(classes))]))
        ood_ids.append(id_)
    for i, (image, label) in enumerate(zip(x_test, y_test)):
        path = f"test/TEST_{i:05d}.png"
        Image.fromarray(image).save(data / path)
        test_rows.append((f"TEST_{i:05d}", path))
        answers.append(classes[label])
    planted_exact, planted_near = [], []
    for j, src in enumerate(exact_src):
        id_, path = f"DUP_{j:03d}", f"test/DUP_{j:03d}.png"
        Image.fromarray(x_train[src]).save(data / path)
        test_rows.append((id_, path))
        answers.append(classes[y_train[src]])
        planted_exact.append((f"TRAIN_{src:05d}", id_))
    for j, src in enumerate(near_src):
        pixels, fmt = _near(x_train[src], j % 4)
        id_ = f"NEAR_{j:03d}"
        path = f"test/{id_}.{'jpg' if fmt == 'JPEG' else 'png'}"
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        (data / path).write_bytes(buf.getvalue())
        test_rows.append((id_, path))
        answers.append(classes[y_train[src]])
        planted_near.append((f"TRAIN_{src:05d}", id_))
    pd.DataFrame(train_rows, columns=["id", "img_path", "label"]).to_csv(data / "train.csv", index=False)
    test = pd.DataFrame(test_rows, columns=["id", "img_path"])
    test.to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": test["id"], "label": classes[0]}).to_csv(data / "sample_submission.csv", index=False)
    pd.DataFrame({"id": test["id"], "label": answers}).to_csv(data / "answers.csv", index=False)
    planted = {"flipped": [f"TRAIN_{i:05d}" for i in flipped], "exact": planted_exact, "near": planted_near,
               "ood": ood_ids}
    (workdir / "planted.json").write_text(json.dumps(planted))
    return planted


def pr(found: set, truth: set) -> str:
    hit = len(found & truth)
    precision = hit / len(found) if found else float("nan")
    return f"precision {precision:.3f} ({hit}/{len(found)}), recall {hit / len(truth):.3f} ({hit}/{len(truth)})"


def report_planted(workdir: Path, planted: dict, run: str) -> None:
    folder = workdir / "inspect" / "fashion"
    pairs = pd.read_csv(folder / "duplicates.csv", keep_default_na=False)
    cross = pairs[(pairs["split_a"] == "train") & (pairs["split_b"] == "test")]
    as_set = lambda frame: {(a, b) for a, b in zip(frame["id_a"], frame["id_b"])}  # noqa: E731
    exact, near = as_set(cross[cross["kind"] == "exact"]), as_set(cross[cross["kind"] == "near"])
    planted_exact = {tuple(p) for p in planted["exact"]}
    planted_near = {tuple(p) for p in planted["near"]}
    planted_tests = {b for _, b in planted_exact | planted_near}
    print(f"exact duplicates (train/test): {pr(exact, planted_exact)}")
    print(f"near duplicates (train/test):  {pr(near, planted_near)}")
    involving = {p for p in near if p[1] in planted_tests}
    print(f"  near pairs involving a planted test row: {pr(involving, planted_near)}; the other "
          f"{len(near - involving)} near pairs are look-alikes already in Fashion-MNIST (see report.html)")
    print(f"  all pairs found: {pairs.groupby(['kind', 'split_a', 'split_b']).size().to_dict()}")
    issues = pd.read_csv(folder / "label_issues.csv", keep_default_na=False)
    flagged = set(issues["id"])
    print(f"label issues: {pr(flagged, set(planted['flipped']))}; "
          f"{len(flagged & set(planted['ood']))} of the flagged rows are planted out-of-domain rows")
    top = issues.head(len(planted["flipped"]))
    print(f"  top {len(top)} ranked: precision {np.isin(top['id'], planted['flipped']).mean():.3f}")
    outliers = pd.read_csv(folder / "outliers.csv", keep_default_na=False)
    train_out = outliers[outliers["split"] == "train"]
    fenced = set(train_out.loc[train_out["above_fence"], "id"])
    print(f"outliers (train rows above the fence): {pr(fenced, set(planted['ood']))}")
    top = train_out.head(len(planted["ood"]))
    print(f"  top {len(top)} train rows: precision {np.isin(top['id'], planted['ood']).mean():.3f}")


def time_70k(workdir: Path) -> None:
    from comptk.inspect import inspect_competition

    if not (workdir / "data" / "fashion").exists():
        comptk("prepare", "fashion", "--workdir", str(workdir))
    started = time.perf_counter()
    result = inspect_competition("fashion", workdir=workdir)
    wall = time.perf_counter() - started
    t = result.summary["timings"]
    d = result.summary["duplicates"]["pairs"]
    print(f"70,000 images: `comptk inspect fashion` {wall:.1f} s (scan: read+decode+hash {t['scan_seconds']:.1f} s, "
          f"duplicate search {t['duplicates_seconds']:.1f} s); pairs found: {d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench/inspect")
    parser.add_argument("--train-n", type=int, default=12000)
    parser.add_argument("--test-n", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-70k", action="store_true")
    parser.add_argument("--only-70k", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    if not args.only_70k:
        planted_path = workdir / "planted" / "planted.json"
        wd = workdir / "planted"
        if planted_path.is_file():
            planted = json.loads(planted_path.read_text())
        else:
            started = time.perf_counter()
            planted = build(wd, args.train_n, args.test_n, args.seed)
            print(f"built the planted competition in {time.perf_counter() - started:.1f} s")
        run = f"planted-e{args.epochs}"
        if not (wd / "oof" / f"{run}.json").is_file():
            seconds = comptk("train", "fashion", "--workdir", str(wd), "--folds", "5", "--epochs", str(args.epochs),
                             "--tta", "none", "--name", run, "--quiet", "--no-plots")
            print(f"comptk train fashion --folds 5 --epochs {args.epochs} --tta none: {seconds:.1f} s")
        meta = json.loads((wd / "oof" / f"{run}.json").read_text())
        print(f"run {run}: CV accuracy {meta['cv']['oof']:.4f} (pooled OOF, on the noisy labels)")
        seconds = comptk("inspect", "fashion", "--workdir", str(wd), "--run", run)
        print(f"comptk inspect fashion --run {run}: {seconds:.1f} s")
        report_planted(wd, planted, run)
    if not args.skip_70k:
        time_70k(workdir / "all70k")


if __name__ == "__main__":
    main()
