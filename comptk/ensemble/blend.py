"""blend(): members' OOF -> fitted blend -> test predictions, submission, report and a run-like sidecar."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifacts
from ..errors import ComptkError
from ..label_shift import CORRECTIONS, LabelShift, assess_label_shift, save_corrected
from ..submission import make_submission
from .crossfit import MethodResult, crossfit
from .methods import DEFAULT_META, METHOD_ORDER, BlendOptions, make_meta
from .report import build_report, to_markdown
from .scoring import Scorer
from .selection import is_same_blend, select_members
from .validate import Members, Truth, load_members, load_truth


@dataclass(frozen=True)
class BlendResult:
    name: str
    paths: artifacts.RunPaths  # oof / preds / sidecar of the blend, like a run's
    submission: Path
    report_md: Path
    report_json: Path
    method: str  # the method whose predictions were written
    methods: dict[str, MethodResult]  # every method fitted (all of them unless compare=False)
    report: dict
    record: artifacts.RunRecord  # oof/NAME.json, kind "blend"
    left_out: tuple[tuple[Path, str], ...] = ()  # given files that are not members (earlier blends, partial runs)
    rewritten: bool = False  # an existing blend of the same members and options was rewritten without --force

    @property
    def cv(self) -> float:
        """The written blend's cross-validated score (pooled over the saved folds)."""
        return self.record.cv.oof

    @property
    def sidecar(self) -> dict[str, Any]:
        """The sidecar's JSON object as written (plain data for notebooks; comptk reads ``record``)."""
        return self.record.to_json()

    @property
    def weights(self) -> dict[str, float] | None:
        return self.report["weights"]


def report_paths(out: Path) -> tuple[Path, Path]:
    """submissions/NAME.csv -> submissions/NAME.report.md, submissions/NAME.report.json."""
    return out.with_name(f"{out.stem}.report.md"), out.with_name(f"{out.stem}.report.json")


def _check_outputs(out: Path, paths: artifacts.RunPaths, members: Members, force: bool) -> tuple[Path, Path]:
    if out.suffix.lower() != ".csv":
        raise ComptkError(f"--out {out}: a submission must be a .csv file")
    for member in members.paths:
        if member.resolve() == paths.oof.resolve():
            raise ComptkError(f"--out {out}: blend '{paths.name}' would overwrite its member {member}; "
                              f"choose another --out name")
    md, js = report_paths(out)
    if paths.is_training_run():
        raise ComptkError(f"--out {out}: '{paths.name}' is a training run ({paths.run_dir}); a blend never "
                          f"replaces a training run, even with --force; choose another --out name")
    existing = [p for p in (paths.sidecar, paths.oof, paths.preds, paths.run_dir, out, md, js) if p.exists()]
    if existing and not force:
        raise ComptkError(f"blend '{paths.name}' would overwrite {existing[0]}; choose another --out name "
                          f"or pass --force")
    return md, js


def _check_in_workdir(members: Sequence[Path], workdir: Path) -> None:
    """Members are runs of the work directory the blend is written to: a blend there of another one's
    runs would leave its files in one place and its members (and what reads them) in another."""
    for member in members:
        own = artifacts.RunPaths(workdir, member.stem).oof
        if member.resolve() != own.resolve():
            home = member.resolve().parent
            where = (f"pass --workdir {home.parent}" if home.name == "oof"
                     else f"members are WORKDIR/oof/RUN.npy files, and {member} is not in an oof/ folder")
            raise ComptkError(f"{member}: not a run of the work directory {workdir} (its runs are {own.parent}/*.npy); "
                              f"blend in the members' work directory: {where}")


