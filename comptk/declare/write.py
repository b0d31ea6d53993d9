"""The declaration's TOML text, with every guess explained in a comment beside it."""

from __future__ import annotations

from typing import Any

from ..config import toml_value
from ..data.facts import DataFacts
from ..train.recipe import RECIPE_KEYS, Recipe
from .detect import Detection

COMMENT_AT = 40  # column where trailing comments start


def _line(key: str, value: Any, why: str = "") -> str:
    text = f"{key} = {toml_value(value)}"
    return f"{text.ljust(COMMENT_AT - 1)} # {why}" if why else text


def class_counts(facts: DataFacts, limit: int = 12) -> str:
    pairs = sorted(zip(facts.classes, facts.class_counts), key=lambda p: -p[1])
    shown = ", ".join(f"{c} {n}" for c, n in pairs[:limit])
    return shown + (f", ... ({len(pairs) - limit} more)" if len(pairs) > limit else "")


def declaration(name: str, metric: str, metric_why: str, detection: Detection, data_dir: str, data_why: str, *,
                facts: DataFacts | None = None, recipe: Recipe | None = None, device: str = "",
                command: str = "") -> str:
    """The competition.toml text. Without ``facts`` / ``recipe``: the draft read to measure the data."""
    files, columns, notes = detection.files, detection.columns, detection.notes
    out = [f"# Written by `{command or 'comptk init'}`: each value is a guess from the files, explained beside it.",
           "# Edit freely; `comptk init NAME --data ... --force` writes it again.",
           _line("name", name),
           _line("metric", metric, metric_why),
           _line("layout", detection.layout, notes.get("layout", "")),
           _line("data_dir", data_dir, data_why),
           "# pretrained_allowed = false          # uncomment if the rules forbid pretrained weights",
           "# pseudo_labels_allowed = true        # uncomment if the rules allow training on the test images "
           "(comptk auto then pseudo-labels)",
           "", "[files]"]
    file_why = {"train": notes.get("train", ""), "test": notes.get("test", ""),
                "extra_train": notes.get("extra_train", ""),
                "train_images": "the train image paths resolve under this folder",
                "test_images": "the test image paths resolve under this folder"}
    out += [_line(key, value, file_why.get(key, "")) for key, value in files.items()]
    column_why = {"id": notes.get("id", ""), "label": notes.get("label", ""), "image": notes.get("image", ""),
                  "image_template": notes.get("image", "")}
    if columns:
        out += ["", "[columns]"] + [_line(key, value, column_why[key]) for key, value in columns.items()]
    elif "id" in notes:
        out += ["", f"# {notes['id']}"]
    if facts is None:
        return "\n".join(out) + "\n"
    out += ["", f"# classes: {facts.n_classes} ({class_counts(facts)}); largest / smallest = {facts.imbalance:.3g}"]
    if facts.imbalance >= 5:
        out.append("#   imbalanced: consider sampler = \"weighted\" or loss = \"focal\" in [train] "
                   "(docs/own-contest.md)")
    out += [f"# train images: {facts.train.describe()}", f"# test images:  {facts.test.describe()}"]
    crop = facts.test_crop
    if crop is not None:
        out += ["", "[test_time]",
                _line("crop", crop, f"test images are smaller: median side {facts.test.median_side:.0f} px vs "
                                    f"{facts.train.median_side:.0f} px in train (ratio {facts.test_scale:.2f})"),
                "# Assumed to be crops of pictures like the train images (training then uses random crops at this",
                "# scale and validation predicts crops). If the test images are whole pictures, downscaled, delete",
                "# this table."]
    if recipe is not None:
        out += ["", f"# Fitted to these images and this machine ({device}) by comptk/train/recipe.py; set a value to",
                "# \"auto\" to fit it again when training (e.g. on a GPU machine), or write your own.", "[train]"]
        out += [_line(key, recipe.values[key], recipe.reasons[key]) for key in RECIPE_KEYS]
    return "\n".join(out) + "\n"
