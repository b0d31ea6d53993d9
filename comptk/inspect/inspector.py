"""inspect_competition(): the data report before training, and label issues and outliers
from a finished run. Everything is written under WORKDIR/inspect/NAME/:

    report.html        self-contained report (plots and thumbnails embedded)
    images.csv         one row per image: split, id, path, label, format, mode, size, grey, error
    duplicates.csv     exact and near duplicate pairs (train/train, train/test, test/test)
    label_issues.csv   with --run: rows likely mislabelled (confident learning), most likely first
    outliers.csv       with --run: out-of-domain candidates (Mahalanobis distance and feature norm of fold-model
                       embeddings; train rows as centre crops when test images are crops)
    summary.json       the figures the terminal summary shows
    derived/           with write_groups / apply_labels: a corrected copy of the competition
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import artifacts
from ..competition import Competition, load_competition
from ..data.folds import folds_digest, folds_key, read_folds, same_labels
from ..data.layouts import read_data
from ..data.tables import CompetitionData
from ..errors import ComptkError
from . import report as rpt
from .derived import group_column, write_derived
from .duplicates import Duplicates, find_duplicates
from .eda import DataFacts, describe, image_table
from .labels import LabelIssues, label_issues
from .scan import Scan, scan_images


@dataclass(frozen=True)
class InspectResult:
    folder: Path
    report: Path
    summary: dict
    lines: list[str]  # the terminal summary
    derived: Path | None  # declaration of the corrected copy, when one was written


def _pair_table(dups: Duplicates, data: CompetitionData, paths: list[Path], fold: np.ndarray | None) -> pd.DataFrame:
    n_train = len(data.train.ids)
    ids = np.concatenate([data.train.ids, data.test.ids])
    labels = np.concatenate([np.array(data.classes)[data.train.labels], np.full(len(data.test.ids), "")])
    split = np.where(np.arange(len(ids)) < n_train, "train", "test")
    a, b = dups.pairs["row_a"].to_numpy(), dups.pairs["row_b"].to_numpy()
    both_train = (a < n_train) & (b < n_train)
    table = pd.DataFrame({
        "kind": dups.pairs["kind"].to_numpy(), "split_a": split[a], "id_a": ids[a], "label_a": labels[a],
        "split_b": split[b], "id_b": ids[b], "label_b": labels[b],
        "hash_distance": dups.pairs["distance"].to_numpy(), "similarity": dups.pairs["similarity"].to_numpy(),
        "conflicting_labels": both_train & (labels[a] != labels[b]),
    })
    if fold is not None:
        fa = np.where(a < n_train, fold[np.minimum(a, n_train - 1)], -1)
        fb = np.where(b < n_train, fold[np.minimum(b, n_train - 1)], -1)
        table["across_folds"] = both_train & (fa != fb)
    table["path_a"] = [str(paths[i]) for i in a]
    table["path_b"] = [str(paths[i]) for i in b]
    return table


@dataclass(frozen=True)
class _Run:
    """A finished run's files for inspect --run: OOF in the competition's class order and its folds."""

    paths: artifacts.RunPaths
    record: artifacts.RunRecord
    oof: np.ndarray
    fold: np.ndarray
    folds_file: Path


def _load_run(workdir: Path, run: str, comp: Competition, data: CompetitionData) -> _Run:
    given = Path(run)
    oof_path = given if given.suffix == ".npy" and given.is_file() else artifacts.RunPaths(workdir, run).oof
    if not oof_path.is_file():
        raise ComptkError(f"--run: no finished run '{run}' ({oof_path} not found); give a run name in this "
                          "work directory or the path of its oof/RUN.npy")
    loaded = artifacts.load_run(oof_path)
    record = loaded.record
    if record.is_blend:
        raise ComptkError(f"--run: '{loaded.name}' is a blend; label issues and outliers need one training run's "
                          f"OOF and fold models: give one of its members")
    if record.competition != comp.name:
        raise ComptkError(f"--run: run '{loaded.name}' is of competition '{record.competition}', not '{comp.name}'")
    if record.train_ids_digest != artifacts.digest(data.train.ids):
        raise ComptkError(f"--run: run '{loaded.name}' was trained on other train rows than {comp.name}'s train table "
                          "now has (train_ids_digest differs)")
    if record.train_labels_digest and not same_labels(record.train_labels_digest, record.classes, data.train,
                                                      data.classes):
        raise ComptkError(f"--run: run '{loaded.name}' was trained on other train labels than {comp.name}'s train "
                          "table now has (train_labels_digest differs); train a run on the current labels")
    if sorted(record.classes) != sorted(data.classes):
        raise ComptkError(f"--run: run '{loaded.name}' has other classes than {comp.name}'s")
    order = [list(record.classes).index(c) for c in data.classes]
    folds_file = Path(record.folds_file)
    if not folds_file.is_file():
        raise ComptkError(f"--run: the folds file of run '{loaded.name}' ({folds_file}) is missing")
    fold = read_folds(folds_file, data.train, record.n_folds)
    if folds_digest(data.train.ids, fold) != record.folds_digest:
        raise ComptkError(f"--run: {folds_file} differs from the folds run '{loaded.name}' was trained on "
                          "(folds_digest); its OOF rows would be matched to other folds")
    return _Run(artifacts.RunPaths(oof_path.parent.parent, loaded.name), record, loaded.oof[:, order], fold,
                folds_file)


def _check_options(run: str | None, apply_labels: bool, max_distance: int, min_similarity: float) -> None:
    if apply_labels and not run:
        raise ComptkError("--apply needs --run RUN: the suggested labels come from a run's OOF predictions")
    if not 0 <= max_distance <= 16:
        raise ComptkError(f"--max-distance must be between 0 and 16 bits, got {max_distance}")
    if not 0 < min_similarity <= 1:
        raise ComptkError(f"--min-similarity must be in (0, 1], got {min_similarity}")


def _saved_folds(workdir: Path, comp: Competition, data: CompetitionData,
                 run: _Run | None) -> tuple[Path | None, np.ndarray | None]:
    """The run's folds; else the competition's own folds file (its declared K and folds seed, which
    every run shares) when it has been made; else the newest folds file saved for these rows (runs
    trained with another --folds). The summary names the file used."""
    if run is not None:
        return run.folds_file, run.fold
    n_folds, seed = comp.fold_assignment()
    path = artifacts.folds_path(workdir, comp.name, n_folds, seed, folds_key(data.train))
    if path.is_file():
        return path, read_folds(path, data.train, n_folds)
    saved = artifacts.saved_folds_files(workdir, comp.name, folds_key(data.train))
    return (saved[0], read_folds(saved[0], data.train)) if saved else (None, None)


def _groups_split_across_folds(train_groups: np.ndarray, dup_rows: np.ndarray, fold: np.ndarray | None) -> int:
    if fold is None:
        return 0
    per_group = pd.DataFrame({"g": train_groups[dup_rows], "f": fold[dup_rows]}).groupby("g")["f"].nunique()
    return int((per_group > 1).sum())


def _run_findings(run: _Run, data: CompetitionData, *, workdir: Path, outliers: bool, n_top: int, device: str,
                  cache: bool, timings: dict[str, float]):
    """Label issues from the run's OOF and, with ``outliers``, outlier scores from its fold models."""
    issues = label_issues(run.oof, data.train.labels, data.train.ids, data.classes)
    if not outliers:
        return issues, None, None
    from ..data.image_cache import load_competition_images
    from ..data.images import load_centre_crops
    from .outliers import outlier_scores, outlier_table

    started = time.perf_counter()
    size = int(run.record.config["img_size"])
    imgs = load_competition_images(data, size, workdir=workdir, cache=cache)
    train_images, train_view = imgs.train, "whole images"
    if data.competition.has_test_crop:  # like with like: test images are crops, so train rows are embedded as crops
        train_images = load_centre_crops(data.train.paths, size, data.competition.test_crop)
        train_view = f"centre crops of {data.competition.test_crop:g} of each side (test images are crops)"
    scores = outlier_scores(run.paths, run.record, run.fold, data.train.labels, train_images, imgs.test, device=device)
    scores = replace(scores, train_view=train_view)
    frame = outlier_table(scores, data.train.ids, data.test.ids, data.train.labels, data.classes, run.fold, n_top)
    frame["path"] = [str(data.train.paths[r] if s == "train" else data.test.paths[r])
                     for s, r in zip(frame["split"], frame["row"])]
    timings["outliers_seconds"] = time.perf_counter() - started
    return issues, frame, scores


