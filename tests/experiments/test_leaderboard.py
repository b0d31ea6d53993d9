"""The runs table (comptk runs), diff, partial runs (--folds-subset) and run plots, on tiny digits runs."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tests.conftest import assert_real_png

from comptk import ComptkError, artifacts, blend, prepare, run_cv
from comptk.cli import main
from comptk.experiments import leaderboard
from comptk.metrics import get_metric
from comptk.submission import score_submission

COMMON = {"n_folds": 2, "epochs": 1, "img_size": 16}


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Own work directory (the session digits one collects other tests' runs): three runs and a blend."""
    work = tmp_path_factory.mktemp("board")
    prepare("digits", work)
    a = run_cv("digits", COMMON, workdir=work, name="r_a", progress=False)
    b = run_cv("digits", {**COMMON, "lr": 0.01}, workdir=work, name="r_b", progress=False)
    run_cv("digits", {**COMMON, "lr": 0.01, "epochs": 2}, workdir=work, name="r_p", folds_subset=[1],
           progress=False)
    blend([a.paths.oof, b.paths.oof], out=work / "submissions" / "mix.csv", workdir=work, method="mean",
          compare=False)
    return work


def test_table_has_a_row_per_run_and_blend_from_the_sidecars(board):
    table = leaderboard.collect(board)
    assert sorted(table["name"]) == ["mix", "r_a", "r_b", "r_p"]
    assert list(table.columns[: len(leaderboard.COLUMNS)]) == list(leaderboard.COLUMNS)
    answers = board / "data/digits/answers.csv"
    for name in ("r_a", "r_b", "r_p"):
        row = table.set_index("name").loc[name]
        meta = json.loads(artifacts.RunPaths(board, name).sidecar.read_text())
        assert row["cv"] == meta["cv"]["oof"] and row["model"] == "small_resnet" and row["img_size"] == 16
        assert row["cv_folds"].split() == [f"{s:.4f}" for s in meta["cv"]["per_fold"]]
        assert row["test"] == pytest.approx(score_submission(artifacts.RunPaths(board, name).submission, answers,
                                                             "macro_f1"))
        assert row["train_s"] > 0 and row["img_s"] > 0 and row["date"].startswith("20")
    rows = table.set_index("name")
    assert rows.loc["r_a", "folds"] == "2" and rows.loc["r_p", "folds"] == "1/2" and rows.loc["r_p", "partial"]
    assert rows.loc["r_a", "blends"] == "mix" and rows.loc["r_b", "blends"] == "mix" and rows.loc["r_p", "blends"] == ""
    assert rows.loc["mix", "kind"] == "blend" and rows.loc["mix", "model"] == "blend:mean"
    assert rows.loc["mix", "members"] == "r_a,r_b"
    assert list(table["cv"]) == sorted(table["cv"], reverse=True)  # best CV first


def test_sort_filter_and_top(board):
    table = leaderboard.collect(board)
    assert set(leaderboard.select(table, where=["lr=0.01"])["name"]) == {"r_b", "r_p"}
    assert set(leaderboard.select(table, where=["kind=run", "epochs>1"])["name"]) == {"r_p"}
    assert set(leaderboard.select(table, where=["partial=true"])["name"]) == {"r_p"}
    assert set(leaderboard.select(table, where=["model!=small_resnet"])["name"]) == {"mix"}
    by_time = leaderboard.select(table, where=["kind=run"], sort="train_s")
    assert list(by_time["train_s"]) == sorted(by_time["train_s"])
    assert leaderboard.select(table, sort="train_s", reverse=True)["name"].iloc[0] == by_time["name"].iloc[-1]
    top = leaderboard.select(table, top=1)
    assert len(top) == 1 and top["cv"].iloc[0] == table["cv"].max()
    for bad, message in ((["lrr=1"], "no column 'lrr' (did you mean 'lr'?)"), (["model>3"], "not numbers"),
                         (["model"], "expected KEY=VALUE")):
        with pytest.raises(ComptkError, match=re.escape(message)):
            leaderboard.select(table, where=bad)
    with pytest.raises(ComptkError, match="did you mean 'train_s'"):
        leaderboard.select(table, sort="train_ss")


def test_cli_runs_prints_the_filtered_table_and_writes_csv(board, tmp_path):
    out = tmp_path / "table.csv"
    result = invoke("runs", "digits", "--workdir", board, "--where", "kind=run", "--sort", "cv", "--csv", out)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["name", "competition", "model"]
    table = leaderboard.select(leaderboard.collect(board), where=["kind=run"])
    assert [line.split()[0] for line in lines[1:4]] == list(table["name"])
    saved = pd.read_csv(out)
    assert list(saved["name"]) == list(table["name"]) and "lr" in saved.columns
    assert invoke("runs", "--workdir", board, "--top", "2", "--columns", "name,cv").output.count("\n") == 3
    wrong = invoke("runs", "digitz", "--workdir", board)
    assert wrong.exit_code == 2 and "did you mean 'digits'" in wrong.output


