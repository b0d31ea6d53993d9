"""A corrected copy of a competition: the train CSV with a duplicate-group column and/or
suggested labels, and a declaration pointing at it. The original files are never touched.

    WORKDIR/inspect/NAME/derived/train.csv          the copy
    WORKDIR/inspect/NAME/derived/competition.toml   the original declaration with data_dir
                                                    absolute, [files] train = the copy,
                                                    [columns] group = "dup_group" (when grouped)

`comptk train WORKDIR/inspect/NAME/derived` then trains on it (same competition name, so
its runs sit beside the others in `comptk runs NAME`; grouped rows get their own folds file).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .. import artifacts
from ..competition import Competition
from ..data.tables import CompetitionData, read_csv
from ..config import toml_key, toml_value
from ..errors import ComptkError

GROUP_COLUMN = "dup_group"


def dump_toml(table: dict, prefix: str = "") -> str:
    """TOML text of a declaration: scalars and arrays first, then sub-tables as [a.b] sections."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}{toml_key(key)}"
            lines += ["", f"[{name}]", dump_toml(value, f"{name}.").strip("\n")]
    return "\n".join(lines) + "\n"


def group_column(train_groups: np.ndarray, declared: np.ndarray | None) -> np.ndarray:
    """One group per connected set of duplicates (and of a declared group, when there is one)."""
    n = len(train_groups)
    # nodes: the rows (0..n-1), then one node per duplicate component, then one per declared group
    codes = [n + pd.factorize(train_groups)[0]]
    if declared is not None:
        codes.append(int(codes[0].max()) + 1 + pd.factorize(declared)[0])
    rows = np.concatenate([np.arange(n)] * len(codes))
    cols = np.concatenate(codes)
    size = int(cols.max()) + 1
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    return np.array([f"g{c}" for c in component[:n]])


def write_derived(comp: Competition, data: CompetitionData, folder: Path, *, groups: np.ndarray | None = None,
                  new_labels: dict[int, str] | None = None) -> Path:
    """Write folder/train.csv and folder/competition.toml; return the declaration's path."""
    if comp.layout != "csv":
        raise ComptkError(f"competition '{comp.name}' uses the {comp.layout} layout: a corrected copy needs a train "
                          "CSV (declare the csv layout)")
    if comp.source is None:
        raise ComptkError(f"competition '{comp.name}' was not read from a declaration file")
    train_path = data.data_dir / comp.files.train
    frame = read_csv(train_path)
    if len(frame) != len(data.train.ids) or frame[comp.columns.id].tolist() != data.train.ids.tolist():
        raise ComptkError(f"{train_path}: changed while inspecting; run `comptk inspect` again")
    raw = tomllib.loads(Path(comp.source).read_text(encoding="utf-8"))
    changes = []
    if groups is not None:
        frame[GROUP_COLUMN] = groups
        raw.setdefault("columns", {})["group"] = GROUP_COLUMN
        changes.append(f"[columns] group = \"{GROUP_COLUMN}\" (duplicates share a fold)")
    if new_labels:
        label = comp.columns.label
        rows = np.fromiter(new_labels, dtype=np.int64)
        frame.loc[rows, label] = [new_labels[r] for r in rows]
        changes.append(f"{len(rows)} labels replaced by the suggested ones")
        # A [label_fixes] entry for a relabelled row would be applied again on reading and undo the suggestion.
        relabelled = set(frame.loc[rows, comp.columns.id].astype(str))
        fixes = {k: v for k, v in raw.get("label_fixes", {}).items() if k not in relabelled}
        if "label_fixes" in raw:
            raw["label_fixes"] = fixes
    raw["classes"] = list(data.classes)  # the probability columns keep their order
    raw["data_dir"] = str(data.data_dir.resolve())
    raw["files"]["train"] = str((folder / "train.csv").resolve())
    raw["description"] = (f"{raw.get('description', '')} Derived by `comptk inspect` from {comp.source}: "
                          + "; ".join(changes) + ".").strip()
    artifacts.save_csv(folder / "train.csv", frame)
    declaration = folder / "competition.toml"
    with artifacts.atomic_path(declaration) as tmp:
        tmp.write_text(f"# Written by comptk inspect; the original is {comp.source}\n" + dump_toml(raw),
                       encoding="utf-8")
    return declaration
