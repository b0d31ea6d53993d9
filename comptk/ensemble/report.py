"""The blend report: one dict (saved as JSON), rendered as markdown and as a terminal table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..label_shift import summary_line
from .crossfit import MethodResult
from .validate import Members

if TYPE_CHECKING:  # annotations only: blend.py builds on this module
    from .blend import BlendResult

NOTES = (
    "in-sample: the blend fitted on all OOF rows and scored on those same rows (optimistic for "
    "methods that fit on labels).",
    "cross-validated: fitted on the other folds' rows, scored on the held-out fold's rows, pooled over "
    "folds (the saved folds the members were trained on); methods are compared and chosen on it.",
    "mean of folds: the average of per-fold scores; it differs from the pooled score for macro F1.",
    "The blend's oof/NAME.npy holds the cross-validated predictions; preds/NAME.npy the all-rows fit "
    "applied to the members' test predictions.",
)


def build_report(
    name: str, members: Members, member_scores: list[tuple[float, float]], results: dict[str, MethodResult],
    chosen: str, seconds: dict[str, float], metric: str, n_folds: int, artifacts: dict[str, str],
) -> dict[str, Any]:
    pick = results[chosen]
    weights = None if pick.weights is None else {n: float(w) for n, w in zip(members.names, pick.weights) if w > 0}
    rows = []
    for method, result in results.items():
        row = {"method": method, "chosen": method == chosen, **result.summary(), "seconds": seconds[method]}
        rows.append(row)
    return {
        "name": name,
        "competition": members.first.competition,
        "metric": metric,
        "method": chosen,
        "n_members": len(members.names),
        "n_folds": n_folds,
        "n_train": int(members.oof.shape[1]),
        "n_test": int(members.preds.shape[1]),
        "members": [
            {"name": n, "path": str(p), "cv": s, "cv_mean_of_folds": f,
             "weight": None if weights is None else weights.get(n, 0.0)}
            for n, p, (s, f) in zip(members.names, members.paths, member_scores)
        ],
        "methods": rows,
        "weights": weights,
        "class_bias": None if pick.bias is None else {c: float(b) for c, b in zip(members.classes, pick.bias)},
        "details": _jsonable(pick.info),
        "notes": list(NOTES),
        "artifacts": artifacts,
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _method_cells(row: dict) -> list[str]:
    no_bias = row.get("without_class_bias")
    cells = [row["method"] + (" (chosen)" if row["chosen"] else ""), _fmt(row["in_sample"]), _fmt(row["cv"]),
             _fmt(row["cv_mean_of_folds"])]
    if no_bias is not None:
        cells += [_fmt(no_bias["in_sample"]), _fmt(no_bias["cv"])]
    return cells + [f"{row['seconds']:.2f}"]


def _method_header(report: dict) -> list[str]:
    with_bias = report["class_bias"] is not None or any("without_class_bias" in r for r in report["methods"])
    head = ["method", "in-sample", "cross-validated", "CV mean of folds"]
    if with_bias:
        head = ["method", "in-sample (+bias)", "cross-validated (+bias)", "CV mean of folds (+bias)",
                "in-sample (no bias)", "cross-validated (no bias)"]
    return head + ["seconds"]


def _member_rows(report: dict) -> list[list[str]]:
    return [[m["name"], _fmt(m["cv"]), _fmt(m["cv_mean_of_folds"]), _fmt(m["weight"])] for m in report["members"]]


def to_markdown(report: dict) -> str:
    def table(head: list[str], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]

    lines = [f"# Blend {report['name']}", "",
             f"{report['competition']}, metric {report['metric']}, {report['n_members']} members, "
             f"{report['n_folds']} folds, {report['n_train']} OOF rows, {report['n_test']} test rows. "
             f"Chosen method: **{report['method']}**.", "", "## Members", ""]
    lines += table(["member", "CV (pooled OOF)", "CV mean of folds", "weight"], _member_rows(report))
    lines += ["", "## Methods", ""]
    lines += table(_method_header(report), [_method_cells(r) for r in report["methods"]])
    if report["class_bias"]:
        lines += ["", "## Class biases (added to log-probabilities)", ""]
        lines += table(["class", "bias"], [[c, f"{b:+.2f}"] for c, b in report["class_bias"].items()])
    if report.get("label_shift"):
        lines += ["", "## Label shift", "", report["label_shift"]["summary"]]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    lines += ["", "## Files", ""] + [f"- {k}: `{v}`" for k, v in report["artifacts"].items()]
    return "\n".join(lines) + "\n"


def to_text(report: dict) -> str:
    """Aligned plain-text tables for the terminal."""
    def table(head: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [head, *rows]]

    lines = [f"blend {report['name']}: {report['competition']}, {report['metric']}, {report['n_members']} members, "
             f"{report['n_folds']} folds", ""]
    lines += table(["member", "CV", "CV mean of folds", "weight"], _member_rows(report)) + [""]
    lines += table(_method_header(report), [_method_cells(r) for r in report["methods"]]) + [""]
    lines += ["in-sample: fitted and scored on the same OOF rows (optimistic); cross-validated: fitted on the "
              "other folds, scored on the held-out fold, pooled (used to compare)"]
    if shift := summary_line(report.get("label_shift")):
        lines += [shift]
    return "\n".join(lines)


def summary(result: BlendResult) -> str:
    """What `comptk ensemble` prints: the methods table, then the written blend's cross-validated score
    and its files."""
    return (f"{to_text(result.report)}\n\nblend {result.name} ({result.method}): CV {result.record.metric} "
            f"{result.cv:.4f} (cross-validated, pooled OOF)\nsubmission: {result.submission}\n"
            f"report: {result.report_md}")