def blend(
    oof_paths: Sequence[str | Path],
    *,
    out: str | Path,
    method: str = "hill",
    workdir: str | Path = ".",
    n_rounds: int = 25,
    n_bags: int = 1,
    seed: int = 0,
    meta: str | None = None,
    meta_params: dict[str, Any] | None = None,
    class_bias: bool = False,
    compare: bool = True,
    force: bool = False,
    label_shift: str = "none",
    allow_blends: bool = False,
    echo: Callable[[str], None] | None = None,
) -> BlendResult:
    """Blend finished runs (their ``oof/RUN.npy`` paths) and write the blend like a run.

    ``method``: hill (Caruana selection on the metric), weights (log-loss optimal), mean, rank,
    stack (meta-model ``meta`` on the members' log-probabilities) or auto (best cross-validated).
    ``compare`` also fits the other methods for the report. Blend name = stem of ``out``;
    its oof/NAME.npy, preds/NAME.npy and oof/NAME.json go under ``workdir``.
    ``label_shift``: em corrects the submission's test probabilities for the estimated test class
    prior (also written to preds/label_shift/NAME.npy); the blend's OOF and preds/NAME.npy stay
    uncorrected, so it can be blended again. The estimate is always recorded.
    ``oof_paths`` may be a glob's files: earlier blends (unless ``allow_blends``), the blend
    being written and partial runs are left out, each with a note to ``echo`` (selection.py).
    The same call again rewrites its blend; another blend of that name needs ``force``.
    """
    if label_shift not in CORRECTIONS:
        raise ComptkError(f"label_shift '{label_shift}': choose one of {', '.join(CORRECTIONS)}")
    if label_shift != "none" and method == "rank":
        raise ComptkError("--label-shift em corrects probabilities, and a rank blend writes rank averages, not "
                          "probabilities; use another --method (or no --label-shift)")
    started = time.perf_counter()
    options = BlendOptions(method=method, n_rounds=n_rounds, n_bags=n_bags, seed=seed, meta=meta or DEFAULT_META,
                           meta_params=dict(meta_params or {}), class_bias=class_bias, compare=compare or method == "auto")
    options.check()
    out = Path(out)
    name = artifacts.check_run_name(out.stem)
    paths = artifacts.RunPaths(Path(workdir), name)
    say = echo or (lambda _: None)
    selection = select_members(oof_paths, output=paths.oof, allow_blends=allow_blends)
    for note in selection.notes:
        say(note)
    _check_in_workdir(selection.members, Path(workdir))
    members = load_members(selection.members)
    rewritten = not force and is_same_blend(paths.sidecar, members=members.names, options=options, out=out,
                                            label_shift=label_shift)
    if rewritten:
        say(f"blend '{name}' exists with the same members and options: rewriting it")
    md_path, json_path = _check_outputs(out, paths, members, force or rewritten)
    methods = METHOD_ORDER if options.compare else (method,)
    if "stack" in methods:
        make_meta(options.meta, options.meta_params, options.seed)  # a bad --meta fails before any fitting
    truth = load_truth(members)
    scorer = Scorer(members.first.metric, len(members.classes))
    results, seconds = _fit_methods(methods, truth, members, scorer, options)
    chosen = max(methods, key=lambda m: results[m].cv) if method == "auto" else method  # max keeps the first tie
    y, fold = truth.y, truth.fold
    member_scores = [(scorer.score_proba(y, p), float(np.mean(scorer.per_fold(y, p, fold)))) for p in members.oof]
    outputs = {"submission": str(out), "report_md": str(md_path), "report_json": str(json_path),
               "oof": str(paths.oof), "preds": str(paths.preds), "sidecar": str(paths.sidecar)}
    n_folds = int(len(np.unique(fold)))
    report = build_report(name, members, member_scores, results, chosen, seconds, scorer.name, n_folds, outputs)
    pick = results[chosen]
    if label_shift != "none" and chosen == "rank":  # method auto picked rank: rank averages are no probabilities
        say("label shift: not corrected: the chosen method, rank, writes rank averages, not probabilities")
    shift = assess_label_shift(pick.oof, y, pick.test, members.classes,
                               correction=label_shift if chosen != "rank" else "none",
                               corrected_path=paths.preds_label_shift)
    report["label_shift"] = shift.record
    record = _blend_record(name, members, truth, pick, chosen, report, member_scores, options,
                           timings={"wall_seconds": time.perf_counter() - started, "fit_seconds": seconds})
    record = replace(record, label_shift=shift.record)
    _write_blend(paths, out, md_path, json_path, truth, members, pick, report, record, shift)
    return BlendResult(name, paths, out, md_path, json_path, chosen, results, report, record, selection.left_out,
                       rewritten)