def inspect_competition(
    competition: Competition | str | Path,
    *,
    workdir: str | Path = ".",
    data_dir: str | Path | None = None,
    run: str | None = None,
    max_distance: int = 6,
    min_similarity: float = 0.99,
    write_groups: bool = False,
    apply_labels: bool = False,
    n_top: int = 100,
    outliers: bool = True,
    device: str = "auto",
    cache: bool = True,
    echo: Callable[[str], None] | None = None,
) -> InspectResult:
    """Data report, duplicates and fold leakage; with ``run``, label issues and outliers too.

    ``write_groups``: write a corrected copy whose group column keeps duplicates in one fold;
    ``apply_labels`` (needs ``run``): the copy gets the suggested labels of the flagged rows."""
    say = echo or (lambda _: None)
    workdir = Path(workdir)
    _check_options(run, apply_labels, max_distance, min_similarity)
    comp = competition if isinstance(competition, Competition) else load_competition(competition, workdir)
    data = read_data(comp, comp.data_path(workdir, data_dir))
    out = artifacts.InspectPaths(workdir, comp.name)
    loaded = _load_run(workdir, run, comp, data) if run else None  # a bad --run fails before the scan
    if (write_groups or apply_labels) and comp.layout != "csv":
        raise ComptkError(f"competition '{comp.name}' uses the {comp.layout} layout: --write-groups and --apply write "
                          "a corrected copy of the train CSV, so they need the csv layout")

    timings: dict[str, float] = {}
    started = time.perf_counter()
    paths = [*data.train.paths, *data.test.paths]
    scan = scan_images(paths)
    timings["scan_seconds"] = time.perf_counter() - started
    say(f"scanned {len(paths)} images in {timings['scan_seconds']:.1f} s")
    images, facts = _image_facts(scan, data, paths)
    started = time.perf_counter()
    dups = find_duplicates(scan, max_distance=max_distance, min_similarity=min_similarity)
    timings["duplicates_seconds"] = time.perf_counter() - started
    n_train = len(data.train.ids)
    folds_file, fold = _saved_folds(workdir, comp, data, loaded)
    pairs = _pair_table(dups, data, paths, fold)
    train_groups = dups.groups[:n_train]
    split_groups = _groups_split_across_folds(train_groups, dups.group_size[:n_train] > 1, fold)
    issues, outlier_frame, scores = (
        _run_findings(loaded, data, workdir=workdir, outliers=outliers, n_top=n_top, device=device, cache=cache,
                      timings=timings) if loaded else (None, None, None))

    _write_tables(out, images, pairs, issues, outlier_frame)
    derived = None
    if write_groups or apply_labels:
        groups = group_column(train_groups, data.train.groups) if write_groups else None
        relabel = ({int(r): s for r, s in zip(issues.table["row"], issues.table["suggested_label"])}
                   if apply_labels and issues is not None else None)
        derived = write_derived(comp, data, out.derived, groups=groups, new_labels=relabel)

    summary = _summary(comp, run, data, facts, images, pairs, folds_file, fold, split_groups, issues, outlier_frame,
                       scores, timings, derived, max_distance=max_distance, min_similarity=min_similarity)
    artifacts.save_json(out.summary, summary)
    lines = _summary_lines(summary, out.report, derived, write_groups)
    rpt.write_html(out.report, f"comptk inspect: {comp.name}" + (f" (run {run})" if run else ""),
                   _sections(facts, pairs, summary, lines, issues, outlier_frame, scores, data))
    return InspectResult(out.folder, out.report, summary, lines, derived)


