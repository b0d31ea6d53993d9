"""comptk inspect: hashing and the sub-quadratic near-duplicate search, confident learning,
the data report's findings, and the command end to end (report, groups that really keep
duplicates in one fold, a relabelled copy that leaves the original alone)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from comptk.cli import main
from comptk.inspect.derived import dump_toml
from comptk.inspect.duplicates import find_duplicates, near_pairs, popcount64
from comptk.inspect.eda import describe
from comptk.inspect.labels import find_label_issues, label_issues
from comptk.inspect.scan import scan_images
from tests.conftest import make_tiny


def _brute(hashes: np.ndarray, d: int) -> set[tuple[int, int]]:
    return {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
            if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= d}


@pytest.mark.parametrize("max_distance", [0, 2, 5, 9])
def test_near_pairs_equal_brute_force(max_distance):
    rng = np.random.default_rng(max_distance)
    base = rng.integers(0, 2**63, 150, dtype=np.uint64)
    flips = [np.uint64(1) << np.uint64(b) for b in range(64)]
    near = []
    for h in base[:60]:  # copies with 0..12 bits flipped: some inside, some outside the radius
        for b in rng.choice(64, rng.integers(0, 13), replace=False):
            h = h ^ flips[b]
        near.append(h)
    hashes = np.concatenate([base, np.array(near, dtype=np.uint64), base[:5]])  # and 5 exact repeats
    pairs, dist = near_pairs(hashes, max_distance)
    assert {tuple(p) for p in pairs.tolist()} == _brute(hashes, max_distance)
    assert (dist <= max_distance).all()
    assert np.array_equal(dist, popcount64(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]]))


def _photo(rng, size=40) -> np.ndarray:
    """A smooth random picture (structure at several scales), so resampling keeps it recognisable."""
    low = rng.integers(0, 256, (5, 5, 3)).astype(np.uint8)
    big = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)).astype(int)
    return np.clip(big + rng.integers(-10, 10, big.shape), 0, 255).astype(np.uint8)


def _save(path: Path, pixels: np.ndarray, fmt: str = "PNG", **kw) -> Path:
    Image.fromarray(pixels).save(path, fmt, **kw)
    return path


def test_scan_and_duplicates_exact_near_and_distinct(tmp_path):
    rng = np.random.default_rng(0)
    a, b = _photo(rng), _photo(rng)
    grey = np.repeat(np.asarray(Image.fromarray(a).convert("L"))[..., None], 3, axis=2)
    paths = [
        _save(tmp_path / "a.png", a),
        _save(tmp_path / "a.bmp", a, "BMP"),  # same pixels, other encoding: exact
        _save(tmp_path / "a_bright.jpg", np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8), "JPEG", quality=95),
        _save(tmp_path / "b.png", b),  # different picture
        _save(tmp_path / "grey.png", grey[..., 0]),  # mode L
    ]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    paths.append(tmp_path / "broken.png")
    scan = scan_images(paths)
    assert list(scan.format[:4]) == ["PNG", "BMP", "JPEG", "PNG"]
    assert scan.mode[4] == "L" and scan.grey[4] and not scan.grey[0]
    assert scan.error[5] != "" and scan.readable[:5].all()
    assert scan.pixel_sha[0] == scan.pixel_sha[1] and scan.file_sha[0] != scan.file_sha[1]
    dups = find_duplicates(scan)
    kinds = {(r.row_a, r.row_b): r.kind for r in dups.pairs.itertuples()}
    assert kinds[(0, 1)] == "exact"
    assert kinds[(0, 2)] == "near" and kinds[(1, 2)] == "near"
    assert not any(3 in pair for pair in kinds) and not any(5 in pair for pair in kinds)
    assert kinds[(0, 4)] == "near"  # a grey copy of a colour picture is a near duplicate too
    assert dups.groups[0] == dups.groups[1] == dups.groups[2] == dups.groups[4] != dups.groups[3]
    assert list(dups.group_size[:5]) == [4, 4, 4, 1, 4]


def test_confident_learning_finds_flipped_labels():
    rng = np.random.default_rng(0)
    n, c, n_flip = 4000, 6, 120
    truth = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), truth] += 3.5
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    flipped = rng.choice(n, n_flip, replace=False)
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, c, n_flip)) % c
    mask = find_label_issues(proba, given)
    found = np.flatnonzero(mask)
    precision = np.isin(found, flipped).mean()
    recall = np.isin(flipped, found).mean()
    assert precision > 0.7 and recall > 0.7, (precision, recall)
    # clean labels on a confident model: nothing (or next to nothing) flagged
    assert find_label_issues(proba, truth).sum() < 0.01 * n
    # the table: most likely first, suggested label = the model's class, NaN rows (partial runs) skipped
    proba_nan = proba.copy()
    proba_nan[:10] = np.nan
    ids = np.array([f"r{i}" for i in range(n)])
    issues = label_issues(proba_nan, given, ids, tuple("abcdef"))
    assert issues.n_checked == n - 10 and not set(issues.table["row"]) & set(range(10))
    assert issues.table["score"].is_monotonic_decreasing
    first = issues.table.iloc[0]
    assert first["suggested_label"] == "abcdef"[proba[first["row"]].argmax()] != first["given_label"]


def test_data_findings():
    rows = []
    for i in range(40):
        rows.append({"split": "train", "id": f"t{i}", "path": "", "label": "a" if i < 32 else "b", "format": "JPEG",
                     "mode": "L" if i < 3 else "RGB", "width": 200, "height": 160, "bytes": 1, "grey": i < 3,
                     "error": ""})
    for i in range(10):
        rows.append({"split": "test", "id": f"s{i}", "path": "", "label": "", "format": "PNG" if i == 0 else "JPEG",
                     "mode": "RGB", "width": 100, "height": 80, "bytes": 1, "grey": False,
                     "error": "not a readable image (UnidentifiedImageError)" if i == 9 else ""})
    facts = describe(pd.DataFrame(rows), ("a", "b", "c"))
    text = "\n".join(facts.findings)
    assert "1 unreadable image(s), e.g. test id 's9'" in text
    assert "imbalanced classes: 'a' has 32 images, 'b' 8" in text
    assert "'c'" in text  # a declared class without images
    assert "grey images among colour ones (test 0/9, train 3/40 grey)" in text
    assert "test images are smaller than train images: median 100x80 vs 200x160 (sides x0.50)" in text
    assert "several file formats: JPEG 48, PNG 1" in text


def test_dump_toml_round_trips():
    import tomllib

    table = {"name": "x", "odd key": 1.5, "classes": ["a", "b"], "files": {"train": "/abs/train.csv"},
             "augment": {"p": {"transforms": [{"name": "Affine", "scale": [0.9, 1.1], "p": 0.7}]}},
             "tune": {"space": {"lr": {"low": 1e-4, "high": 3e-3, "log": True}, "augment": "flip"}}}
    assert tomllib.loads(dump_toml(table)) == table


def _tiny_with_problems(root: Path) -> Path:
    """make_tiny (its test images are copies of train images) plus a train duplicate with another
    label (a re-encoded copy)."""
    comp = make_tiny(root, n_per_class=8)
    data = comp / "data"
    train = pd.read_csv(data / "train.csv")
    pixels = np.asarray(Image.open(data / "img/cat_0.png"))
    Image.fromarray(pixels).save(data / "img/copy.bmp")
    train.loc[len(train)] = {"id": "copy", "img_path": "img/copy.bmp", "label": "dog"}
    train.to_csv(data / "train.csv", index=False)
    return comp


def test_inspect_command_end_to_end(tmp_path):
    comp = _tiny_with_problems(tmp_path / "tiny")
    runner = CliRunner()
    work = comp  # the declaration's data_dir ("data") is relative to the work directory
    out = runner.invoke(main, ["inspect", str(comp), "--workdir", str(work)])
    assert out.exit_code == 0, out.output
    folder = work / "inspect" / "tiny"
    assert "folds: none saved yet" in out.output and str(folder / "report.html") in out.output
    pairs = pd.read_csv(folder / "duplicates.csv", keep_default_na=False)
    conflict = pairs[pairs["conflicting_labels"]]
    assert set(conflict["id_a"]) | set(conflict["id_b"]) == {"cat_0", "copy"}
    assert ((pairs["split_a"] == "train") & (pairs["split_b"] == "test")).sum() >= 12  # test rows are train copies
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "class counts" in html

    original = (comp / "data" / "train.csv").read_bytes()
    args = ["--workdir", str(work), "--folds", "2", "--epochs", "1", "--quiet", "--no-plots"]
    trained = runner.invoke(main, ["train", str(comp), "--name", "r1", *args])
    assert trained.exit_code == 0, trained.output
    out = runner.invoke(main, ["inspect", str(comp), "--workdir", str(work)])  # no run: the saved folds file
    assert out.exit_code == 0 and "folds (tiny-k2-seed42-" in out.output, out.output
    pairs = pd.read_csv(folder / "duplicates.csv", keep_default_na=False)
    folds = pd.read_csv(next((work / "folds").glob("tiny-k2-*.csv")))
    fold_of = dict(zip(folds["id"], folds["fold"]))
    assert pairs.loc[pairs["id_b"] == "copy", "across_folds"].item() == (fold_of["cat_0"] != fold_of["copy"])
    out = runner.invoke(main, ["inspect", str(comp), "--workdir", str(work), "--run", "r1", "--write-groups",
                               "--apply", "--top", "5"])
    assert out.exit_code == 0, out.output
    assert "label issues:" in out.output and "outliers:" in out.output
    issues = pd.read_csv(folder / "label_issues.csv", keep_default_na=False)
    assert list(issues.columns[:4]) == ["id", "row", "given_label", "suggested_label"]
    outliers = pd.read_csv(folder / "outliers.csv", keep_default_na=False)
    assert len(outliers[outliers["split"] == "train"]) >= 5 and outliers["score"].is_monotonic_decreasing
    assert (comp / "data" / "train.csv").read_bytes() == original  # never edited

    derived = folder / "derived"
    copy = pd.read_csv(derived / "train.csv", keep_default_na=False)
    assert copy.loc[copy["id"] == "copy", "dup_group"].item() == copy.loc[copy["id"] == "cat_0", "dup_group"].item()
    fixed = dict(zip(issues["id"], issues["suggested_label"]))
    assert fixed  # something to apply, so the check below has rows to check
    assert all(copy.loc[copy["id"] == i, "label"].item() == s for i, s in fixed.items())
    out = runner.invoke(main, ["inspect", str(comp), "--workdir", str(work)])  # no run: no stale run findings
    assert out.exit_code == 0 and not (folder / "label_issues.csv").exists() and not (folder / "outliers.csv").exists()
    trained = runner.invoke(main, ["train", str(derived), "--name", "r2", *args])
    assert trained.exit_code == 0, trained.output
    import json

    folds = pd.read_csv(json.loads((work / "oof" / "r2.json").read_text())["folds_file"])
    assert folds.loc[folds["id"] == "copy", "fold"].item() == folds.loc[folds["id"] == "cat_0", "fold"].item()
    assert len(list((work / "folds").glob("tiny-k2-*.csv"))) == 2  # the grouped folds did not reuse the old file


def test_inspect_errors_are_one_line(tmp_path):
    comp = make_tiny(tmp_path / "tiny")
    runner = CliRunner()
    for args, message in [
        (["--apply"], "--apply needs --run RUN"),
        (["--run", "nope"], "--run: no finished run 'nope'"),
        (["--min-similarity", "1.5"], "--min-similarity must be in (0, 1]"),
    ]:
        out = runner.invoke(main, ["inspect", str(comp), "--workdir", str(comp), *args])
        assert out.exit_code == 2 and out.output.count("\n") == 1 and message in out.output, out.output
    assert not (comp / "inspect").exists()


def test_inspect_folder_layout_report_and_refused_copy(tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c in "ab":
        (data / "train" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(_photo(rng, 24)).save(data / "train" / c / f"{i}.png")
    (data / "test").mkdir()
    Image.open(data / "train/a/0.png").save(data / "test/t0.jpg", quality=95)
    (data / "test/t1.png").write_bytes(b"not an image")
    (tmp_path / "competition.toml").write_text('name = "fl"\nmetric = "accuracy"\nlayout = "folders"\n'
                                               'data_dir = "data"\n[files]\ntrain = "train"\ntest = "test"\n')
    runner = CliRunner()
    out = runner.invoke(main, ["inspect", str(tmp_path), "--workdir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "1 unreadable image(s), e.g. test id 't1'" in out.output
    pairs = pd.read_csv(tmp_path / "inspect/fl/duplicates.csv", keep_default_na=False)
    assert [(r.id_a, r.id_b, r.kind) for r in pairs.itertuples()] == [("a/0", "t0", "near")]
    out = runner.invoke(main, ["inspect", str(tmp_path), "--workdir", str(tmp_path), "--write-groups"])
    assert out.exit_code == 2 and "need the csv layout" in out.output and "scanned" not in out.output


def test_knn_distance_ranks_far_rows_first():
    from comptk.inspect.outliers import knn_distance

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    reference = centres[rng.integers(0, 4, 400)] + 0.1 * rng.normal(size=(400, 16))
    inliers = centres[rng.integers(0, 4, 50)] + 0.1 * rng.normal(size=(50, 16))
    strays = rng.normal(size=(5, 16))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    scores = knn_distance(unit(np.vstack([inliers, strays])), unit(reference), k=5)
    assert set(np.argsort(-scores)[:5]) == set(range(50, 55))


def test_class_gaussians_rank_strays_first():
    from comptk.inspect.outliers import ClassGaussians

    rng = np.random.default_rng(1)
    centres = 5 * rng.normal(size=(3, 8))
    labels = rng.integers(0, 3, 300)
    features = centres[labels] + rng.normal(size=(300, 8))
    model = ClassGaussians(features, labels, n_classes=4)  # a class with no rows is skipped
    queries = np.vstack([centres[rng.integers(0, 3, 40)] + rng.normal(size=(40, 8)),
                         rng.normal(size=(4, 8)) * 20])
    assert set(np.argsort(-model.distance(queries))[:4]) == {40, 41, 42, 43}


def test_outliers_of_a_run_with_factorised_heads(tmp_path):
    """A run trained with heads = "2x2" (the mask recipe's three-head option) embeds through its backbone."""
    from comptk import run_cv
    from comptk.inspect import inspect_competition

    comp = make_tiny(tmp_path / "tiny", classes=("a", "b", "c", "d"))
    run_cv(comp, {"n_folds": 2, "heads": "2x2"}, workdir=comp, name="h", progress=False, plots=False)
    result = inspect_competition(comp, workdir=comp, run="h", n_top=3)
    outliers = pd.read_csv(result.folder / "outliers.csv", keep_default_na=False)
    assert len(outliers) >= 3 and outliers["score"].notna().all()


def test_applied_suggestions_win_over_the_declarations_label_fixes(tmp_path):
    from comptk.competition import load_competition
    from comptk.data.layouts import read_data
    from comptk.inspect.derived import write_derived

    comp_dir = make_tiny(tmp_path / "tiny")
    with open(comp_dir / "competition.toml", "a") as f:
        f.write('\n[label_fixes]\n"cat_1" = "dog"\n"cat_2" = "dog"\n')
    comp = load_competition(comp_dir)
    data = read_data(comp, comp_dir / "data")
    row = int(np.flatnonzero(data.train.ids == "cat_1")[0])
    declaration = write_derived(comp, data, tmp_path / "derived", new_labels={row: "fox"})
    derived = load_competition(declaration.parent)
    fixed = read_data(derived, Path(derived.data_dir))
    label = dict(zip(fixed.train.ids, np.array(fixed.classes)[fixed.train.labels]))
    assert label["cat_1"] == "fox" and label["cat_2"] == "dog"  # the suggestion, and the untouched fix


# ---------------------------------------------------------------- outliers when test images are crops

CROPPED_TOML = """name = "cropped"
metric = "accuracy"
layout = "csv"
data_dir = "data"
[files]
train = "train.csv"
test = "test.csv"
sample_submission = "sample_submission.csv"
[columns]
id = "id"
image = "img_path"
label = "label"
[test_time]
crop = 0.5
[train]
model = "small_resnet"
img_size = 16
epochs = 2
batch_size = 8
tta = "none"
"""


def _striped(rng, c: int, side: int = 32) -> np.ndarray:
    """Diagonal stripes (period 4 px) in a class colour: a half-size crop shows them twice as wide."""
    y, x = np.mgrid[0:side, 0:side]
    wave = ((x + y + rng.integers(0, 4)) // 2) % 2
    pixels = np.full((side, side, 3), 30.0)
    pixels[..., c % 3] += 200 * wave
    return np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)


def _cropped_competition(root: Path, n_per_class: int = 12, n_test: int = 18) -> Path:
    """Whole 32 px train pictures; test images are random 16 px crops (half of each side) of others."""
    data = root / "data"
    (data / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = []
    for c, name in enumerate("abc"):
        for i in range(n_per_class):
            Image.fromarray(_striped(rng, c)).save(data / f"img/{name}_{i}.png")
            train.append({"id": f"{name}_{i}", "img_path": f"img/{name}_{i}.png", "label": name})
    test = []
    for i in range(n_test):
        top, left = rng.integers(0, 17, 2)
        Image.fromarray(_striped(rng, i % 3)[top:top + 16, left:left + 16]).save(data / f"img/t{i}.png")
        test.append({"id": f"t{i}", "img_path": f"img/t{i}.png"})
    pd.DataFrame(train).to_csv(data / "train.csv", index=False)
    pd.DataFrame(test).to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": [t["id"] for t in test], "label": "a"}).to_csv(data / "sample_submission.csv", index=False)
    (root / "competition.toml").write_text(CROPPED_TOML)
    return root


def test_load_centre_crops_cuts_at_full_resolution(tmp_path):
    from comptk.data.images import load_centre_crops

    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[5:15, 10:30] = 255  # the centre half of each side is white
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    assert (load_centre_crops([path], 8, 0.5) == 255).all()


def test_outliers_compare_like_with_like_and_report_a_shifted_split_once(tmp_path):
    """Train rows embedded whole against crops flagged all 18 test rows as outliers (before: 18 of 18)."""
    from comptk import run_cv
    from comptk.inspect import inspect_competition

    root = _cropped_competition(tmp_path / "cropped")
    run_cv(root, {"n_folds": 2}, workdir=root, name="r", progress=False, plots=False)
    result = inspect_competition(root, workdir=root, run="r")
    found = result.summary["outliers"]
    assert found["train_rows_embedded_as"].startswith("centre crops of 0.5") and found["shift"] is None
    outliers = pd.read_csv(result.folder / "outliers.csv", keep_default_na=False)
    assert outliers.loc[outliers["split"] == "test", "above_fence"].sum() <= 2

    # The same data without its declared crop: whole train rows against crops, so the test split as a
    # whole sits above the fence; that is one finding, not 18 outliers.
    toml = root / "competition.toml"
    toml.write_text(toml.read_text().replace("[test_time]\ncrop = 0.5\n", ""))
    result = inspect_competition(root, workdir=root, run="r")
    shift = result.summary["outliers"]["shift"]
    assert shift["split"] == "test" and shift["n_above_fence"] > 9 and shift["n_rows"] == 18
    assert sum("train/test shift" in f for f in result.summary["findings"]) == 1
    assert sum("train/test shift" in line for line in result.lines) == 1
    outliers = pd.read_csv(result.folder / "outliers.csv", keep_default_na=False)
    test_rows = outliers[outliers["split"] == "test"]
    assert len(test_rows) < shift["n_above_fence"] and (test_rows["fence"] == shift["own_fence"]).all()
    assert "a shift of the whole split" in (result.folder / "report.html").read_text()


def test_split_shift_needs_most_of_the_split_above_the_fence():
    from comptk.inspect.outliers import (
        OutlierScores,
        far_out_fence,
        outlier_table,
        split_shift,
    )

    rng = np.random.default_rng(0)
    train = rng.normal(size=200)
    parts = {"mahalanobis": np.zeros(200), "feature_norm": np.zeros(200)}
    test_parts = {"mahalanobis": np.zeros(50), "feature_norm": np.zeros(50)}
    fence = far_out_fence(train)
    few = np.concatenate([rng.normal(size=48), [fence + 5, fence + 6]])  # two real outliers
    scores = OutlierScores(train, few, fence, parts, test_parts)
    assert split_shift(scores) is None
    table = outlier_table(scores, np.arange(200).astype(str), np.arange(50).astype(str), np.zeros(200, int),
                          ("x",), np.zeros(200, int), top=0)
    assert sorted(table["id"]) == ["48", "49"]
    moved = OutlierScores(train, rng.normal(size=50) + fence + 3, fence, parts, test_parts)
    shift = split_shift(moved)
    assert shift is not None and shift.split == "test" and shift.share > 0.9 and "train/test shift" in shift.finding()
    table = outlier_table(moved, np.arange(200).astype(str), np.arange(50).astype(str), np.zeros(200, int),
                          ("x",), np.zeros(200, int), top=0)
    assert len(table) < 5 and (table["fence"] == shift.own_fence).all()  # against the split's own fence
