"""One process at a time trains into a run's folder: the same `comptk train` started twice trains
each fold once (the second waits for the first, then resumes or finds the run finished)."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner
from tests.conftest import make_tiny

from comptk import ComptkError, artifacts, run_cv
from comptk.cli import main
from comptk.train import crossval

SETTINGS = {"n_folds": 2, "epochs": 1}
WAITING = "is being trained by another process"


@pytest.fixture
def tiny_race(tmp_path, monkeypatch):
    """A tiny competition whose first trained fold holds on until a second run_cv waits on the lock;
    returns root, the folds trained in order, start(label, **run_cv kwargs) -> thread, the outcomes
    by label and an event set once a fold started (the lock is held then)."""
    root = make_tiny(tmp_path / "tiny")
    waiting, in_fold = threading.Event(), threading.Event()
    trained: list[int] = []
    real = crossval.run_fold

    def train_fold(k, *args, **kwargs):
        in_fold.set()
        if not trained:
            assert waiting.wait(60), "the second run never waited on the lock"
        trained.append(k)
        return real(k, *args, **kwargs)

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if WAITING in record.getMessage():
                waiting.set()

    monkeypatch.setattr(crossval, "run_fold", train_fold)
    seen = Seen()
    logging.getLogger("comptk").addHandler(seen)
    outcomes: dict[str, object] = {}

    def start(label: str, **kwargs) -> threading.Thread:
        def target() -> None:
            try:
                outcomes[label] = run_cv(root, SETTINGS, workdir=root, name="same", progress=False, plots=False,
                                         **kwargs)
            except Exception as exc:  # noqa: BLE001 - the test reads it
                outcomes[label] = exc

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    yield root, trained, start, outcomes, in_fold
    logging.getLogger("comptk").removeHandler(seen)


def test_the_same_run_started_twice_trains_each_fold_once(tiny_race):
    _, trained, start, outcomes, _ = tiny_race
    first = start("first")
    second = start("second")
    first.join(120), second.join(120)
    assert sorted(trained) == [0, 1]  # each fold once, not once per process
    results = [o for o in outcomes.values() if isinstance(o, crossval.RunResult)]
    errors = [o for o in outcomes.values() if isinstance(o, ComptkError)]
    assert len(results) == 1 and not results[0].partial
    assert len(errors) == 1 and "already finished" in str(errors[0])  # the waiting one found it done


def test_a_run_waiting_on_the_lock_resumes_it_keeping_the_other_ones_folds(tiny_race):
    _, trained, start, outcomes, in_fold = tiny_race
    first = start("first", folds_subset=[0])
    assert in_fold.wait(120)  # the subset run holds the lock; the whole run then waits on it
    second = start("second")
    first.join(120), second.join(120)
    assert trained == [0, 1]  # fold 0 by the first, fold 1 by the second, which kept fold 0
    assert outcomes["first"].partial and not outcomes["second"].partial
    assert outcomes["second"].sidecar["folds_trained"] == [0, 1]


def test_comptk_train_prints_a_line_and_waits_for_another_process(tmp_path):
    root = make_tiny(tmp_path / "tiny")
    hold = ("import sys, time; from comptk import artifacts; paths = artifacts.RunPaths(sys.argv[1], 'same')\n"
            "with artifacts.run_lock(paths):\n    print('held', flush=True); time.sleep(3)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(main, ["train", str(root), "--workdir", str(root), "--name", "same", "--folds",
                                           "2", "--quiet", "--no-plots"])
    finally:
        holder.wait(30)
    assert result.exit_code == 0, result.output
    assert f"run 'same' {WAITING}" in result.output and "then this one resumes the run" in result.output
    assert artifacts.RunPaths(root, "same").is_finished()