def _write_tables(out: artifacts.InspectPaths, images: pd.DataFrame, pairs: pd.DataFrame,
                  issues: LabelIssues | None, outlier_frame: pd.DataFrame | None) -> None:
    artifacts.save_csv(out.images, images)
    artifacts.save_csv(out.duplicates, pairs)
    # An earlier call's label issues / outliers would read as this call's: replace them or remove them.
    for path, table in ((out.label_issues, issues.table if issues is not None else None),
                        (out.outliers, outlier_frame)):
        if table is not None:
            artifacts.save_csv(path, table)
        else:
            path.unlink(missing_ok=True)


def _image_facts(scan: Scan, data: CompetitionData, paths: list[Path]) -> tuple[pd.DataFrame, DataFacts]:
    """One row per image (images.csv) and the data report's facts."""
    names = np.array(data.classes)
    images = image_table(scan, np.concatenate([data.train.ids, data.test.ids]), paths,
                         np.array(["train"] * len(data.train.ids) + ["test"] * len(data.test.ids)),
                         np.concatenate([names[data.train.labels], np.full(len(data.test.ids), "")]))
    return images, describe(images, data.classes)


def _summary(comp: Competition, run: str | None, data: CompetitionData, facts: DataFacts, images: pd.DataFrame,
             pairs: pd.DataFrame, folds_file: Path | None, fold: np.ndarray | None, split_groups: int,
             issues: LabelIssues | None, outlier_frame: pd.DataFrame | None, scores, timings: dict[str, float],
             derived: Path | None, *, max_distance: int, min_similarity: float) -> dict:
    """summary.json: the figures the terminal summary shows."""
    kinds = pairs.groupby(["kind", pairs["split_a"] + "/" + pairs["split_b"]]).size()
    return {
        "competition": comp.name,
        "run": run,
        "n_train": len(data.train.ids),
        "n_test": len(data.test.ids),
        "class_counts": {str(k): int(v) for k, v in facts.class_counts.items()},
        "n_unreadable": int((images["error"] != "").sum()),
        "findings": facts.findings + ([scores.shift.finding()] if scores is not None and scores.shift else []),
        "duplicates": {
            "max_distance": max_distance,
            "min_similarity": min_similarity,
            "pairs": {f"{k}:{s}": int(v) for (k, s), v in kinds.items()},
            "conflicting_label_pairs": int(pairs["conflicting_labels"].sum()),
            "folds_file": str(folds_file) if fold is not None else None,
            "pairs_across_folds": int(pairs["across_folds"].sum()) if "across_folds" in pairs else None,
            "groups_split_across_folds": split_groups if fold is not None else None,
        },
        "label_issues": None if issues is None else {"n_flagged": len(issues.table), "n_checked": issues.n_checked},
        "outliers": None if scores is None else {
            "fence": scores.fence,
            "n_above_fence": int(outlier_frame["above_fence"].sum()),
            "train_rows_embedded_as": scores.train_view,
            "shift": None if scores.shift is None else {
                "split": scores.shift.split, "n_above_fence": scores.shift.n_above, "n_rows": scores.shift.n_rows,
                "own_fence": scores.shift.own_fence},
        },
        "timings": timings,
        "derived": str(derived) if derived else None,
    }


