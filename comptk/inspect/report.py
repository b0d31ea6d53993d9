"""The self-contained HTML report: matplotlib plots and image thumbnails embedded as base64."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.images import decode_image
from ..errors import ComptkError

THUMB_PX = 64


def _png(fig) -> str:
    from ..experiments.plots import render

    buf = io.BytesIO()
    render(fig, buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _axes(width: float, height: float, n: int = 1):
    """A figure (experiments/plots.py's object API: no pyplot, no global backend) and its n axes."""
    from ..experiments.plots import new_figure

    fig = new_figure(width, height)
    axes = fig.subplots(1, n, squeeze=False)[0]
    return fig, axes


def _img(b64: str, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{b64}">'


def thumbnail(path: str | Path) -> str:
    """An image file as a small base64 PNG (a grey box when it cannot be read)."""
    from PIL import Image

    try:
        image = decode_image(Path(path))
    except ComptkError:
        image = Image.new("RGB", (THUMB_PX, THUMB_PX), (200, 200, 200))
    image.thumbnail((THUMB_PX, THUMB_PX))
    if min(image.size) < THUMB_PX // 2:  # tiny images (28 px) upscaled so they can be seen
        scale = THUMB_PX / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_class_counts(counts: pd.Series) -> str:
    fig, (ax,) = _axes(max(5, 0.35 * len(counts)), 3.2)
    ax.bar(range(len(counts)), counts.to_numpy(), color="#4c72b0")
    ax.set_xticks(range(len(counts)), [str(c) for c in counts.index], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("training images")
    ax.set_title("class counts")
    return _png(fig)


def plot_sizes(images: pd.DataFrame) -> str:
    """2-D histograms of width x height per split, and aspect-ratio histograms."""
    ok = images[images["error"] == ""]
    splits = [s for s in ("train", "test") if (ok["split"] == s).any()]
    fig, axes = _axes(4 * (len(splits) + 1), 3.4, len(splits) + 1)
    for ax, split in zip(axes, splits):
        part = ok[ok["split"] == split]
        w, h = part["width"].to_numpy(), part["height"].to_numpy()
        if np.ptp(w) == 0 and np.ptp(h) == 0:
            ax.scatter(w, h, s=40)
            ax.annotate(f"all {w[0]}x{h[0]}", (w[0], h[0]), textcoords="offset points", xytext=(5, 5))
        else:
            counts, _, _, mesh = ax.hist2d(w, h, bins=30, cmin=1, cmap="viridis")
            fig.colorbar(mesh, ax=ax)
        ax.set_xlabel("width (px)")
        ax.set_ylabel("height (px)")
        ax.set_title(f"{split}: image sizes ({len(part)})")
    ax = axes[-1]
    for split in splits:
        part = ok[ok["split"] == split]
        ax.hist(part["width"] / part["height"].clip(lower=1), bins=30, alpha=0.6, label=split, density=True)
    ax.set_xlabel("aspect ratio (width / height)")
    ax.set_title("aspect ratios")
    ax.legend()
    return _png(fig)


def plot_scores(scores: np.ndarray, fence: float | None, title: str, xlabel: str) -> str:
    fig, (ax,) = _axes(5, 3)
    ax.hist(scores[np.isfinite(scores)], bins=60, color="#55a868")
    ax.set_yscale("log")
    if fence is not None:
        ax.axvline(fence, color="red", linestyle="--", label="candidate fence")
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _png(fig)


def table_html(frame: pd.DataFrame, thumbs: dict[str, str] | None = None, max_rows: int = 50) -> str:
    """A table; columns named in ``thumbs`` (column -> path column) become thumbnails."""
    if frame.empty:
        return "<p><i>none</i></p>"
    thumbs = thumbs or {}
    shown = frame.head(max_rows)
    cols = [c for c in shown.columns if c not in thumbs.values()]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [*thumbs, *cols])
    rows = []
    for _, row in shown.iterrows():
        cells = [f"<td>{_img(thumbnail(row[src]), str(row[src]))}</td>" for src in thumbs.values()]
        for c in cols:
            value = row[c]
            text = f"{value:.4f}" if isinstance(value, float | np.floating) else str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p>{len(frame) - max_rows} more rows in the CSV.</p>" if len(frame) > max_rows else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#eee}li{margin:.2em 0}
img{image-rendering:pixelated}h2{border-bottom:1px solid #999;margin-top:1.6em}"""


def write_html(path: Path, title: str, sections: list[tuple[str, str]]) -> None:
    from .. import artifacts

    body = "".join(f"<h2>{html.escape(name)}</h2>\n{content}\n" for name, content in sections)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n")
    with artifacts.atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