def _fit_methods(methods: Sequence[str], truth: Truth, members: Members, scorer: Scorer,
                 options: BlendOptions) -> tuple[dict[str, MethodResult], dict[str, float]]:
    """Each method fitted on all OOF rows and scored out-of-fold over the saved folds; seconds each."""
    results: dict[str, MethodResult] = {}
    seconds: dict[str, float] = {}
    for m in methods:
        t0 = time.perf_counter()
        results[m] = crossfit(m, truth.y, truth.fold, members.oof, members.preds, scorer, options)
        seconds[m] = time.perf_counter() - t0
    return results, seconds


def _blend_record(name: str, members: Members, truth: Truth, pick: MethodResult, chosen: str, report: dict,
                  member_scores: list[tuple[float, float]], options: BlendOptions,
                  timings: dict[str, Any]) -> artifacts.RunRecord:
    """The blend's record: the first member's identity (same rows, labels and folds by load_members),
    its cross-validated score and how it was made."""
    first = members.first
    return artifacts.RunRecord(
        name=name,
        kind="blend",
        competition=first.competition,
        competition_file=first.competition_file,
        classes=members.classes,
        train_ids_digest=first.train_ids_digest,
        test_ids_digest=first.test_ids_digest,
        train_labels_digest=first.train_labels_digest,
        folds_digest=first.folds_digest,
        metric=report["metric"],
        n_train=int(len(truth.y)),
        n_test=int(members.preds.shape[1]),
        n_folds=int(len(np.unique(truth.fold))),
        folds_file=str(truth.folds_file),
        folds_seed=first.folds_seed,  # the members' (they share folds, by load_members)
        data_dir=first.data_dir,
        cv=artifacts.CVScores(
            oof=pick.cv, mean_of_folds=float(np.mean(pick.cv_per_fold)), std_of_folds=float(np.std(pick.cv_per_fold)),
            per_fold=tuple(pick.cv_per_fold), in_sample=pick.in_sample,
            note="'oof' scores the cross-validated blend (fitted on the other folds, pooled), the one to "
                 "select on; 'in_sample' fits and scores on the same rows (optimistic)",
        ),
        method=chosen,
        members=tuple({"name": n, "path": str(p), "cv": s}
                      for n, p, (s, _) in zip(members.names, members.paths, member_scores)),
        weights=report["weights"],
        class_bias=report["class_bias"],
        methods={r["method"]: {k: v for k, v in r.items() if k != "method"} for r in report["methods"]},
        config=asdict(options),
        seed=options.seed,
        versions=artifacts.library_versions(),
        timings=timings,
        artifacts=report["artifacts"],
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def _write_blend(paths: artifacts.RunPaths, out: Path, md_path: Path, json_path: Path, truth: Truth,
                 members: Members, pick: MethodResult, report: dict, record: artifacts.RunRecord,
                 shift: LabelShift) -> None:
    # Submission columns follow the data's class order, which may differ from the members'.
    to_data = [members.classes.index(c) for c in truth.data.classes]
    artifacts.save_npy(paths.oof, pick.oof.astype(np.float32))
    artifacts.save_npy(paths.preds, pick.test.astype(np.float32))
    save_corrected(paths.preds_label_shift, shift)
    artifacts.save_csv(out, make_submission(truth.data, np.asarray(shift.test)[:, to_data]))
    artifacts.save_json(json_path, report)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_path(md_path) as tmp:
        tmp.write_text(to_markdown(report), encoding="utf-8")
    artifacts.write_record(paths.sidecar, record)  # last: marks the blend finished
