"""PNG plots of a run: learning curves per fold, the OOF confusion matrix, per-class F1; a sweep's scatter.

matplotlib is imported here only, and only through its object API with the Agg canvas: no pyplot,
no global backend switch (a notebook's backend is left alone). Files are written atomically.

    write_run_plots(paths, sidecar, y_true)   # called at the end of run_cv
    plot_run("RUN", workdir)                  # (re)make them for an existing run: `comptk plots RUN`
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score

from .. import artifacts
from ..errors import ComptkError


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def render(fig, target, **kwargs) -> None:
    """fig.savefig, quiet about glyphs the font lacks (Korean or Chinese class names with matplotlib's default
    font): they show as boxes in the plot, and a warning per glyph would bury the run's output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.savefig(target, **kwargs)


def _save(fig, path: Path) -> Path:
    with artifacts.atomic_path(path) as tmp:
        render(fig, tmp, format="png")
    return path


def learning_curves(histories: dict[int, pd.DataFrame], metric: str, title: str, path: Path) -> Path:
    """Loss (train solid, valid dashed) and the validation metric per epoch, one colour per fold."""
    fig = new_figure(10, 4)
    loss_ax, metric_ax = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(histories))]
    for colour, (k, frame) in zip(colours, sorted(histories.items())):
        epochs = frame["epoch"]
        if "train_loss" in frame:
            loss_ax.plot(epochs, frame["train_loss"], "-o", color=colour, ms=3, label=f"fold {k} train")
        if "valid_loss" in frame:
            loss_ax.plot(epochs, frame["valid_loss"], "--s", color=colour, ms=3, label=f"fold {k} valid")
        column = f"valid_{metric}" if f"valid_{metric}" in frame else None
        if column:
            metric_ax.plot(epochs, frame[column], "-o", color=colour, ms=3, label=f"fold {k}")
    loss_ax.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    metric_ax.set(title=f"validation {metric} (no TTA)", xlabel="epoch", ylabel=metric)
    from matplotlib.ticker import MaxNLocator

    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (each true class sums to 1), class names on both axes."""
    n = len(classes)
    counts = confusion_matrix(y_true, y_pred, labels=np.arange(n))
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(max(4.0, 0.35 * n + 2), 24.0)
    fig = new_figure(side + 1, side)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    ticks = np.arange(n)
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=90 if n > 10 else 0, fontsize=8)
    ax.set_yticks(ticks, [str(c) for c in classes], fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    return _save(fig, path)


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """F1 of each class (one-vs-rest on the OOF rows), with the macro mean as a line."""
    n = len(classes)
    scores = f1_score(y_true, y_pred, labels=np.arange(n), average=None, zero_division=0)
    fig = new_figure(8, min(max(3.0, 0.25 * n + 1.5), 30.0))
    ax = fig.subplots()
    positions = np.arange(n)
    ax.barh(positions, scores, color="C0")
    ax.axvline(scores.mean(), color="C3", ls="--", label=f"macro F1 {scores.mean():.4f}")
    ax.set_yticks(positions, [str(c) for c in classes], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="F1 (OOF)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def write_run_plots(paths: artifacts.RunPaths, record: artifacts.RunRecord, y_true: np.ndarray) -> list[Path]:
    """The three plots of a finished run; ``y_true``: train labels in the record's class order."""
    classes = list(record.classes)
    trained = record.trained_folds
    oof = np.load(paths.oof)
    rows = np.isfinite(oof).all(axis=1)  # a partial run's untrained folds are NaN
    cv = record.cv.oof if record.cv else None
    title = f"{paths.name}: OOF {record.metric} {cv:.4f}" if cv is not None else paths.name
    if record.is_partial:
        title += f" (folds {', '.join(map(str, trained))} of {record.n_folds})"
    histories = {k: pd.read_csv(paths.fold_metrics(k)) for k in trained if paths.fold_metrics(k).is_file()}
    written = [learning_curves(histories, record.metric, paths.name, paths.plot_learning_curves)]
    y, pred = np.asarray(y_true)[rows], oof[rows].argmax(axis=1)
    written.append(confusion(y, pred, classes, title, paths.plot_confusion))
    written.append(per_class_f1(y, pred, classes, title, paths.plot_per_class_f1))
    return written


def plot_run(name: str, workdir: str | Path = ".") -> list[Path]:
    """(Re)make the plots of an existing training run from its files and its data's labels."""
    from ..competition import load_competition
    from ..data.folds import same_labels
    from ..data.layouts import read_data

    paths = artifacts.RunPaths(Path(workdir), artifacts.check_run_name(name))
    if not paths.sidecar.is_file():
        from ..errors import did_you_mean

        raise ComptkError(f"no finished run '{name}' in {Path(workdir) / 'oof'}"
                          f"{did_you_mean(name, artifacts.run_names(workdir))}")
    record = artifacts.read_record(paths.sidecar)
    if record.is_blend:
        raise ComptkError(f"'{name}' is a blend; plots are made for training runs (see its report "
                          f"{record.artifacts.get('report_md', '')})")
    record.require(paths.sidecar, ("competition", "classes", "train_ids_digest", "metric", "data_dir"))
    declaration = record.competition_file
    comp = load_competition(declaration if declaration and Path(declaration).is_file() else record.competition,
                            workdir)
    data = read_data(comp, Path(record.data_dir))
    if artifacts.digest(data.train.ids) != record.train_ids_digest:
        raise ComptkError(f"{record.data_dir}: train rows changed since run '{name}' was trained")
    if record.train_labels_digest and not same_labels(record.train_labels_digest, record.classes, data.train,
                                                      data.classes):
        raise ComptkError(f"{record.data_dir}: train labels changed since run '{name}' was trained "
                          "(train_labels_digest); its plots would score its OOF against other labels")
    if sorted(record.classes) != sorted(data.classes):
        raise ComptkError(f"{record.data_dir}: its classes differ from those run '{name}' was trained on "
                          f"({', '.join(record.classes)}); its plots would score its OOF against other classes")
    order = [data.classes.index(c) for c in record.classes]
    y = np.argsort(order)[data.train.labels]  # data's class index -> the run's column
    return write_run_plots(paths, record, y)


def sweep_scatter(table: pd.DataFrame, title: str, path: Path) -> Path:
    """CV against training time, one labelled point per run (partial runs hollow)."""
    fig = new_figure(8, 5)
    ax = fig.subplots()
    frame = table.dropna(subset=["cv", "train_s"])
    for _, row in frame.iterrows():
        partial = bool(row.get("partial", False))
        ax.scatter(row["train_s"], row["cv"], s=40, facecolors="none" if partial else "C0", edgecolors="C0")
        ax.annotate(str(row["name"]), (row["train_s"], row["cv"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    if len(frame) and frame["train_s"].max() > 10 * max(frame["train_s"].min(), 1e-9):
        ax.set_xscale("log")
    metric = str(frame["metric"].iloc[0]) if len(frame) and "metric" in frame else "CV"
    if len(frame) and frame.get("partial", pd.Series(dtype=bool)).astype(bool).any():
        title += " (hollow: partial runs, their trained folds only)"
    ax.set(xlabel="training time (s, all trained folds)", ylabel=f"CV {metric} (pooled OOF)", title=title)
    ax.margins(0.2)
    ax.grid(alpha=0.3)
    return _save(fig, path)