def _summary_lines(summary: dict, report: Path, derived: Path | None, grouped: bool) -> list[str]:
    d = summary["duplicates"]
    pairs = d["pairs"]
    count = {key: sum(v for k, v in pairs.items() if k.startswith(key)) for key in ("exact", "near")}
    across = sum(v for k, v in pairs.items() if k.endswith("train/test") or k.endswith("test/train"))
    lines = [f"{summary['competition']}: {summary['n_train']} train / {summary['n_test']} test images, "
             f"{len(summary['class_counts'])} classes, {summary['n_unreadable']} unreadable"]
    lines += [f"  ! {f}" for f in summary["findings"]]
    lines.append(f"duplicates: {count['exact']} exact and {count['near']} near pairs ({across} across train/test), "
                 f"{d['conflicting_label_pairs']} with conflicting labels")
    if d["groups_split_across_folds"] is not None:
        lines.append(f"folds ({Path(d['folds_file']).name}): {d['groups_split_across_folds']} duplicate groups "
                     f"split across folds ({d['pairs_across_folds']} pairs)")
    else:
        lines.append("folds: none saved yet for these train rows (train once, or rerun after `comptk train`)")
    if summary["label_issues"]:
        li = summary["label_issues"]
        lines.append(f"label issues: {li['n_flagged']} of {li['n_checked']} rows flagged (label_issues.csv)")
    if summary["outliers"]:
        o = summary["outliers"]
        view = "" if o["train_rows_embedded_as"] == "whole images" else f"; train rows as {o['train_rows_embedded_as']}"
        lines.append(f"outliers: {o['n_above_fence']} rows above the fence {o['fence']:.4f} (outliers.csv{view})"
                     + (f"; {o['shift']['split']} rows against their own fence {o['shift']['own_fence']:.4f}, "
                        f"see the finding above" if o.get("shift") else ""))
    lines.append(f"report: {report}")
    if derived:
        lines.append(f"corrected copy: {derived}; train on it with: comptk train {derived.parent}")
        if grouped:
            lines.append("  (its [columns] group = \"dup_group\" keeps each duplicate group in one fold)")
    return lines