def test_old_or_broken_sidecars_do_not_break_the_table(tmp_path):
    artifacts.save_json(artifacts.RunPaths(tmp_path, "old").sidecar, {"competition": "digits", "cv": {"oof": 0.5}})
    artifacts.save_json(artifacts.RunPaths(tmp_path, "bare").sidecar, {})
    (tmp_path / "oof" / "broken.json").write_text("{not json")
    table = leaderboard.collect(tmp_path)
    assert list(table["name"]) == ["old", "bare"]
    text = leaderboard.to_text(table)
    assert "old" in text and "0.5000" in text and "-" in text
    assert leaderboard.to_text(leaderboard.collect(tmp_path / "empty")) == "no finished runs"


def test_diff_lists_the_settings_that_differ(board):
    rows = {key: (a, b) for key, a, b in leaderboard.diff(board, "r_a", "r_b")}
    assert rows == {"config.lr": (0.003, 0.01)}
    rows = {key: (a, b) for key, a, b in leaderboard.diff(board, "r_a", "r_p")}
    assert rows["config.epochs"] == (1, 2) and rows["folds_trained"] == ([0, 1], [1])
    result = invoke("runs", "--workdir", board, "--diff", "r_a", "r_b")
    assert result.exit_code == 0 and result.output.split("\n")[1].split() == ["config.lr", "0.003", "0.01"]
    assert "same settings" in invoke("runs", "--workdir", board, "--diff", "r_a", "r_a").output
    wrong = invoke("runs", "--workdir", board, "--diff", "r_a", "r_c")
    assert wrong.exit_code == 2 and "no finished run 'r_c'" in wrong.output


def test_partial_run_is_marked_nan_outside_its_folds_and_cannot_be_blended(board):
    paths = artifacts.RunPaths(board, "r_p")
    meta = json.loads(paths.sidecar.read_text())
    assert meta["folds_trained"] == [1] and meta["partial"] is True and meta["n_folds"] == 2
    fold = pd.read_csv(meta["folds_file"])["fold"].to_numpy()
    oof = np.load(paths.oof)
    assert np.isnan(oof[fold == 0]).all() and np.isfinite(oof[fold == 1]).all()
    y = pd.read_csv(board / "data/digits/train.csv", dtype=str)["label"].astype(int).to_numpy()
    assert meta["cv"]["oof"] == pytest.approx(get_metric("macro_f1").score_proba(y[fold == 1], oof[fold == 1]))
    assert meta["cv"]["n_rows"] == int((fold == 1).sum()) and not paths.fold_dir(0).exists()
    with pytest.raises(ComptkError, match="r_p' is partial .*folds 1 of 2"):
        blend([artifacts.RunPaths(board, "r_a").oof, paths.oof], out=board / "submissions" / "x.csv", workdir=board)
    assert not (board / "submissions" / "x.csv").exists()


def test_partial_run_trains_its_other_folds_later(board, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(board, work)
    paths = artifacts.RunPaths(work, "r_p")
    again = {**COMMON, "epochs": 2, "lr": 0.01}
    with pytest.raises(ComptkError, match="already trained folds 1 of 2"):
        run_cv("digits", again, workdir=work, name="r_p", folds_subset=[1], progress=False)
    for bad, message in (([2], "fold 2 does not exist; folds are 0..1"), ([0, 0], "given twice"),
                         ([], "at least one")):
        with pytest.raises(ComptkError, match=message):
            run_cv("digits", again, workdir=work, name="new", folds_subset=bad, progress=False)
    assert not artifacts.RunPaths(work, "new").run_dir.exists()
    fold1 = paths.checkpoint(1).stat().st_mtime_ns
    result = run_cv("digits", again, workdir=work, name="r_p", progress=False)
    assert not result.partial and result.sidecar["folds_trained"] == [0, 1]
    assert paths.checkpoint(1).stat().st_mtime_ns == fold1  # kept, not retrained
    assert np.isfinite(np.load(paths.oof)).all()
    with pytest.raises(ComptkError, match="already finished"):
        run_cv("digits", again, workdir=work, name="r_p", progress=False)


def test_every_run_gets_its_plots_and_comptk_plots_remakes_them(board):
    for name in ("r_a", "r_p"):
        paths = artifacts.RunPaths(board, name)
        for png in (paths.plot_learning_curves, paths.plot_confusion, paths.plot_per_class_f1):
            assert_real_png(png)
    paths = artifacts.RunPaths(board, "r_a")
    paths.plot_confusion.unlink()
    result = invoke("plots", "r_a", "--workdir", board)
    assert result.exit_code == 0, result.output
    assert str(paths.plot_confusion) in result.output
    assert_real_png(paths.plot_confusion)
    for name, message in (("mix", "is a blend"), ("r_x", "no finished run 'r_x'")):
        wrong = invoke("plots", name, "--workdir", board)
        assert wrong.exit_code == 2 and message in wrong.output
    # a run whose classes are not the data's (a class declared since, or dropped): refused, not a traceback
    record = json.loads(paths.sidecar.read_text())
    other = artifacts.RunPaths(board, "r_other")
    other.sidecar.write_text(json.dumps({**record, "name": "r_other", "classes": [*record["classes"], "extra"]}))
    try:
        wrong = invoke("plots", "r_other", "--workdir", board)
        assert wrong.exit_code == 2 and "its classes differ from those run 'r_other' was trained on" in wrong.output
    finally:
        other.sidecar.unlink()
