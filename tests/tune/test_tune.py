"""comptk tune: studies on a tiny competition (real training) and crafted objectives (fake fold
trainers that report chosen curves), resume, pruning, failures, shared storage, hand-off to train."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from tests.conftest import make_tiny
from optuna.trial import TrialState

from comptk.cli import main
from comptk.competition import load_competition
from comptk.config import TrainConfig
from comptk.errors import ComptkError
from comptk.tune import load_study, tune
from comptk.tune.space import build_space, default_space

REPO = Path(__file__).resolve().parents[2]
FAST = ("--set", "epochs=1", "--set", "model=small_resnet", "--set", "n_folds=2")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def tiny(tmp_path):
    return make_tiny(tmp_path / "tiny")


def with_space(root: Path, space: str) -> Path:
    (root / "competition.toml").write_text((root / "competition.toml").read_text() + space)
    return root


def fake_fit(score_of, *, fail_if=None, interrupt_at=None):
    """A fold trainer with a crafted learning curve: the score after epoch e is score_of(cfg) * e / epochs."""
    calls = []

    def fit(k, data, cfg, fold, images, device, *, on_epoch=None, progress=False):
        calls.append(cfg)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        if fail_if is not None and fail_if(cfg):
            raise RuntimeError("CUDA out of memory (crafted)")
        final = score_of(cfg) - 0.01 * k
        for epoch in range(1, cfg.epochs + 1):
            on_epoch({"epoch": epoch, "valid_accuracy": final * epoch / cfg.epochs})
        return None, SimpleNamespace(best_score=final)

    fit.calls = calls
    return fit


def lr_quality(cfg) -> float:
    """Best at lr = 1e-2, worse the further away (log scale)."""
    return max(0.0, 1.0 - abs(math.log10(cfg.lr) + 2) / 3)


LR_ONLY = '\n[tune]\nreplace = true\n[tune.space]\nlr = { low = 1e-5, high = 1.0, log = true }\nepochs = 6\n'


# --- the space -------------------------------------------------------------------------------

def test_default_space_follows_the_competition_defaults():
    space = default_space(TrainConfig(img_size=28, epochs=12, batch_size=128))
    assert space["model"].choices[0] == "small_resnet"
    assert space["img_size"].choices == (20, 28, 32)
    assert (space["epochs"].low, space["epochs"].high) == (6, 18)
    assert space["lr"].log and space["lr"].low < space["lr"].high
    big = default_space(TrainConfig(img_size=224, model="efficientnet_b0", pretrained=True))
    assert "small_resnet" not in big["model"].choices


def test_declaration_narrows_pins_drops_and_replaces(tiny):
    with_space(tiny, '\n[tune.space]\nlr = { low = 1e-3, high = 1e-2, log = true }\n'
                     'augment = "flip"\nlabel_smoothing = false\nbatch_size = { choices = [4, 8] }\n')
    comp = load_competition(tiny)
    space = build_space(TrainConfig(), comp.tune, {"epochs": 2}, where="x")
    names = [p.name for p in space.params]
    assert "label_smoothing" not in names and "augment" not in names and "epochs" not in names
    assert dict(space.pinned) == {"augment": "flip", "epochs": 2}
    lr = next(p for p in space.params if p.name == "lr")
    assert (lr.low, lr.high, lr.log) == (1e-3, 1e-2, True)
    replaced = build_space(TrainConfig(), {"replace": True, "space": {"lr": {"low": 0.1, "high": 0.2}}}, {}, where="x")
    assert [p.name for p in replaced.params] == ["lr"]


@pytest.mark.parametrize("table, message", [
    ('[tune]\nspaec = {}\n', "unknown key 'spaec' (did you mean 'space'?)"),
    ('[tune.space]\nlrr = { low = 1, high = 2 }\n', "unknown setting 'lrr'"),
    ('[tune.space]\nlr = { low = 0.1, high = 0.01 }\n', "'low' (0.1) must be below 'high' (0.01)"),
    ('[tune.space]\nlr = { low = 0.0, high = 0.1, log = true }\n', "a log range needs 'low' > 0"),
    ('[tune.space]\nmodel = { low = 1, high = 2 }\n', "parameter 'model' is a str setting: give 'choices'"),
    ('[tune.space]\noptimizer = { choices = ["adamw", "adam"] }\n', "choice 'adam' must be one of adamw, sgd"),
    ('[tune.space]\nepochs = { low = 1, high = 2.5 }\n', "'high' = 2.5 is not"),
    ('[tune.space]\nlr = { low = 0.1, hi = 0.2 }\n', "unknown key 'hi'"),
])
def test_bad_tune_table_is_a_one_line_error(tiny, table, message):
    with_space(tiny, "\n" + table)
    result = invoke("tune", tiny, "--workdir", tiny)
    assert result.exit_code == 2
    assert message in result.output and str(tiny / "competition.toml") in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tiny / "tune").exists()


# --- real training on the tiny competition --------------------------------------------------

def test_study_completes_resumes_to_a_larger_total_and_hands_off_to_train(tiny):
    first = invoke("tune", tiny, "--workdir", tiny, "--trials", 3, *FAST)
    assert first.exit_code == 0, first.output
    assert "[3/3]" in first.output and "next: comptk train" in first.output
    study = load_study("tiny", workdir=tiny)
    before = {t.number: t.params for t in study.trials}
    assert len(before) == 3

    again = invoke("tune", tiny, "--workdir", tiny, "--trials", 5, *FAST)
    assert again.exit_code == 0, again.output
    assert again.output.count("] trial ") == 2  # only the two missing trials ran
    study = load_study("tiny", workdir=tiny)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3, 4]
    assert {t.number: t.params for t in study.trials if t.number < 3} == before
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)

    shown = invoke("tune", tiny, "--workdir", tiny, "--show")
    assert shown.exit_code == 0 and "best settings:" in shown.output and "epochs run" in shown.output
    best = dict(study.best_trial.params, epochs=1, model="small_resnet", n_folds=2)

    exported = invoke("tune", tiny, "--workdir", tiny, "--export", tiny / "best.toml")
    assert exported.exit_code == 0
    again = invoke("tune", tiny, "--workdir", tiny, "--export", tiny / "best.toml")
    assert again.exit_code == 2 and f"--export {tiny / 'best.toml'} exists; pass --force to replace it" in again.output
    assert invoke("tune", tiny, "--workdir", tiny, "--export", tiny / "best.toml", "--force").exit_code == 0
    trained = invoke("train", tiny, "--workdir", tiny, "--settings", tiny / "best.toml", "--name", "from-file",
                     "--quiet")
    assert trained.exit_code == 0, trained.output
    config = json.loads((tiny / "oof" / "from-file.json").read_text())["config"]
    assert {k: config[k] for k in best} == best

    trained = invoke("train", tiny, "--workdir", tiny, "--from-study", "tiny", "--epochs", 2, "--name", "from-study",
                     "--quiet")
    assert trained.exit_code == 0, trained.output
    assert f"settings from study 'tiny' (best trial {study.best_trial.number}): " in trained.output
    config = json.loads((tiny / "oof" / "from-study.json").read_text())["config"]
    assert config["epochs"] == 2  # a flag overrides the study's setting
    assert {k: config[k] for k in best if k != "epochs"} == {k: v for k, v in best.items() if k != "epochs"}


def two_workers(tiny, storage, n_trials=6):
    """Two `comptk tune` processes on one storage; returns their trial lines and the study."""
    command = [sys.executable, "-m", "comptk", "tune", str(tiny), "--workdir", str(tiny), "--trials", str(n_trials),
               "--storage", storage, "--set", "epochs=2", "--set", "model=small_resnet", "--set", "n_folds=2"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ran = [line for out in outputs for line in out.splitlines() if "] trial " in line]
    return ran, load_study("tiny", storage=storage, workdir=tiny)


def test_two_processes_on_one_storage_finish_the_total_with_unique_trials(tiny, tmp_path):
    ran, study = two_workers(tiny, f"sqlite:///{tmp_path / 'shared.db'}")
    numbers = [t.number for t in study.trials]
    assert len(ran) == 6  # none lost, none run twice: the start lock makes the total exact
    assert sorted(numbers) == list(range(6))
    assert sorted(int(line.split("] trial ")[1].split(":")[0]) for line in ran) == numbers


@pytest.mark.skipif(not os.environ.get("COMPTK_TEST_POSTGRES"),
                    reason="set COMPTK_TEST_POSTGRES=postgresql://... (.ci/run starts a server)")
def test_two_processes_share_a_study_on_a_postgresql_server(tiny):
    import uuid

    import sqlalchemy

    url = os.environ["COMPTK_TEST_POSTGRES"]
    database = f"comptk_{uuid.uuid4().hex[:12]}"  # a fresh database: runs never see each other's studies
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {database}"))
    try:
        storage = url.rsplit("/", 1)[0] + "/" + database
        ran, study = two_workers(tiny, storage)
        counted = [t for t in study.trials if not t.user_attrs.get("surplus")]
        assert len(counted) == 6 and len(ran) == 6  # a rare surplus start is marked, not run, not counted
        assert sorted(t.number for t in counted) == sorted(int(x.split("] trial ")[1].split(":")[0]) for x in ran)
        assert all(t.state.is_finished() for t in study.trials)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


# --- crafted objectives ----------------------------------------------------------------------

def run_tune(root, fit, **kw):
    kw.setdefault("echo", lambda line: None)
    kw.setdefault("pins", {"n_folds": 2})
    return tune(root, workdir=root, fit=fit, **kw)


def epochs_run(study_name, root, storage=None):
    study = load_study(study_name, workdir=root, storage=storage)
    return [t.user_attrs["epochs_run"] for t in study.trials], study


def test_median_pruner_prunes_bad_learning_curves_and_saves_epochs(tiny):
    with_space(tiny, LR_ONLY)
    pruned_fit = fake_fit(lr_quality)
    result = run_tune(tiny, pruned_fit, n_trials=16, study="pruned")
    ran, study = epochs_run("pruned", tiny)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert result.n_counted == 16 and pruned and complete
    assert all(t.user_attrs["epochs_run"] < 6 for t in pruned)
    # what was pruned was worse, at the epoch it was stopped, than the median of the others
    assert max(lr_quality(TrainConfig(lr=t.params["lr"])) for t in pruned) < study.best_value

    run_tune(tiny, fake_fit(lr_quality), n_trials=16, study="unpruned", pruner="none")
    ran_all, _ = epochs_run("unpruned", tiny)
    assert sum(ran_all) == 16 * 6 and sum(ran) < sum(ran_all)


def test_wilcoxon_pruner_over_folds(tiny):
    with_space(tiny, LR_ONLY)
    result = run_tune(tiny, fake_fit(lr_quality), n_trials=12, study="wil", folds_per_trial=5,
                      pins={"n_folds": 5})
    study = load_study("wil", workdir=tiny)
    assert result.n_counted == 12
    first = study.trials[0]
    assert first.value == pytest.approx(lr_quality(TrainConfig(lr=first.params["lr"])) - 0.02)
    assert any(t.state == TrialState.PRUNED for t in study.trials)


def test_crashing_trials_are_recorded_with_their_reason_and_the_study_goes_on(tiny):
    with_space(tiny, LR_ONLY)
    result = run_tune(tiny, fake_fit(lr_quality, fail_if=lambda cfg: cfg.lr > 1e-2), n_trials=10, study="crash")
    study = load_study("crash", workdir=tiny)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert result.n_counted == 10 and len(study.trials) == 10 and failed
    assert all(t.user_attrs["fail_reason"] == "RuntimeError: CUDA out of memory (crafted)" for t in failed)
    assert all(t.params["lr"] > 1e-2 for t in failed)
    shown = invoke("tune", tiny, "--workdir", tiny, "--study", "crash", "--show")
    assert "CUDA out of memory" in shown.output


def test_a_nan_score_is_a_failed_trial_that_counts(tiny):
    with_space(tiny, LR_ONLY)
    result = run_tune(tiny, fake_fit(lambda cfg: float("nan") if cfg.lr > 1e-2 else lr_quality(cfg)), n_trials=6,
                      study="nan")
    study = load_study("nan", workdir=tiny)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert result.n_counted == 6 and len(study.trials) == 6  # no endless loop of uncounted trials
    assert failed and all("accuracy is nan" in t.user_attrs["fail_reason"] for t in failed)


def test_ctrl_c_keeps_finished_trials_and_a_rerun_completes(tiny):
    with_space(tiny, LR_ONLY)
    result = run_tune(tiny, fake_fit(lr_quality, interrupt_at=3), n_trials=5, study="stop")
    assert result.interrupted and result.n_counted == 2
    result = run_tune(tiny, fake_fit(lr_quality), n_trials=5, study="stop")
    study = load_study("stop", workdir=tiny)
    assert not result.interrupted and result.n_counted == 5
    assert len(study.trials) == 6  # the interrupted one is kept, marked, and not counted
    assert study.trials[2].user_attrs.get("interrupted") is True


def test_journal_storage(tiny, tmp_path):
    with_space(tiny, LR_ONLY)
    journal = tmp_path / "study.log"
    run_tune(tiny, fake_fit(lr_quality), n_trials=4, study="j", storage=str(journal))
    assert journal.is_file()
    assert len(load_study("j", storage=f"journal:{journal}", workdir=tiny).trials) == 4


# --- one-line errors -------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("--storage", "nowhere"), "--storage 'nowhere': give a database URL"),
    (("--storage", "postgresql://u:secret@127.0.0.1:1/db"), "cannot open storage 'postgresql://u:***@127.0.0.1:1/db'"),
    (("--folds-per-trial", "0"), "--folds-per-trial must be between 1 and the number of folds (5), got 0"),
    (("--pruner", "wilcoxon"), "--pruner wilcoxon compares trials fold by fold"),
    (("--trials", "0"), "--trials must be at least 1"),
    (("--timeout", "-5"), "--timeout must be a positive number of seconds, got -5"),
    (("--timeout", "0"), "--timeout must be a positive number of seconds, got 0"),
    (("--set", "lrr=1"), "--set: unknown setting 'lrr' (did you mean 'lr'?)"),
    (("--set", "epochs=many"), "setting 'epochs' must be int"),
    (("--set", "model=no_such_net"), "setting 'model': 'no_such_net' is not known"),
    (("--set", "augment=flipp"), "setting 'augment': 'flipp' is not known (did you mean 'flip'?)"),
])
def test_bad_tune_options_are_one_line_errors(tiny, args, message):
    result = invoke("tune", tiny, "--workdir", tiny, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "secret" not in result.output


@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:"])
def test_storage_under_a_file_or_a_system_folder_is_a_one_line_error(tiny, scheme):
    under_file = tiny / "competition.toml" / "x.db"
    result = invoke("tune", tiny, "--workdir", tiny, *FAST, "--storage", f"{scheme}{under_file}")
    assert result.exit_code == 2, result.output
    assert f"cannot open storage '{scheme}{under_file}': {tiny / 'competition.toml'} is a file, not a folder" \
        in result.output
    assert len(result.output.strip().splitlines()) == 1
    if Path("/proc").is_dir():  # files cannot be made there: at once, not after the lock's timeout
        result = invoke("tune", tiny, "--workdir", tiny, *FAST, "--storage", f"{scheme}/proc/x.db")
        assert result.exit_code == 2 and f"cannot open storage '{scheme}/proc/x.db'" in result.output


def test_a_start_lock_held_past_its_timeout_says_another_process_holds_it(tiny, monkeypatch):
    from filelock import FileLock

    from comptk.tune import storage

    monkeypatch.setattr(storage, "LOCK_TIMEOUT_S", 0.2)
    db = tiny / "held.db"
    with FileLock(f"{db}.comptk-start.lock"):  # another worker in the middle of starting a trial
        result = invoke("tune", tiny, "--workdir", tiny, *FAST, "--storage", f"sqlite:///{db}")
    assert result.exit_code == 2, result.output
    assert f"another process has held its start lock {db}.comptk-start.lock for 0.2 s" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_show_and_from_study_errors(tiny):
    result = invoke("tune", tiny, "--workdir", tiny, "--show")
    assert result.exit_code == 2 and "no study storage" in result.output
    with_space(tiny, LR_ONLY)
    run_tune(tiny, fake_fit(lr_quality), n_trials=1, study="one")
    result = invoke("train", tiny, "--workdir", tiny, "--from-study", "onee")
    assert result.exit_code == 2 and "study 'onee' is not in" in result.output and "did you mean 'one'" in result.output
    result = invoke("tune", tiny, "--workdir", tiny, "--study", "one", "--trials", 2, "--set", "n_folds=3")
    assert result.exit_code == 2 and "study 'one' was made with other settings" in result.output
    other = tiny / "other.toml"  # the same data under another competition's name
    other.write_text((tiny / "competition.toml").read_text().replace('name = "tiny"', 'name = "other"'))
    result = invoke("train", other, "--workdir", tiny, "--from-study", "one")
    assert result.exit_code == 2, result.output
    assert "study 'one' was made with other settings (competition \"tiny\" -> \"other\")" in result.output


def test_settings_file_errors(tiny):
    bad = tiny / "bad.toml"
    bad.write_text("[train]\nlrr = 0.1\n")
    result = invoke("train", tiny, "--workdir", tiny, "--settings", bad)
    assert result.exit_code == 2 and "unknown setting 'lrr'" in result.output
    with pytest.raises(ComptkError, match="does not exist"):
        from comptk.config import read_settings

        read_settings(tiny / "missing.toml")

