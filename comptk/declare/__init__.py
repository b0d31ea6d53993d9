"""``comptk init``: a competition declaration written from a contest as downloaded.

- extract.py: a contest zip extracted safely into WORKDIR/data/NAME
- detect.py: layout, files and id / image / label columns, from the files' content
- write.py: the TOML text, each guess explained in a comment

``init_competition`` runs them, measures the images (data/facts.py), fits the training recipe
(train/recipe.py), checks that the declaration loads and reads, and only then writes it.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import atomic_path
from ..competition import DECLARATION, load_competition
from ..config import TrainConfig
from ..data.facts import DataFacts, data_facts, empty_classes_note
from ..data.layouts import read_data
from ..errors import ComptkError, did_you_mean
from ..metrics import METRICS
from ..train.recipe import Recipe, device_kind, fit_recipe, obtainable_weights
from .detect import Detection, detect
from .extract import extract_contest
from .write import class_counts, declaration

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class InitResult:
    path: Path  # the declaration written
    data_dir: Path
    text: str
    summary: list[str]  # the printed summary, one guess per line


def _data_dir_text(folder: Path, workdir: Path) -> str:
    """Relative to the work directory when inside it (the declaration then moves with it), else absolute."""
    try:
        return folder.resolve().relative_to(workdir.resolve()).as_posix()
    except ValueError:
        return str(folder.resolve())


def init_competition(name: str, data: str | Path, *, workdir: str | Path = ".", metric: str | None = None,
                     force: bool = False, id_col: str | None = None, image_col: str | None = None,
                     label_col: str | None = None, train: str | None = None, test: str | None = None,
                     sample: str | None = None, device: str = "auto") -> InitResult:
    """Write WORKDIR/competitions/NAME/competition.toml for the contest in ``data`` (a folder or a .zip,
    extracted into WORKDIR/data/NAME). Never overwrites a declaration unless ``force``. The recipe in
    ``[train]`` is fitted for ``device`` (auto: this machine's)."""
    given = {"--metric": metric, "--id-col": id_col, "--image-col": image_col, "--label-col": label_col,
             "--train": train, "--test": test, "--sample-submission": sample}
    command = shlex.join(["comptk", "init", name, "--data", str(data),
                          *[part for flag, value in given.items() if value for part in (flag, value)]])

    workdir = Path(workdir)
    if not NAME.match(name):
        raise ComptkError(f"competition name '{name}': use ASCII letters (a-z, A-Z), digits, '.', '_' and '-' "
                          f"(e.g. my-contest)")
    if metric is not None and metric not in METRICS:
        raise ComptkError(f"--metric '{metric}' is not known{did_you_mean(metric, METRICS)}; "
                          f"choose one of: {', '.join(METRICS.names())}")
    target = workdir / "competitions" / name / DECLARATION
    if target.exists() and not force:
        raise ComptkError(f"{target} exists; pass --force to write it again (its edits are lost)")
    data = Path(data)
    if data.suffix.lower() == ".zip":
        folder, data_notes = extract_contest(data, workdir / "data" / name, force=force)
    elif data.is_dir():
        folder, data_notes = data, ["the folder given with --data"]
    else:
        raise ComptkError(f"--data {data}: not a folder or a .zip file")
    found = detect(folder, id_col=id_col, image_col=image_col, label_col=label_col, train=train, test=test,
                   sample=sample)
    if "data" in found.notes:
        data_notes.append(found.notes["data"])
    data_dir = _data_dir_text(found.root, workdir)
    metric_why = ("given with --metric" if metric else
                  "ASSUMED (no --metric given): check how the contest is scored; pass --metric macro_f1 if so")
    metric = metric or "accuracy"
    draft = declaration(name, metric, metric_why, found, data_dir, "; ".join(data_notes), command=command)
    with tempfile.TemporaryDirectory() as tmp:  # the draft must load and read before anything is written
        (Path(tmp) / DECLARATION).write_text(draft, encoding="utf-8")
        comp = load_competition(Path(tmp) / DECLARATION, workdir)
        facts = data_facts(read_data(comp, comp.data_path(workdir)))
    kind = device_kind(device)
    weights = obtainable_weights(kind, {}, True, facts.train.median_side)
    recipe = fit_recipe(facts, kind, True, weights)
    text = declaration(name, metric, metric_why, found, data_dir, "; ".join(data_notes), facts=facts,
                       recipe=recipe, device=kind, command=command)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
        load_competition(tmp, workdir)  # a declaration that does not load is never left in place
    return InitResult(target, found.root, text, summary(name, target, found, data_dir, data_notes, metric,
                                                       metric_why, facts, recipe, kind))


def summary(name: str, target: Path, found: Detection, data_dir: str, data_notes: list[str], metric: str,
            metric_why: str, facts: DataFacts, recipe: Recipe, device: str) -> list[str]:
    """What init found and why, one line per guess."""
    notes = found.notes
    files = ", ".join(f"{k} = {v}" for k, v in found.files.items())
    lines = [f"wrote {target}",
             f"  data      {data_dir} ({'; '.join(data_notes)})",
             f"  layout    {notes.get('layout', found.layout)}",
             f"  files     {files}"]
    for key in ("train", "test", "extra_train"):
        if key in notes:
            lines.append(f"            {notes[key]}")
    lines += [f"  id        {notes.get('id', '')}",
              f"  image     {notes.get('image', 'class folders')}",
              f"  label     {notes.get('label', 'class folder names')}",
              f"  classes   {facts.n_classes}: {class_counts(facts, 8)}; largest / smallest = {facts.imbalance:.3g}"]
    empty = empty_classes_note(facts.classes, facts.class_counts)
    if empty:
        lines.append(f"            ! {empty}")
    lines += [f"  train     {facts.train.describe()}",
              f"  test      {facts.test.describe()}"]
    crop = facts.test_crop
    lines.append(f"  test time [test_time] crop = {crop}: test images are smaller (median side ratio "
                 f"{facts.test_scale:.2f}); assumed crops, delete the table if they are downscaled pictures"
                 if crop is not None else f"  test time no crop: test / train median side = {facts.test_scale:.2f}")
    lines.append(f"  metric    {metric}: {metric_why}")
    lines.append(f"  [train]   fitted for {device}: " + ", ".join(f"{k} = {recipe.values[k]!r}" for k in recipe.values))
    for key, why in recipe.reasons.items():
        lines.append(f"            {key}: {why}")
    lines += _fix_first(facts)
    lines.append(f"next: comptk train {name}   (from the work directory; edit {target} first if a guess is wrong)")
    return lines


def _fix_first(facts: DataFacts) -> list[str]:
    """What `comptk train` would refuse in this data as declared: classes too small for the default folds, and
    unreadable images (the sample's headers: `comptk inspect` lists all)."""
    k = TrainConfig.n_folds
    lines = []
    few = sorted((n, c) for c, n in zip(facts.classes, facts.class_counts) if 0 < n < k)  # as make_folds counts
    if few:
        n, c = few[0]
        how = (f"a class of 1 image cannot be both trained on and validated: remove its row, relabel it "
               f"([label_fixes]) or add images" if n < 2 else
               f"declare [folds] n_folds = {n} or fewer, or add images")
        lines.append(f"  fix first {len(few)} class(es) with fewer images than the {k} folds, smallest '{c}' with {n}: "
                     f"{how}")
    for split in (facts.train, facts.test):
        if split.unreadable:
            lines.append(f"  fix first {split.unreadable[0]} is not a readable image"
                         f"{f' (and {len(split.unreadable) - 1} more)' if len(split.unreadable) > 1 else ''}: "
                         f"replace or remove it (`comptk inspect` lists all)")
    return lines
