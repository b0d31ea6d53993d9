"""Issue #16 item 2: comptk's fitted recipe (`comptk init`, then `comptk train` with what it wrote) against
what a competitor gets from fastai's defaults (`vision_learner(resnet18, pretrained=False)` + `fit_one_cycle`
+ `tta`) on a contest neither was tuned on, in the same wall time.

    python benchmarks/fitted_vs_fastai.py [--workdir bench/fitted] [--source variant|fashion-lt]
                                          [--train-n N] [--test-n N] [--smoke]

The contest (default ``variant``): Fashion-MNIST made into another contest than fashion-lt: images upscaled to
44 px, a long tail of 600 down to 60 training images per class (ratio 10, another class order), test images
random crops of 0.7 of each side (31 px), grey PNGs, in Kaggle's layout (a zip with train.csv (id,label),
test.csv, sample_submission.csv, train/{id}.png, test/{id}.png); held-out test labels in answers.csv, scored by
macro F1. ``--source fashion-lt`` uses `comptk prepare fashion-lt` instead.

comptk: `init_competition` (metric macro_f1) writes the declaration with the recipe fitted to the images and this
machine; `run_cv` trains it as written (K folds, OOF, TTA); the wall time covers init, decoding, training and
prediction. fastai: the same train images, 20 % held out for its validation, item size the fitted img_size
(what a competitor picks after looking at the images), `aug_transforms()`, batch 64, `fit_one_cycle` with the
default learning rate for as many epochs as fit in comptk's wall time (timed with a one-epoch probe, which counts
against the budget), then `learn.tta()` on the test images. Both are scored on the answers with the same code.

Needs fastai. It installs beside the project's torch without changing it, but pulls ~40 packages; the check here
used a separate environment: `python -m venv /work/venv-fastai --system-site-packages &&
/work/venv-fastai/bin/pip install fastai`, then run this script with /work/venv-fastai/bin/python.
``--smoke`` (a check that the script works: a few hundred images, 2 folds, 1 epoch) gives no evidence.
Do not run it in full on a loaded machine: both sides are timed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's comptk

from comptk import prepare, run_cv, score_submission
from comptk.datasets.sources import long_tail_counts, read_fashion
from comptk.declare import init_competition

SIZE, CROP, LARGEST, RATIO, CLASS_SEED = 44, 0.7, 600, 10, 7


def _upscale(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def build_variant(out: Path, *, train_n: int | None, test_n: int, seed: int = 0) -> tuple[Path, Path]:
    """The variant contest as a Kaggle zip, and its answers CSV (kept outside the zip)."""
    x_train, y_train, x_test, y_test, classes = read_fashion()
    rng = np.random.default_rng(seed)
    order = np.random.default_rng(CLASS_SEED).permutation(len(classes))
    counts = long_tail_counts(len(classes), LARGEST, RATIO)[np.argsort(order)]
    if train_n:  # smaller, same profile
        counts = np.maximum(2, np.round(counts * train_n / counts.sum())).astype(int)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y_train == c))[:counts[c]]
                                   for c in range(len(classes))]))
    test_rows = np.sort(rng.permutation(len(x_test))[:test_n])
    crop = round(CROP * SIZE)
    out.parent.mkdir(parents=True, exist_ok=True)
    train_ids = [f"{i:05d}" for i in range(len(keep))]
    test_ids = [f"{rng.integers(16 ** 6):06x}{i:04d}" for i in range(len(test_rows))]  # Kaggle-like hashes
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for id_, row in zip(train_ids, keep):
            archive.writestr(f"fashion-variant/train/{id_}.png", _png(_upscale(x_train[row], SIZE)))
        for id_, row in zip(test_ids, test_rows):
            top, left = rng.integers(0, SIZE - crop + 1, 2)
            archive.writestr(f"fashion-variant/test/{id_}.png",
                             _png(_upscale(x_test[row], SIZE)[top:top + crop, left:left + crop]))
        names = np.array(classes)
        archive.writestr("fashion-variant/train.csv", pd.DataFrame({"id": train_ids, "label": names[y_train[keep]]})
                         .to_csv(index=False))
        archive.writestr("fashion-variant/test.csv", pd.DataFrame({"id": test_ids}).to_csv(index=False))
        archive.writestr("fashion-variant/sample_submission.csv",
                         pd.DataFrame({"id": test_ids, "label": names[0]}).to_csv(index=False))
    answers = out.with_name("answers.csv")
    pd.DataFrame({"id": test_ids, "label": np.array(classes)[y_test[test_rows]]}).to_csv(answers, index=False)
    return out, answers


def run_comptk(name: str, source: Path, workdir: Path, answers: Path, overrides: dict) -> dict:
    started = time.perf_counter()
    init = init_competition(name, source, workdir=workdir, metric="macro_f1", force=True)
    print("\n".join(init.summary), flush=True)
    result = run_cv(name, overrides, workdir=workdir, name=f"{name}-fitted-{time.strftime('%H%M%S')}",
                    progress=False, plots=False)
    wall = time.perf_counter() - started
    cfg = result.sidecar["config"]
    return {"recipe": "comptk fitted (init)", "model": cfg["model"], "img_size": cfg["img_size"],
            "epochs": f"{cfg['epochs']} x {cfg['n_folds']} folds", "cv": result.cv,
            "test": score_submission(result.paths.submission, answers, "macro_f1"), "wall_s": wall,
            "data_dir": init.data_dir, "declaration": init.path}


def run_fastai(comptk_row: dict, workdir: Path, answers: Path, budget_s: float, workers: int | None) -> dict:
    from fastai.vision.all import (
        F1Score,
        ImageDataLoaders,
        Resize,
        aug_transforms,
        resnet18,
        vision_learner,
    )

    started = time.perf_counter()
    from comptk.competition import load_competition
    from comptk.data.layouts import read_data

    comp = load_competition(comptk_row["declaration"])
    data = read_data(comp, comp.data_path(workdir))
    frame = pd.DataFrame({"file": [str(p) for p in data.train.paths],
                          "label": [data.classes[i] for i in data.train.labels]})
    size = comptk_row["img_size"]
    kwargs = {"num_workers": workers} if workers is not None else {}

    def learner():
        dls = ImageDataLoaders.from_df(frame, path="/", fn_col="file", label_col="label", valid_pct=0.2, seed=42,
                                       item_tfms=Resize(size), batch_tfms=aug_transforms(), bs=64, **kwargs)
        return vision_learner(dls, resnet18, pretrained=False, metrics=F1Score(average="macro"))

    probe = learner()
    tick = time.perf_counter()
    with probe.no_bar(), probe.no_logging():
        probe.fit_one_cycle(1)
    epoch_s = time.perf_counter() - tick
    n_fit = len(probe.dls.train_ds)
    tta_s = 5 * epoch_s * len(data.test.ids) / n_fit / 3  # 5 views, forward only
    left = budget_s - (time.perf_counter() - started) - tta_s
    n_epochs = max(1, math.floor(left / epoch_s))
    learn = learner()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(n_epochs)
        valid_f1 = float(learn.validate()[1])
        test_dl = learn.dls.test_dl([str(p) for p in data.test.paths])
        proba, _ = learn.tta(dl=test_dl)
    labels = np.array(learn.dls.vocab)[proba.numpy().argmax(1)]
    submission = workdir / "submissions" / f"fastai-{time.strftime('%H%M%S')}.csv"
    submission.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({comp.columns.id: data.test.ids, comp.columns.label: labels}).to_csv(submission, index=False)
    return {"recipe": "fastai defaults", "model": "resnet18 (scratch)", "img_size": size,
            "epochs": f"{n_epochs} (+1 probe)", "cv": valid_f1, "test": score_submission(submission, answers,
                                                                                           "macro_f1"),
            "wall_s": time.perf_counter() - started}


def table(rows: list[dict]) -> str:
    lines = ["| recipe | model | img px | epochs | test macro F1 | validation macro F1 | wall s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['model']} | {r['img_size']} | {r['epochs']} | {r['test']:.4f} | {r['cv']:.4f} "
              f"| {r['wall_s']:.0f} |" for r in rows]
    return "\n".join(lines) + ("\n\nvalidation: comptk's pooled OOF over K folds; fastai's 20 % hold-out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench/fitted"))
    parser.add_argument("--source", choices=("variant", "fashion-lt"), default="variant")
    parser.add_argument("--train-n", type=int, help="about this many training images (full variant: ~2,450)")
    parser.add_argument("--test-n", type=int, default=3000, help="test images (of Fashion-MNIST's 10,000)")
    parser.add_argument("--fastai-workers", type=int, help="DataLoader workers for fastai (default: fastai's)")
    parser.add_argument("--smoke", action="store_true",
                        help="check the script only: ~300 train / 100 test images, 2 folds, 1 epoch; no evidence")
    args = parser.parse_args()
    workdir = args.workdir
    overrides = {"n_folds": 2, "epochs": 1} if args.smoke else {}
    train_n, test_n = (300, 100) if args.smoke else (args.train_n, args.test_n)
    if args.source == "variant":
        source, answers = build_variant(workdir / "downloads" / "fashion-variant.zip", train_n=train_n, test_n=test_n)
        name = "fashion-variant"
    else:
        source = workdir / "data" / "fashion-lt"
        if not source.exists():
            prepare("fashion-lt", workdir, train_n=train_n, test_n=test_n)
        answers, name = source / "answers.csv", "fashion-lt-fitted"
    print(f"contest: {name} from {source}", flush=True)
    rows = [run_comptk(name, source, workdir, answers, overrides)]
    print(f"comptk: test macro F1 {rows[0]['test']:.4f} in {rows[0]['wall_s']:.0f} s; fastai gets the same time",
          flush=True)
    rows.append(run_fastai(rows[0], workdir, answers, rows[0]["wall_s"], args.fastai_workers))
    print()
    print(table(rows))
    (workdir / "fitted_vs_fastai.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
