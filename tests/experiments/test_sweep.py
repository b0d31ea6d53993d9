"""Sweeps over two tiny models (--folds-subset 0), their resume and scatter plot; trackers; plot failures."""

from __future__ import annotations

import importlib.util
import json
import logging

import pytest
from click.testing import CliRunner
from tests.conftest import assert_real_png

from comptk import ComptkError, artifacts, prepare, run_cv
from comptk.cli import main
from comptk.experiments.sweep import parse_values, run_name, settings, sweep
from comptk.experiments.trackers import Tracker, open_tracker

FIXED = {"n_folds": 2, "epochs": 1, "img_size": 16, "batch_size": 128}
GRID = {"model": ["small_resnet", "test_resnet"]}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep")
    prepare("digits", work)
    return work, sweep("digits", GRID, name="sw", workdir=work, folds_subset=[0], progress=False, **FIXED)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    work = tmp_path_factory.mktemp("bare")
    prepare("digits", work)
    return work


def test_sweep_runs_each_setting_as_a_partial_run_and_writes_table_and_plot(swept):
    work, result = swept
    assert result.run_names == ("sw-small_resnet", "sw-test_resnet")
    assert sorted(result.table["name"]) == sorted(result.run_names)
    for name in result.run_names:
        meta = json.loads(artifacts.RunPaths(work, name).sidecar.read_text())
        assert meta["folds_trained"] == [0] and meta["config"]["model"] == name.split("-", 1)[1]
        assert meta["config"]["epochs"] == 1 and meta["config"]["img_size"] == 16
        row = result.table.set_index("name").loc[name]
        assert row["cv"] == meta["cv"]["oof"] and row["folds"] == "1/2" and row["train_s"] > 0
    assert result.plot == artifacts.SweepPaths(work, "sw").plot
    assert_real_png(result.plot)
    saved = json.loads(result.paths.spec.read_text())
    assert saved["grid"] == GRID and saved["runs"] == list(result.run_names) and saved["folds_subset"] == [0]


def test_rerunning_a_sweep_keeps_its_finished_runs(swept):
    work, result = swept
    stamps = {n: artifacts.RunPaths(work, n).sidecar.stat().st_mtime_ns for n in result.run_names}
    out = CliRunner().invoke(main, ["sweep", "digits", "--name", "sw", "--workdir", str(work), "--models",
                                    "small_resnet,test_resnet", "--folds", "2", "--epochs", "1", "--img-size", "16",
                                    "--batch-size", "128", "--folds-subset", "0", "--quiet"])
    assert out.exit_code == 0, out.output
    assert "finished earlier, kept" in out.output and "sw-test_resnet" in out.output and "plot:" in out.output
    assert {n: artifacts.RunPaths(work, n).sidecar.stat().st_mtime_ns for n in result.run_names} == stamps


def test_a_sweep_name_reused_with_another_grid_or_settings_is_refused(swept):
    work, _ = swept
    with pytest.raises(ComptkError, match="exists .* with another grid"):
        sweep("digits", {"model": ["small_resnet"]}, name="sw", workdir=work, folds_subset=[0], **FIXED)
    with pytest.raises(ComptkError, match=r"other settings: epochs \(1 -> 2\)"):
        sweep("digits", GRID, name="sw", workdir=work, folds_subset=[0], **{**FIXED, "epochs": 2})


@pytest.mark.parametrize("grid, fixed, message", [
    ({"model": ["small_resnet", "resnet181"]}, {}, "unknown model 'resnet181'"),
    ({"lr": [0.01, -1.0]}, {}, "setting 'lr' must be > 0"),
    ({"lrate": [0.1]}, {}, "unknown setting 'lrate'"),
    ({"model": []}, {}, "non-empty list"),
    ({"lr": [0.1, 0.2]}, {"lr": 0.3}, "both as a list and as a fixed setting"),
])
def test_bad_sweeps_fail_before_anything_trains(bare, grid, fixed, message):
    with pytest.raises(ComptkError, match=message):
        sweep("digits", grid, name="bad", workdir=bare, **{**FIXED, **fixed})
    assert not (bare / "runs").exists() and not (bare / "sweeps").exists() and not (bare / "folds").exists()


def test_grid_values_are_typed_and_names_derived():
    assert parse_values("lr", "1e-3, 3e-3") == [0.001, 0.003]
    assert parse_values("img_size", "16,28") == [16, 28] and parse_values("pretrained", "true,false") == [True, False]
    for key, text, message in (("img_size", "16,x", "'x' is not a int"), ("lr", "0.1,,0.2", "empty value"),
                               ("lr", "0.1,0.1", "given twice"), ("lrr", "1", "unknown setting 'lrr'")):
        with pytest.raises(ComptkError, match=message):
            parse_values(key, text)
    grid = {"model": ["a", "b"], "lr": [0.001, 0.003], "img_size": [16]}
    combos = settings(grid)
    assert len(combos) == 4 and combos[1] == {"model": "a", "lr": 0.003, "img_size": 16}
    assert run_name("sw", combos[1], ["model", "lr"], "a") == "sw-a-lr0.003"
    assert run_name("sw", {"model": "hf-hub:x/y"}, [], "hf-hub:x/y") == "sw-hf-hub-x-y"


