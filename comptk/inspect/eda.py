"""The data report's facts: class counts, image sizes, modes, formats, unreadable files,
and how the test images differ from the train images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.facts import empty_classes_note
from .scan import Scan


@dataclass(frozen=True)
class DataFacts:
    images: pd.DataFrame  # one row per image: split, id, path, label, format, mode, width, height, bytes, grey, error
    class_counts: pd.Series  # train rows per class, in class order
    findings: list[str] = field(default_factory=list)  # one line each, the things to look at

    def split(self, name: str) -> pd.DataFrame:
        return self.images[self.images["split"] == name]


def image_table(scan: Scan, ids: np.ndarray, paths: list, splits: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "split": splits, "id": ids, "path": [str(p) for p in paths], "label": labels,
        "format": scan.format, "mode": scan.mode, "width": scan.width, "height": scan.height,
        "bytes": scan.file_bytes, "grey": scan.grey, "error": scan.error,
    })


def _size_text(frame: pd.DataFrame) -> str:
    return f"{int(frame['width'].median())}x{int(frame['height'].median())}"


def describe(images: pd.DataFrame, classes: tuple[str, ...]) -> DataFacts:
    """Counts and the findings worth a line in the summary."""
    train = images[images["split"] == "train"]
    counts = train["label"].value_counts().reindex(list(classes), fill_value=0)
    findings: list[str] = []
    bad = images[images["error"] != ""]
    if len(bad):
        first = bad.iloc[0]
        findings.append(f"{len(bad)} unreadable image(s), e.g. {first['split']} id '{first['id']}': {first['error']}")
    present = counts[counts > 0]
    if len(present) and present.max() >= 3 * present.min():
        findings.append(f"imbalanced classes: '{present.idxmax()}' has {present.max()} images, "
                        f"'{present.idxmin()}' {present.min()} ({present.max() / present.min():.1f}x)")
    empty = empty_classes_note(list(counts.index), list(counts))
    if empty:
        findings.append(empty)
    ok = images[images["error"] == ""]
    grey = ok["grey"].mean() if len(ok) else 0.0
    if 0 < grey < 1:
        by_split = ", ".join(f"{s} {int(g.sum())}/{len(g)}" for s, g in ok.groupby("split")["grey"])
        findings.append(f"mixed colour modes: grey images among colour ones ({by_split} grey)")
    formats = ok["format"].value_counts()
    if len(formats) > 1:
        findings.append("several file formats: " + ", ".join(f"{f} {n}" for f, n in formats.items()))
    okt, oks = ok[ok["split"] == "train"], ok[ok["split"] == "test"]
    if len(okt) and len(oks):
        area_train = float((okt["width"] * okt["height"]).median())
        area_test = float((oks["width"] * oks["height"]).median())
        ratio = np.sqrt(area_test / max(area_train, 1))
        if not 0.8 <= ratio <= 1.25:
            findings.append(f"test images are {'smaller' if ratio < 1 else 'larger'} than train images: median "
                            f"{_size_text(oks)} vs {_size_text(okt)} (sides x{ratio:.2f}); if they are crops, "
                            f"declare [test_time] crop = {ratio:.2f}")
    if len(ok) and ok[["width", "height"]].drop_duplicates().shape[0] > 1:
        findings.append(f"varied image sizes: width {ok['width'].min()}..{ok['width'].max()}, "
                        f"height {ok['height'].min()}..{ok['height'].max()}")
    return DataFacts(images, counts, findings)
