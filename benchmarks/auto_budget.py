"""`comptk auto` against its budget targets: test score, CV and wall time, and the gain of each part.

    python benchmarks/auto_budget.py --workdir bench/auto12k --train-n 12000 --budget 15m
    python benchmarks/auto_budget.py --workdir bench/auto60k --budget 30m            # all 60,000 images
    python benchmarks/auto_budget.py --workdir bench/autolt --competition fashion-lt --budget 15m
    python benchmarks/auto_budget.py --workdir bench/autolt --competition fashion-lt --budget 15m --label-shift em

Prepares the competition (Fashion-MNIST from `comptk prepare`, all test images), runs
`comptk auto` in a fresh process, prints its plan and output, scores the submission with
`comptk score`, and splits the gain: the best single member, the mean of each family's seeds
(seed average) and the blend of families (what auto wrote). With ``--label-shift em`` it also scores the
blend's test probabilities before the prior correction (preds/NAME.npy) beside the corrected submission.
Time nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from comptk import load_competition
from comptk.metrics import get_metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench/auto")
    parser.add_argument("--competition", default="fashion")
    parser.add_argument("--train-n", type=int, default=None)
    parser.add_argument("--budget", default="15m")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--name", default=None)
    parser.add_argument("--label-shift", default="none", choices=("none", "em"))
    parser.add_argument("--pseudo-labels", default="declared", choices=("declared", "on", "off"),
                        help="comptk auto --pseudo-labels / --no-pseudo-labels, or as the declaration says")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="passed on to comptk auto (repeatable)")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    data = workdir / "data" / args.competition
    if not data.exists():
        extra = ["--train-n", str(args.train_n)] if args.train_n else []
        subprocess.run([sys.executable, "-m", "comptk", "prepare", args.competition, "--workdir", str(workdir),
                        *extra], check=True)
    name = args.name or f"auto-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "comptk", "auto", args.competition, "--workdir", str(workdir),
                           "--budget", args.budget, "--preset", args.preset, "--name", name,
                           "--label-shift", args.label_shift,
                           *{"on": ["--pseudo-labels"], "off": ["--no-pseudo-labels"]}.get(args.pseudo_labels, []),
                           *[arg for kv in args.settings for arg in ("--set", kv)]],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    print(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"comptk auto failed (exit {proc.returncode})")
    comp = load_competition(args.competition, workdir)
    metric = get_metric(comp.metric)
    answers = pd.read_csv(data / "answers.csv", dtype=str)
    test_ids = pd.read_csv(data / "test.csv", dtype=str)["id"]
    classes = list(comp.classes)
    y = answers.set_index("id").loc[test_ids, "label"].map(classes.index).to_numpy()

    def test_score(proba: np.ndarray) -> float:
        return metric.score_proba(y, proba)

    plan = json.loads((workdir / "auto" / name / "plan.json").read_text())
    members = [m["member"] for m in plan["members"] if m["status"] == "trained"]
    print(f"wall time of `comptk auto`: {wall:.1f} s against a budget of {args.budget}")
    rows = []
    for m in members:
        side = json.loads((workdir / "oof" / f"{m['name']}.json").read_text())
        preds = np.load(workdir / "preds" / f"{m['name']}.npy")
        rows.append((m["name"], m["model"], side["cv"]["oof"], test_score(preds), preds))
        print(f"member {m['name']}: CV {side['cv']['oof']:.4f}, test {rows[-1][3]:.4f}")
    best = max(rows, key=lambda r: r[2])
    print(f"best single member (by CV): {best[0]}: test {comp.metric} {best[3]:.4f}")
    for family in sorted({r[1] for r in rows}):
        same = [r for r in rows if r[1] == family]
        if len(same) > 1:
            print(f"seed average of {family} ({len(same)} seeds): test {test_score(np.mean([r[4] for r in same], 0)):.4f}")
    blend = json.loads((workdir / "oof" / f"{name}.json").read_text()) if (workdir / "oof" / f"{name}.json").exists() else None
    written = [line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("submission: ")]
    submission = written[-1] if written else str(workdir / "submissions" / f"{name}.csv")  # one member: its own
    score = subprocess.run([sys.executable, "-m", "comptk", "score", submission,
                            "--answers", str(data / "answers.csv"), "--metric", comp.metric],
                           capture_output=True, text=True)
    print(f"blend ({blend['config']['method'] if blend else 'single member'}): CV "
          f"{blend['cv']['oof'] if blend else best[2]:.4f}; test (comptk score): {score.stdout.strip()}")
    if blend and args.label_shift != "none":
        print(f"blend before the label-shift correction (preds/{name}.npy): test "
              f"{test_score(np.load(workdir / 'preds' / f'{name}.npy')):.4f}; "
              f"estimate: {(blend.get('label_shift') or {}).get('summary', 'none recorded')}")


if __name__ == "__main__":
    main()