# ---------------------------------------------------------------- trackers and plot failures on a tiny run

class Recorder(Tracker):
    kind = "recorder"

    def __init__(self, fail_on: str = "") -> None:
        super().__init__()
        self.calls, self.fail_on = [], fail_on

    def _start(self, run_name, competition, params):
        self.calls.append(("start", run_name, params["lr"]))

    def _log_epoch(self, fold, record):
        if self.fail_on == "log":
            raise ConnectionError("server gone")
        self.calls.append(("epoch", fold, record["epoch"], record["train_loss"]))

    def _finish(self, record, artifacts):
        self.calls.append(("finish", record.cv.oof, sorted(p.name for p in artifacts)))


def test_tracker_gets_params_epochs_cv_and_artifacts(tiny, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr("comptk.train.preflight.open_tracker", lambda kind, workdir: recorder)
    result = run_cv(tiny, {"n_folds": 2, "epochs": 2, "lr": 0.002}, workdir=tiny, name="t", progress=False)
    assert recorder.calls[0] == ("start", "t", 0.002)
    assert [c[1:3] for c in recorder.calls if c[0] == "epoch"] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert recorder.calls[-1] == ("finish", result.cv, ["confusion_matrix.png", "learning_curves.png",
                                                        "metrics.csv", "per_class_f1.png", "t.csv", "t.json"])


def test_a_failing_tracker_or_plot_never_costs_the_run(tiny, monkeypatch, caplog):
    monkeypatch.setattr("comptk.train.preflight.open_tracker", lambda kind, workdir: Recorder(fail_on="log"))

    def broken(*args, **kwargs):
        raise MemoryError("no memory for figures")

    monkeypatch.setattr("comptk.experiments.plots.write_run_plots", broken)
    with caplog.at_level(logging.WARNING, logger="comptk"):
        result = run_cv(tiny, {"n_folds": 2, "epochs": 1}, workdir=tiny, name="t", progress=False)
    assert result.paths.sidecar.is_file() and result.paths.submission.is_file()
    assert not result.paths.plot_confusion.exists()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "tracker recorder: log failed (ConnectionError: server gone)" in messages
    assert "plots not written (MemoryError" in messages


@pytest.mark.parametrize("kind", ["mlflow", "wandb"])
def test_tracker_not_installed_is_one_line_before_training(tiny, monkeypatch, kind):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == kind else real(name, *a))
    with pytest.raises(ComptkError, match=f"the '{kind}' package is not installed"):
        open_tracker(kind)
    result = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--quiet", "--tracker", kind])
    assert result.exit_code == 2 and f"--tracker {kind}: the '{kind}' package is not installed" in result.output
    assert not (tiny / "runs").exists() and not (tiny / "oof").exists()
    with pytest.raises(ComptkError, match="must be one of none, mlflow, wandb"):
        open_tracker("mlfow")


def test_mlflow_gets_params_metrics_per_epoch_and_files_in_the_workdir(tiny, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_cv(tiny, {"n_folds": 2, "epochs": 2}, workdir=tiny, name="ml", progress=False, tracker="mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{tiny / 'mlflow.db'}")
    found = mlflow.search_runs(experiment_names=["tiny"])
    assert list(found["tags.mlflow.runName"]) == ["ml"] and list(found["status"]) == ["FINISHED"]
    assert found["params.lr"][0] == str(result.sidecar["config"]["lr"])
    assert found["metrics.cv"][0] == pytest.approx(result.cv)
    client = mlflow.MlflowClient()
    history = client.get_metric_history(found["run_id"][0], "fold1_train_loss")
    assert len(history) == 2  # one point per epoch
    files = {a.path for a in client.list_artifacts(found["run_id"][0])}
    assert {"ml.json", "ml.csv", "confusion_matrix.png"} <= files
    assert (tiny / "mlartifacts").is_dir()


def test_wandb_logs_offline_into_the_workdir(tiny, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the tracker's default: offline, no server, no account
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_cv(tiny, {"n_folds": 2, "epochs": 2}, workdir=tiny, name="wb", progress=False, tracker="wandb")
    runs_dirs = list((tiny / "wandb").glob("offline-run-*"))
    assert len(runs_dirs) == 1
    # offline wandb keeps the run in one binary log (synced later by `wandb sync`): look for what we logged
    logged = b"".join(p.read_bytes() for p in runs_dirs[0].glob("run-*.wandb"))
    for key in (b"fold0/train_loss", b"fold1/valid_accuracy", b"cv_fold1", b"cv_mean_of_folds", b"wb-files"):
        assert key in logged, key