def _sections(facts: DataFacts, pairs: pd.DataFrame, summary: dict, lines: list[str], issues, outlier_frame,
              scores, data: CompetitionData) -> list[tuple[str, str]]:
    import html

    summary_html = "<pre>" + html.escape("\n".join(lines)) + "</pre>"
    images = facts.images
    fmt = images.groupby(["split", "format", "mode"]).size().rename("images").reset_index()
    fmt["grey"] = images.groupby(["split", "format", "mode"])["grey"].sum().to_numpy()
    sections = [
        ("Summary", summary_html),
        ("Class counts", rpt._img(rpt.plot_class_counts(facts.class_counts), "class counts")),
        ("Image sizes and aspect ratios", rpt._img(rpt.plot_sizes(images), "image sizes")),
        ("Formats and colour modes", rpt.table_html(fmt)),
        ("Unreadable files", rpt.table_html(images[images["error"] != ""][["split", "id", "path", "error"]])),
    ]
    shown = pairs.sort_values(["conflicting_labels", "kind", "similarity"], ascending=[False, True, False])
    sections.append(("Duplicates (conflicting labels first)",
                     rpt.table_html(shown.drop(columns=[]), thumbs={"image a": "path_a", "image b": "path_b"})))
    if "across_folds" in pairs:
        split = pairs[pairs["across_folds"]]
        sections.append(("Duplicates split across folds (inflate CV)",
                         rpt.table_html(split, thumbs={"image a": "path_a", "image b": "path_b"}, max_rows=30)))
    if issues is not None:
        table = issues.table.copy()
        table["path"] = [str(data.train.paths[r]) for r in table["row"]]
        sections.append((f"Label issues ({len(table)} of {issues.n_checked} rows)",
                         rpt.table_html(table, thumbs={"image": "path"})))
    if outlier_frame is not None:
        plot = rpt._img(rpt.plot_scores(scores.train, scores.fence, "train rows: outlier score", "score (robust z)"), "scores")
        note = f"<p>Train rows embedded as {html.escape(scores.train_view)}; test rows as they are.</p>"
        if scores.shift is not None:
            sh = scores.shift
            note += (f"<p><b>{sh.n_above} of {sh.n_rows} {sh.split} rows are above the train rows' fence: a shift of "
                     f"the whole split (see the summary), so {sh.split} rows are listed against their own fence "
                     f"{sh.own_fence:.4f}.</b></p>")
        sections.append(("Outlier candidates", note + plot + rpt.table_html(outlier_frame, thumbs={"image": "path"})))
    return sections
