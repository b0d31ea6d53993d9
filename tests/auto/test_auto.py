"""comptk auto: budgets, the plan's time model, and a tiny end-to-end run that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import math
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from comptk import ComptkError, load_competition
from comptk.artifacts import RunPaths
from comptk.auto import parse_budget
from comptk.auto.measure import Throughput, _timed
from comptk.auto.plan import (
    LoopFactors,
    Member,
    Workload,
    class_balance,
    fewer_folds_note,
    folds_for_budget,
    member_seconds,
    plan_members,
    recalibrate,
)
from comptk.auto import runner
from comptk.auto.runner import _check_same_settings, _load_state, _save_state, _train_member, loop_factors
from comptk.cli import main
from comptk.config import resolve, resolve_run
from comptk.data.image_cache import load_competition_images
from tests.conftest import make_tiny


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("2h", 7200), ("1h30m", 5400), ("90s", 90), ("900", 900),
                                           ("1.5h", 5400)])
def test_budgets_read_as_people_write_them(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["15 minutes", "m15", "", "10s", "-5m", "30s", "10s50s", "1m1h", "١٠٠", "9" * 400])
def test_a_bad_budget_is_one_line_error(text):
    with pytest.raises(ComptkError, match="--budget"):
        parse_budget(text)


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="process start times from Linux's /proc")
def test_the_command_lines_budget_counts_from_its_process_start(monkeypatch):
    from comptk.auto.budget import process_started

    monkeypatch.setattr(sys, "argv", ["/usr/bin/pytest"])  # a test runner or a notebook: from now
    assert abs(time.monotonic() - process_started()) < 0.5
    monkeypatch.setattr(sys, "argv", ["/venv/bin/comptk", "auto"])  # the command: from its start (this process's)
    age = time.monotonic() - process_started()
    assert 1.0 < age <= 600.0  # pytest has run for more than a second by now
    monkeypatch.setattr(sys, "argv", [str(Path(runner.__file__).parent.parent / "__main__.py")])  # python -m comptk
    assert abs(time.monotonic() - process_started() - age) < 1.0


WORK = Workload(n_train=12000, n_test=10000, n_folds=5, valid_views=1, tta_views=2)
SPEED = {"small_resnet": Throughput(4000, 15000), "small_resnet_wide": Throughput(1500, 6000)}
MEASURED = LoopFactors({"small_resnet": 1.2, "small_resnet_wide": 1.2})  # both families measured: no margin


def test_the_plan_fits_the_budget_and_alternates_families_and_seeds():
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    members = plan_members(base, WORK, SPEED.__getitem__, 1500, preset="fast", factor=MEASURED)
    assert sum(m.estimate_s for m in members) <= 0.92 * 1500  # a margin for estimates that run long
    assert [(m.model, m.seed) for m in members][:2] == [("small_resnet", 42), ("small_resnet_wide", 42)]
    assert all(19 <= m.epochs <= 29 for m in members)  # between 1x and 1.5x the recipe's 19 epochs
    assert len({m.name for m in members}) == len(members)
    # a longer budget gives the "best" ladder more members, and never more time than it has
    more = plan_members(base, WORK, SPEED.__getitem__, 4000, preset="best", factor=MEASURED)
    assert len(more) > len(members) and sum(m.estimate_s for m in more) <= 4000


def test_members_get_equal_time_and_capped_ones_give_theirs_back():
    base = resolve(None, {"model": "small_resnet", "epochs": 4, "seed": 0})
    members = plan_members(base, WORK, SPEED.__getitem__, 2000, preset="fast", factor=1.0)
    small = [m for m in members if m.model == "small_resnet"]
    assert all(m.epochs == 6 for m in small)  # capped at 1.5 x 4
    wide = [m for m in members if m.model == "small_resnet_wide"][0]
    assert wide.epochs == 6  # the time the small ones did not need let the wide one reach its cap too
    assert sum(m.estimate_s for m in members) <= 2000


def test_no_member_joins_when_it_would_cut_the_recipes_epochs():
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    one = member_seconds(19, WORK, SPEED["small_resnet"], 1.0)
    members = plan_members(base, WORK, SPEED.__getitem__, 1.5 * one / 0.92, preset="fast", factor=1.0)
    assert len(members) == 1 and 19 <= members[0].epochs <= 29  # not two members at 14 epochs each


def test_time_left_after_trained_members_for_fewer_than_the_recipes_epochs_stays_unused():
    base = resolve(None, {"model": "small_resnet", "epochs": 20, "seed": 42})
    tp = SPEED["small_resnet"]
    done = [Member(name="m1", model="small_resnet", seed=42, epochs=20, estimate_s=1.0)]
    measured = LoopFactors({"small_resnet": 1.0})  # m1 measured its family
    short = member_seconds(15, WORK, tp, 1.0) / 0.92
    assert plan_members(base, WORK, SPEED.__getitem__, short, preset="fast", factor=measured, done=done) == []
    enough = member_seconds(21, WORK, tp, 1.0) / 0.92
    more = plan_members(base, WORK, SPEED.__getitem__, enough, preset="fast", factor=measured, done=done)
    assert [(m.model, m.seed) for m in more] == [("small_resnet", 43)] and more[0].epochs >= 20


def test_a_budget_too_short_for_the_recipes_epochs_still_plans_one_member():
    base = resolve(None, {"model": "small_resnet", "epochs": 19})
    members = plan_members(base, WORK, SPEED.__getitem__, 60, preset="best", factor=1.0)
    assert len(members) == 1 and members[0].epochs >= 1


def test_the_time_model_grows_with_epochs_images_and_views():
    tp = SPEED["small_resnet"]
    assert member_seconds(10, WORK, tp, 1.0) > member_seconds(5, WORK, tp, 1.0)
    crops = Workload(**{**WORK.__dict__, "valid_views": 5})
    assert member_seconds(5, crops, tp, 1.0) > member_seconds(5, WORK, tp, 1.0)
    assert member_seconds(5, WORK, tp, 2.0) > member_seconds(5, WORK, tp, 1.0)


def test_folds_belong_to_the_competition_not_the_model_seed(tiny):
    (tiny / "competition.toml").write_text((tiny / "competition.toml").read_text() + "\n[folds]\nseed = 7\n")
    comp = load_competition(tiny)
    a, b = resolve_run(comp, {"seed": 1}), resolve_run(comp, {"seed": 2})
    assert (a.folds_seed, b.folds_seed, a.seed, b.seed) == (7, 7, 1, 2)
    assert resolve_run(comp, {"folds_seed": 3}).folds_seed == 3  # overridable
    text = (tiny / "competition.toml").read_text().replace("epochs = 1", "epochs = 1\nfolds_seed = 5")
    (tiny / "competition.toml").write_text(text)
    with pytest.raises(ComptkError, match="declared twice"):
        load_competition(tiny)


def test_a_member_past_the_budget_is_stopped_and_not_finished(tiny):
    comp = load_competition(tiny)
    member = Member(name="late", model="small_resnet", seed=0, epochs=1, estimate_s=1.0)
    started = time.monotonic()
    status = _train_member(comp, member, {}, tiny, None, tiny / "auto" / "x", timeout=0.5)
    assert status.startswith("stopped at the budget") and time.monotonic() - started < 15
    assert not RunPaths(tiny, "late").is_finished()


def test_a_member_finished_meanwhile_by_an_earlier_calls_process_counts_as_trained(tiny, monkeypatch):
    """auto killed hard while a member trained: that member's process finished it, and the re-run's process, which
    waited for the run's lock, then finds it finished (and exits with an error): trained, not failed."""
    comp = load_competition(tiny)
    member = Member(name="done", model="small_resnet", seed=0, epochs=1, estimate_s=1.0)

    class Finishes:  # the child: while it waits for the lock, the other process writes the run's record
        def __init__(self, *args, **kwargs):
            RunPaths(tiny, "done").sidecar.parent.mkdir(parents=True, exist_ok=True)
            RunPaths(tiny, "done").sidecar.write_text("{}")

        def wait(self, timeout=None):
            return 2

    monkeypatch.setattr(runner.subprocess, "Popen", Finishes)
    assert _train_member(comp, member, {}, tiny, None, tiny / "auto" / "x", timeout=5) == "trained"
    # finished before this call's child started (another run of that name): refused by train, so failed
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: type("Fails", (), {"wait": lambda s, timeout: 2})())
    assert _train_member(comp, member, {}, tiny, None, tiny / "auto" / "x", timeout=5).startswith("failed")
    # unless it is this plan's member begun by the killed call, whose process finished it before this child started
    assert _train_member(comp, member, {}, tiny, None, tiny / "auto" / "x", timeout=5, resumed=True) == "trained"
    RunPaths(tiny, "done").sidecar.unlink()
    assert _train_member(comp, member, {}, tiny, None, tiny / "auto" / "x", timeout=5).startswith("failed")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_members_process_dies_with_autos_even_when_auto_is_killed_hard(tmp_path):
    """auto's process starts a member's child as _train_member does (spawn_member); SIGKILL auto: the child goes
    too (it asked for it first thing, as `python -m comptk` does)."""
    pid_file = tmp_path / "child.pid"
    child_code = "from comptk.child_process import die_with_parent; die_with_parent(); import time; time.sleep(60)"
    script = (
        "import subprocess, sys, time\n"
        "from comptk.child_process import spawn_member\n"
        f"child = spawn_member([sys.executable, '-c', {child_code!r}], subprocess.DEVNULL)\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    auto = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    time.sleep(2)  # the child has started and asked
    auto.kill()
    auto.wait()
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        try:
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break  # a zombie: dead, waiting to be reaped
        except FileNotFoundError:
            break  # reaped meanwhile
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the member's child outlived auto's process")
    # `python -m comptk` (how auto starts members) asks first thing: told of a parent that is not its own, it ends
    told = subprocess.run([sys.executable, "-m", "comptk", "--version"], capture_output=True,
                          env={**os.environ, "COMPTK_PARENT_PID": f"{os.getpid()}0"})  # never its parent
    assert told.returncode == 1 and not told.stdout
    assert subprocess.run([sys.executable, "-m", "comptk", "--version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_while_a_member_trains_sigterm_and_sighup_raise_but_nohups_ignored_sighup_stays_ignored():
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    term = signal.getsignal(signal.SIGTERM)
    try:
        with runner._signals_raise():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            with pytest.raises(SystemExit):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is term and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with runner._signals_raise():
            with pytest.raises(SystemExit):
                signal.raise_signal(signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)


def test_auto_end_to_end_members_are_normal_runs_blended_and_a_rerun_resumes(tiny):
    args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "75s", "--label-shift", "em", "--name", "a"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shift = json.loads(RunPaths(tiny, "a").sidecar.read_text())["label_shift"]
    if shift["correction"] == "none":  # the blend chose rank: not corrected, and said so as `comptk ensemble` says it
        assert "\nlabel shift: not corrected: the chosen method, rank" in result.output
    else:  # the blend's label-shift line, as `comptk ensemble` prints it
        assert f"\n  {shift['summary']}\n" in result.output
        assert shift["summary"] in (tiny / "auto" / "a" / "report.md").read_text()
    plan = json.loads((tiny / "auto" / "a" / "plan.json").read_text())
    trained = [m["member"]["name"] for m in plan["members"] if m["status"] == "trained"]
    assert len(trained) >= 2, result.output
    for name in trained:  # normal runs on the same folds, seeds and families differing
        assert RunPaths(tiny, name).is_finished() and f"+ {name}: CV accuracy" in result.output
    folds = {json.loads(RunPaths(tiny, n).sidecar.read_text())["folds_digest"] for n in trained}
    assert len(folds) == 1
    sub = pd.read_csv(tiny / "submissions" / "a.csv", dtype=str)
    sample = pd.read_csv(tiny / "data" / "sample_submission.csv", dtype=str)
    assert list(sub.columns) == list(sample.columns) and sub["id"].tolist() == sample["id"].tolist()
    assert "plan:" in result.output and "blend a (" in result.output
    replans = [line for line in result.output.splitlines() if "re-planned:" in line]
    assert replans and all("finishing about" in line for line in replans)  # the finish estimate follows the plan
    assert "in the training loop" in result.output  # planned from the real loop's speed
    assert (tiny / "auto" / "a" / "report.md").is_file()
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert all(f"= {name}: trained earlier" in again.output for name in trained)
    assert not any(f"+ {name}" in again.output for name in trained)  # kept, not trained again
    # the report still gives each member kept from the first call its wall time and CV
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in
            (tiny / "auto" / "a" / "report.md").read_text().splitlines() if line.startswith("| a-")}
    for name in trained:
        took, cv, status = rows[name][5], rows[name][6], rows[name][7]
        assert status.startswith("trained earlier") and took.endswith(" s") and float(cv) > 0, rows[name]
    # its name is its blend's: a training run of that name is refused before any time is spent
    taken = CliRunner().invoke(main, [*args[:-1], trained[0]])
    assert taken.exit_code == 2 and f"'{trained[0]}' is a training run" in taken.output and "plan:" not in taken.output
    (tiny / "auto" / "a" / "plan.json").unlink()  # a blend 'a' whose plan is gone: not a fresh plan's to replace
    gone = CliRunner().invoke(main, args)
    assert gone.exit_code == 2 and "a blend 'a' exists" in gone.output and "plan:" not in gone.output


def test_the_loop_factor_follows_finished_members_and_ignores_startup_noise():
    assert recalibrate(1.25, 108.0, 208.0, first=True) == 2.5  # compute took twice the plan
    assert recalibrate(2.5, 108.0, 58.0, first=False) == 1.875  # later ones are averaged in
    assert recalibrate(1.25, 10.0, 3.0, first=True) == 1.25  # a member of a few seconds says nothing
    assert recalibrate(1.0, 1008.0, 8.5, first=True) == 0.3  # clipped


def test_loop_factors_are_per_family_and_an_unmeasured_family_is_planned_cautiously():
    factors = LoopFactors(default=1.0).recalibrated("small_resnet", 108.0, 108.0 * 0.9 + 0.8)
    assert factors("small_resnet") < 1.0  # measured: it ran faster than planned
    assert factors("small_resnet_wide") == 1.0  # not measured: never below the default
    slow = factors.recalibrated("small_resnet_wide", 108.0, 208.0)
    assert slow("small_resnet_wide") == 2.0 and slow("resnet18") == 2.0  # the largest seen
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    done = [Member(name="m1", model="small_resnet", seed=42, epochs=19, estimate_s=1.0)]
    cautious = plan_members(base, WORK, SPEED.__getitem__, 1000, preset="fast", factor=factors, done=done)
    optimistic = plan_members(base, WORK, SPEED.__getitem__, 1000, preset="fast",
                              factor=LoopFactors({"small_resnet_wide": factors("small_resnet")}), done=done)
    assert cautious[0].model == optimistic[0].model == "small_resnet_wide"
    assert cautious[0].epochs < optimistic[0].epochs


def test_saved_plans_keep_each_familys_factor_and_an_old_single_factor_is_not_trusted(tmp_path, tiny):
    comp = load_competition(tiny)
    factors = LoopFactors({"small_resnet": 0.8, "small_resnet_wide": 1.3})
    _save_state(tmp_path, comp, "fast", 900.0, factors, [], [])
    assert loop_factors(_load_state(tmp_path, comp, "fast")) == factors
    old = {"version": 1, "competition": comp.name, "factor": 0.7, "members": []}  # measured on some family
    assert loop_factors(old)("small_resnet_wide") == 1.0  # planned with the default, not 0.7
    earlier = {"version": 2, "competition": comp.name, "factors": {"small_resnet": 0.7}, "members": []}
    assert loop_factors(earlier) == LoopFactors()  # relative to random-tensor speeds: not used with loop speeds


def test_a_plan_is_resumed_only_with_the_settings_its_members_were_given(tmp_path, tiny):
    comp = load_competition(tiny)
    _save_state(tmp_path, comp, "fast", 900.0, LoopFactors(), [], [], {"sampler": "weighted", "lr": 0.01})
    state = _load_state(tmp_path, comp, "fast")
    _check_same_settings(state, {"lr": 0.01, "sampler": "weighted"}, tmp_path, "a")  # the same: resumes
    with pytest.raises(ComptkError, match=r"other member settings: sampler \('weighted' -> 'random'\)"):
        _check_same_settings(state, {"sampler": "random", "lr": 0.01}, tmp_path, "a")
    with pytest.raises(ComptkError, match=r"lr \(0.01 -> 'unset'\)"):
        _check_same_settings(state, {"sampler": "weighted"}, tmp_path, "a")


def test_measuring_times_whole_rounds_of_steps_until_the_minimum_time_passed():
    calls = []

    def step():
        calls.append(time.perf_counter())
        time.sleep(0.002)

    steps, seconds = _timed(step, 1, 5, 0.05, torch.device("cpu"))
    assert steps % 5 == 0 and steps >= 10 and seconds >= 0.05 and len(calls) == steps + 1


def test_a_family_not_measured_yet_is_fitted_with_a_margin_but_estimated_without():
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    tp = SPEED["small_resnet"]
    budget = (member_seconds(29, WORK, tp, 1.0) + 1.0) / 0.92  # the 1.5x cap just fits with the factor itself
    first = plan_members(base, WORK, SPEED.__getitem__, budget, preset="fast", factor=1.0)
    assert len(first) == 1 and first[0].epochs < 29  # fitted with the margin: room if it runs long
    assert first[0].estimate_s == member_seconds(first[0].epochs, WORK, tp, 1.0)  # printed without it
    known = plan_members(base, WORK, SPEED.__getitem__, budget, preset="fast",
                         factor=LoopFactors({"small_resnet": 1.0}))
    assert known[0].epochs == 29  # measured: no margin


def test_members_draw_classes_equally_for_macro_f1_on_imbalanced_classes_unless_imbalance_was_chosen():
    assert "sampler = weighted" in class_balance("macro_f1", [1000, 300, 50], set())
    assert "1000 down to 50 images (20x)" in class_balance("macro_f1", [1000, 300, 50], {"model"})
    assert class_balance("accuracy", [1000, 300, 50], set()) is None  # accuracy counts rows, not classes
    assert class_balance("macro_f1", [100, 90, 40], set()) is None  # 2.5x: near enough to balanced
    for key in ("sampler", "class_weights", "class_cap", "loss"):  # the user's own treatment is kept
        assert class_balance("macro_f1", [1000, 50], {key}) is None


def _imbalanced_macro_tiny(root):
    make_tiny(root, n_per_class=12, metric="macro_f1")
    train = pd.read_csv(root / "data" / "train.csv", dtype=str)
    keep = (train["label"] != "fox") | train["id"].isin(["fox_0", "fox_1", "fox_2"])
    train[keep].to_csv(root / "data" / "train.csv", index=False)  # 12 cats, 12 dogs, 3 foxes
    return root


@pytest.mark.parametrize("extra, declared, sampler", [
    ([], "", "weighted"),
    (["--set", "sampler=random"], "", "random"),  # chosen on the command line
    ([], 'loss = "focal"\n', "random"),  # the declaration treats imbalance its own way
])
def test_auto_gives_every_member_the_class_balanced_sampler_on_an_imbalanced_macro_f1_contest(
        tmp_path, monkeypatch, extra, declared, sampler):
    root = _imbalanced_macro_tiny(tmp_path / "lt")
    toml = root / "competition.toml"
    toml.write_text(toml.read_text().replace("[train]\n", "[train]\n" + declared))
    seen, measured = [], []
    real_measure = runner.measure_loop

    def fake_train(comp, member, pins, *args, **kwargs):  # what each member would be trained with
        seen.append(dict(pins))
        return "stopped at the budget"

    def spy_measure(cfg, *args, **kwargs):
        measured.append(cfg.sampler)
        return real_measure(cfg, *args, **kwargs)

    monkeypatch.setattr(runner, "_train_member", fake_train)
    monkeypatch.setattr(runner, "measure_loop", spy_measure)
    args = ["auto", str(root), "--workdir", str(root), "--budget", "60s", "--name", "b", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "no member finished" in result.output  # nothing trained: no submission
    assert seen and all(p.get("sampler", "random") == sampler for p in seen)
    assert measured and set(measured) == {sampler}  # measured as it would train
    assert ("every member draws the classes equally often" in result.output) == (sampler == "weighted")
    saved = json.loads((root / "auto" / "b" / "plan.json").read_text())["settings"]
    assert saved.get("sampler", "random") == sampler  # kept for a resume


def test_the_plan_uses_the_speeds_of_the_real_loop(tiny, monkeypatch):
    slow = Throughput(0.5, 0.5)  # as if the loop were far slower than the random-tensor steps
    monkeypatch.setattr(runner, "measure_loop", lambda *args, **kwargs: slow)
    monkeypatch.setattr(runner, "_train_member", lambda *args, **kwargs: "stopped at the budget")
    args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s", "--name", "s"]
    CliRunner().invoke(main, args)
    plan = json.loads((tiny / "auto" / "s" / "plan.json").read_text())
    member = plan["members"][0]["member"]
    assert plan["settings"]["n_folds"] == 3  # so slow that a 5-fold member would not get the recipe's epoch
    work = Workload(n_train=18, n_test=9, n_folds=3, valid_views=1, tta_views=1)
    assert member["estimate_s"] == pytest.approx(member_seconds(member["epochs"], work, slow, 1.0))


def test_the_loop_is_measured_with_the_runs_own_augmentation_on_a_sample_sized_from_the_quick_figures(
        tiny, monkeypatch):
    from comptk.auto import measure
    from comptk.data.layouts import read_data
    from comptk.train.augment import BatchAugment

    comp = load_competition(tiny)
    cfg = resolve_run(comp, {"augment": "flip", "tta": "hflip"})
    data = read_data(comp, comp.data_path(tiny))
    images = load_competition_images(data, cfg.img_size, workdir=tiny, cache=False).train
    seen = []
    real_fit = measure.fit

    def spy(model, train_set, *args, **kwargs):
        seen.append((len(train_set), train_set.transform, args[2].epochs))
        return real_fit(model, train_set, *args, **kwargs)

    monkeypatch.setattr(measure, "fit", spy)
    slow = measure.measure_loop(cfg, comp, images, data.train.labels, data.n_classes, torch.device("cpu"),
                                Throughput(1.0, 1.0))
    fast = measure.measure_loop(cfg, comp, images, data.train.labels, data.n_classes, torch.device("cpu"),
                                Throughput(1e6, 1e6))
    assert [n for n, _, _ in seen] == [2 * cfg.batch_size, len(images)]  # at least two batches; at most all rows
    assert all(isinstance(t, BatchAugment) and epochs == 2 for _, t, epochs in seen)  # the run's flips, 2 epochs
    for tp in (slow, fast):
        assert 0 < tp.train_images_per_s < float("inf") and 0 < tp.predict_images_per_s < float("inf")


def test_the_loop_measurement_times_the_second_epoch(tiny, monkeypatch):
    from comptk.auto import measure
    from comptk.data.layouts import read_data
    from comptk.train.engine import FoldOutcome

    comp = load_competition(tiny)
    cfg = resolve_run(comp)
    data = read_data(comp, comp.data_path(tiny))
    images = load_competition_images(data, cfg.img_size, workdir=tiny, cache=False).train
    history = [{"train_images_per_s": 1.0}, {"train_images_per_s": 7.0}]  # the first epoch warms up
    monkeypatch.setattr(measure, "fit", lambda *args, **kwargs: FoldOutcome({}, 2, 0.5, history))
    tp = measure.measure_loop(cfg, comp, images, data.train.labels, data.n_classes, torch.device("cpu"),
                              Throughput(100.0, 100.0))
    assert tp.train_images_per_s == 7.0


def test_other_settings_are_refused_only_when_the_plan_has_members_to_keep_or_resume(tiny, monkeypatch):
    monkeypatch.setattr(runner, "measure_loop", lambda *args, **kwargs: Throughput(1e4, 1e4))
    monkeypatch.setattr(runner, "_train_member", lambda *args, **kwargs: "failed (diverged)")

    def run(lr):
        args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s", "--name", "r", "--set", f"lr={lr}"]
        return CliRunner().invoke(main, args)

    failed = run(0.1).output
    assert "no member finished" in failed  # every member failed: nothing to keep
    assert "every member failed" in failed and "(diverged" in failed and "larger --budget" not in failed
    assert "no member finished" in run(0.01).output  # so other settings may be tried under the same name
    member = Member(name="r-small_resnet-s42-e1", model="small_resnet", seed=42, epochs=1, estimate_s=1.0)
    _save_state(tiny / "auto" / "r", load_competition(tiny), "fast", 60.0, LoopFactors(), [], [member],
                {"lr": 0.01})
    RunPaths(tiny, member.name).run_dir.mkdir(parents=True)  # a member begun with lr 0.01: to be resumed
    refused = run(0.001)
    assert refused.exit_code != 0 and "planned with other member settings: lr (0.01 -> 0.001)" in refused.output


def test_fewer_folds_before_fewer_epochs_when_one_member_cannot_get_the_recipes_epochs():
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    tp = SPEED["small_resnet"]
    measured = LoopFactors({"small_resnet": 1.0})

    def enough_for(k):  # the time one k-fold member of 19 epochs needs, before the plan's safety share
        return member_seconds(19, replace(WORK, n_folds=k), tp, 1.0) / 0.92

    assert folds_for_budget(base, WORK, SPEED.__getitem__, enough_for(5) + 1, measured) == 5  # the default fits
    assert folds_for_budget(base, WORK, SPEED.__getitem__, enough_for(5) - 1, measured) == 4
    assert folds_for_budget(base, WORK, SPEED.__getitem__, enough_for(3) + 1, measured) == 3
    assert folds_for_budget(base, WORK, SPEED.__getitem__, 60, measured) == 3  # never fewer than 3
    assert folds_for_budget(base, replace(WORK, n_folds=2), SPEED.__getitem__, 60, measured) == 2  # K below 3 is left as it is
    # a 3-fold member of the same budget gets more epochs than a 5-fold one
    short = enough_for(4)
    five = plan_members(base, WORK, SPEED.__getitem__, short, factor=measured)
    three = plan_members(base, replace(WORK, n_folds=3), SPEED.__getitem__, short, factor=measured)
    assert five[0].epochs < 19 <= three[0].epochs
    assert three[0].name.endswith("-k3") and not five[0].name.endswith("-k5")  # never a 5-fold run's folder


@pytest.mark.parametrize("declared, extra, folds", [
    ("", [], 3),  # nobody chose K: auto takes fewer folds rather than fewer epochs
    ("\n[folds]\nn_folds = 5\n", [], None),  # the declaration's K is kept
    ("\nn_folds = 5\n", [], None),  # also declared in [train] (the last table of the tiny declaration)
    ("", ["--set", "n_folds=5"], 5),  # and so is the command line's
])
def test_auto_chooses_fewer_folds_only_when_nobody_chose_k(tiny, monkeypatch, declared, extra, folds):
    toml = tiny / "competition.toml"
    toml.write_text(toml.read_text() + declared)
    # so slow that a 5- or 4-fold member of the recipe's 1 epoch does not fit 600 s and a 3-fold one does
    monkeypatch.setattr(runner, "measure_loop", lambda *args, **kwargs: Throughput(0.28, 0.28))
    seen = []

    def fake_train(comp, member, pins, *args, **kwargs):
        seen.append(dict(pins))
        return "stopped at the budget"

    monkeypatch.setattr(runner, "_train_member", fake_train)
    args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "600s", "--name", "k", *extra]
    result = CliRunner().invoke(main, args)
    assert "no member finished" in result.output
    assert seen and all(p.get("n_folds") == folds for p in seen)
    assert ("3 folds instead of 5" in result.output) == (folds == 3)
    plan = json.loads((tiny / "auto" / "k" / "plan.json").read_text())
    assert plan["folds_chosen_by_auto"] == (folds == 3)
    assert all(m["member"]["name"].endswith("-k3") == (folds == 3) for m in plan["members"])
    if folds != 3:
        return
    assert "1/2 as many images" in result.output and "up to 5 folds" in result.output
    # a resume keeps the folds its members began on, though the machine now seems fast enough for 5
    RunPaths(tiny, plan["members"][0]["member"]["name"]).run_dir.mkdir(parents=True)
    monkeypatch.setattr(runner, "measure_loop", lambda *args, **kwargs: Throughput(1e4, 1e4))
    seen.clear()
    resumed = CliRunner().invoke(main, args)
    assert "3 folds, as auto chose for this plan when it started" in resumed.output
    assert "up to 5 folds" not in resumed.output and ", 3 folds (folds seed" in resumed.output
    assert seen and all(p.get("n_folds") == 3 for p in seen)
    # the same K given on the command line resumes too, with the settings resolved as when auto chose K (a
    # recipe fitted to the data depends on K), and auto's choice stays for a later plain resume
    resolved = []
    real_resolve = runner.resolve_run
    monkeypatch.setattr(runner, "resolve_run", lambda comp, pins, **kw: resolved.append(dict(pins))
                        or real_resolve(comp, pins, **kw))
    assert "no member finished" in CliRunner().invoke(main, [*args, "--set", "n_folds=3"]).output
    assert resolved and "n_folds" not in resolved[0]
    assert json.loads((tiny / "auto" / "k" / "plan.json").read_text())["folds_chosen_by_auto"]
    other = CliRunner().invoke(main, [*args, "--set", "n_folds=5"])
    assert other.exit_code != 0 and "n_folds (3 -> 5) (auto chose n_folds for this plan" in other.output
    assert "3 folds, as auto chose" in CliRunner().invoke(main, args).output


def test_the_report_says_what_auto_chose(tmp_path, tiny):
    record = {"member": {"name": "m", "model": "small_resnet", "seed": 42, "epochs": 3, "estimate_s": 10.0},
              "status": "trained", "seconds": 9.0, "cv": 0.9}
    result = {"method": "single member m", "cv": 0.9, "submission": "s.csv", "weights": {"m": 1.0}}
    path = runner._write_report(tmp_path, "r", load_competition(tiny), 60.0, 50.0, 40.0, {"m": record}, result,
                                {"n_folds": 3}, ["sampler reason", "3 folds instead of 5: reason"])
    text = path.read_text()
    assert "chosen by auto: sampler reason" in text and "chosen by auto: 3 folds instead of 5: reason" in text
    assert "settings of every member besides model, seed and epochs: n_folds = 3" in text
    stacked = {**result, "method": "stack", "weights": None, "label_shift": "label shift: none clear (...)"}
    text = runner._write_report(tmp_path, "r", load_competition(tiny), 60.0, 50.0, 40.0, {"m": record}, stacked,
                                {}).read_text()
    assert "weights: none per member (the stack method has none)" in text and "label shift: none" in text


def test_with_pseudo_labels_a_student_follows_its_teacher_with_the_least_time_it_needs():
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    tp = SPEED["small_resnet"]
    budget = (member_seconds(22, WORK, tp, 1.3) + member_seconds(10, replace(WORK, n_extra=10000), tp, 1.0)) / 0.92
    plain = plan_members(base, WORK, SPEED.__getitem__, budget, prefix="p")
    assert [m.teacher for m in plain] == [""] * len(plain)  # no pseudo_rows: no student
    teacher, student = plan_members(base, WORK, SPEED.__getitem__, budget, prefix="p", pseudo_rows=10000)
    assert (teacher.model, teacher.seed, teacher.teacher) == ("small_resnet", 42, "") and teacher.epochs >= 19
    assert (student.model, student.seed, student.teacher) == ("small_resnet", 43, teacher.name)
    assert student.name.endswith("-pl") and student.settings() == {
        "model": "small_resnet", "seed": 43, "epochs": student.epochs, "pseudo_run": teacher.name,
        "pseudo_teacher": "fold"}
    # the least epochs: as many optimizer steps as the recipe's 19 on 9,600 + 10,000 rows a fold
    assert student.epochs == math.ceil(19 * 9600 / 19600)
    assert student.estimate_s == pytest.approx(member_seconds(student.epochs, replace(WORK, n_extra=10000), tp, 1.0))
    assert teacher.estimate_s + student.estimate_s <= 0.92 * budget
    # too short for the teacher's recipe epochs beside the student's least time: planned as without pseudo-labels
    short = member_seconds(19, WORK, tp, 1.3) / 0.92 + 1
    assert plan_members(base, WORK, SPEED.__getitem__, short, pseudo_rows=10000) == \
        plan_members(base, WORK, SPEED.__getitem__, short)


def test_once_its_teacher_is_trained_the_student_leads_the_re_plan_and_without_it_there_is_none():
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    tp = SPEED["small_resnet"]
    teacher = Member(name="t", model="small_resnet", seed=42, epochs=22, estimate_s=1.0)
    measured = LoopFactors({"small_resnet": 1.0})
    left = member_seconds(16, replace(WORK, n_extra=8000), tp, 1.0) / 0.92
    student, = plan_members(base, WORK, SPEED.__getitem__, left, factor=measured, done=[teacher], pseudo_rows=8000,
                            teacher="t")
    assert (student.seed, student.teacher, student.epochs) == (43, "t", 16)  # all the time left, within its cap
    # a teacher that failed is done but not trained: no student, and the seed member is planned as usual
    others = plan_members(base, WORK, SPEED.__getitem__, left, factor=measured, done=[teacher], pseudo_rows=8000)
    assert others and all(not m.teacher for m in others)
    assert ("small_resnet", 43) in [(m.model, m.seed) for m in others]


@pytest.mark.parametrize("declared, flag, student, says", [
    (None, [], False, None),  # not declared: only when asked for
    ("true", [], True, "the declaration allows it (pseudo_labels_allowed = true"),
    ("true", ["--no-pseudo-labels"], False, None),
    (None, ["--pseudo-labels"], True, "; --pseudo-labels"),
    ("false", [], False, None),
])
def test_auto_plans_a_student_only_where_the_rules_allow_training_on_test_images(tiny, monkeypatch, declared, flag,
                                                                                  student, says):
    toml = tiny / "competition.toml"
    if declared:
        toml.write_text(f"pseudo_labels_allowed = {declared}\n" + toml.read_text())
    monkeypatch.setattr(runner, "measure_loop", lambda *args, **kwargs: Throughput(1e4, 1e4))
    seen = []

    def fake_train(comp, member, pins, *args, **kwargs):
        seen.append(member)
        return "failed (test)" if not member.teacher else "trained"

    monkeypatch.setattr(runner, "_train_member", fake_train)
    result = CliRunner().invoke(main, ["auto", str(tiny), "--workdir", str(tiny), "--budget", "600s", "--name", "s",
                                       *flag])
    assert "no member finished" in result.output
    planned = [line.split(": ", 1)[0].split(". ", 1)[1] for line in result.output.splitlines()
               if line.startswith("  ") and ". s-" in line]
    students = [line for line in result.output.splitlines() if "pseudo-labelled by" in line]
    assert bool(students) == student, result.output
    assert (says is not None and says in result.output) == student
    if student:  # right after its teacher, which did not finish: dropped, never trained without its teacher
        teacher = planned[0]
        assert planned[1].endswith("-pl") and f"pseudo-labelled by {teacher}" in students[0]
        assert f"dropped, its teacher {teacher} did not finish" in result.output
        assert all(not m.teacher for m in seen)
    if flag == ["--pseudo-labels"]:  # a plan with a student is resumed only with pseudo-labels on
        plan = json.loads((tiny / "auto" / "s" / "plan.json").read_text())
        student_name = planned[1]
        plan["members"] = [{"member": {"name": name, "model": "small_resnet", "seed": seed, "epochs": 1,
                                       "estimate_s": 1.0, "teacher": by}, "status": "planned"}
                           for name, seed, by in ((planned[0], 42, ""), (student_name, 43, planned[0]))]
        (tiny / "auto" / "s" / "plan.json").write_text(json.dumps(plan))
        RunPaths(tiny, student_name).run_dir.mkdir(parents=True)  # started: to resume
        off = CliRunner().invoke(main, ["auto", str(tiny), "--workdir", str(tiny), "--budget", "600s", "--name", "s"])
        assert off.exit_code != 0 and f"has a pseudo-labelled member ({student_name})" in off.output
        assert "give --pseudo-labels to resume it" in off.output and "Traceback" not in off.output


def test_pseudo_labels_where_the_rules_forbid_them_or_pinned_by_hand_are_refused(tiny):
    args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s"]
    pinned = CliRunner().invoke(main, [*args, "--set", "pseudo_run=x"])
    assert pinned.exit_code != 0 and "auto chooses 'pseudo_run' for its student member" in pinned.output
    toml = tiny / "competition.toml"
    toml.write_text("pseudo_labels_allowed = false\n" + toml.read_text())
    pinned_teacher = CliRunner().invoke(main, [*args, "--pseudo-labels", "--set", "pseudo_teacher=fold"])
    assert pinned_teacher.exit_code != 0 and "auto chooses 'pseudo_teacher'" in pinned_teacher.output
    forbidden = CliRunner().invoke(main, [*args, "--pseudo-labels"])
    assert forbidden.exit_code != 0 and "pseudo_labels_allowed = false (the rules forbid" in forbidden.output
    assert "Traceback" not in forbidden.output
    train = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--pseudo", "x"])
    assert train.exit_code != 0 and "pseudo_labels_allowed = false" in train.output
    assert not (tiny / "runs").exists() or not any((tiny / "runs").iterdir())


def test_auto_with_pseudo_labels_trains_a_student_on_its_teachers_folds_and_blends_both(tiny):
    args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "75s", "--name", "pl", "--pseudo-labels"]
    unsure = CliRunner().invoke(main, [*args, "--name", "unsure", "--set", "pseudo_threshold=1.0"])
    assert unsure.exit_code == 0, unsure.output  # the teacher is sure of no test row: no student after it
    assert "pseudo-labelled by" in unsure.output and "re-planned: unsure-small_resnet-s43-e" in unsure.output
    assert "-pl ~" not in unsure.output and "failed" not in unsure.output
    result = CliRunner().invoke(main, [*args, "--set", "pseudo_threshold=0.01"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    plan = json.loads((tiny / "auto" / "pl" / "plan.json").read_text())
    trained = [m["member"] for m in plan["members"] if m["status"] == "trained"]
    teacher, student = trained[0], trained[1]
    assert student["teacher"] == teacher["name"] and student["name"].endswith("-pl")
    side = json.loads(RunPaths(tiny, student["name"]).sidecar.read_text())
    assert side["pseudo_labels"]["run"] == teacher["name"] and side["pseudo_labels"]["teacher"] == "fold"
    assert side["config"]["pseudo_teacher"] == "fold"
    assert side["folds_digest"] == json.loads(RunPaths(tiny, teacher["name"]).sidecar.read_text())["folds_digest"]
    assert "blend pl (" in result.output and (tiny / "submissions" / "pl.csv").is_file()
    assert "chosen by auto: pseudo-labels:" in (tiny / "auto" / "pl" / "report.md").read_text()


def test_k_stays_while_the_other_family_fits_as_the_plan_then_takes_it():
    """The recipe's model too slow for 5 folds, the other family fast: the plan takes the other family, so K stays."""
    base = resolve(None, {"model": "small_resnet_wide", "epochs": 30, "seed": 42})
    speeds = {"small_resnet_wide": Throughput(100, 1000), "small_resnet": Throughput(3000, 10000)}
    work = Workload(n_train=100, n_test=30, n_folds=5, valid_views=1, tta_views=1)
    assert folds_for_budget(base, work, speeds.__getitem__, 50) == 5
    assert [m.model for m in plan_members(base, work, speeds.__getitem__, 50)] == ["small_resnet"]
    slow = {**speeds, "small_resnet": Throughput(100, 1000)}  # neither fits 5 folds: fewer
    assert folds_for_budget(base, work, slow.__getitem__, 50) == 3
    # the recipe's model fits at fewer folds: those, before the other family
    fitting = {**speeds, "small_resnet_wide": Throughput(260, 2600)}
    assert 3 <= folds_for_budget(base, work, fitting.__getitem__, 50) < 5
    k = folds_for_budget(base, work, fitting.__getitem__, 50)
    assert plan_members(base, replace(work, n_folds=k), fitting.__getitem__, 50)[0].model == "small_resnet_wide"


@pytest.mark.parametrize("n_cat, extra, expected", [
    (3, [], "3 folds instead of 5: the smallest class has 3 images, and every fold needs one"),
    (3, ["--set", "n_folds=5"], "error: class 'cat' has 3 training images, fewer than --set n_folds=5; use "
                                "--set n_folds=3 or fewer"),
    (1, [], "error: class 'cat' has 1 training image"),
])
def test_auto_fits_k_to_the_smallest_class_before_spending_time(tiny, monkeypatch, n_cat, extra, expected):
    train = tiny / "data" / "train.csv"
    frame = pd.read_csv(train, dtype=str)
    frame[(frame.label != "cat") | (frame.index < n_cat)].to_csv(train, index=False)
    measured = []
    monkeypatch.setattr(runner, "measure_loop", lambda *a, **k: measured.append(1) or Throughput(1e4, 1e4))
    seen = []
    monkeypatch.setattr(runner, "_train_member", lambda comp, member, pins, *a, **k: seen.append(dict(pins))
                        or "failed (diverged)")
    result = CliRunner().invoke(main, ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s", "--name", "c",
                                       *extra])
    assert expected in result.output
    if expected.startswith("error"):
        assert result.exit_code == 2 and not measured and not seen  # before measuring
    else:
        assert seen and all(p["n_folds"] == 3 for p in seen)


def test_with_pseudo_labels_the_folds_leave_room_for_the_student_too():
    base = resolve(None, {"model": "small_resnet", "epochs": 19, "seed": 42})
    tp, measured = SPEED["small_resnet"], LoopFactors({"small_resnet": 1.0})
    big = replace(WORK, n_train=60000)
    alone = 1.2 * member_seconds(19, big, tp, 1.0) / 0.92  # one 5-fold member of the recipe's epochs, no student
    assert folds_for_budget(base, big, SPEED.__getitem__, alone, measured) == 5
    k = folds_for_budget(base, big, SPEED.__getitem__, alone, measured, pseudo_rows=10000)
    assert 3 <= k < 5
    note = fewer_folds_note(base, k, for_student=True)  # what auto prints then
    assert note.startswith(f"{k} folds instead of 5: in this budget a 5-fold small_resnet member beside its student")
    assert "beside" not in fewer_folds_note(base, k) and f"{Fraction(k - 1, 4)} as many images" in fewer_folds_note(base, k)
    plan = plan_members(base, replace(big, n_folds=k), SPEED.__getitem__, alone, factor=measured, pseudo_rows=10000)
    assert [bool(m.teacher) for m in plan][:2] == [False, True] and plan[0].epochs >= 19
    # no K leaves the student room: chosen as without it
    short = member_seconds(19, replace(big, n_folds=3), tp, 1.0) / 0.92 + 1
    assert folds_for_budget(base, big, SPEED.__getitem__, short, measured, pseudo_rows=10000) == \
        folds_for_budget(base, big, SPEED.__getitem__, short, measured)


def test_the_report_says_when_pseudo_labels_were_allowed_but_no_student_finished():
    teacher = Member(name="t", model="small_resnet", seed=42, epochs=3, estimate_s=1.0)
    student = replace(teacher, name="t-pl", seed=43, teacher="t")
    assert runner._student_outcome(None, [teacher]) is None
    assert runner._student_outcome("why", [teacher, student]) == "why"
    assert "no student finished" in runner._student_outcome("why", [teacher])


def test_a_declared_pseudo_run_leaves_no_teacher_to_choose_for_a_student(tiny):
    toml = tiny / "competition.toml"
    toml.write_text(toml.read_text() + 'pseudo_run = "some-run"\n')  # into the last table, [train]
    result = CliRunner().invoke(main, ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s", "--pseudo-labels"])
    assert result.exit_code != 0 and "[train] sets pseudo_run or pseudo_teacher" in result.output
    assert "Traceback" not in result.output


def test_members_trained_on_the_folds_of_an_earlier_declaration_are_refused_before_any_time_is_spent(
        tmp_path, monkeypatch):
    """A declaration's group column removed (or K, folds seed changed) after members were trained: the re-run is
    refused at once, not after training a member on the new folds that the blend then refuses."""
    tiny = make_tiny(tmp_path / "g", groups=True)
    member = Member(name="g-small_resnet-s42-e1", model="small_resnet", seed=42, epochs=1, estimate_s=1.0)
    trained = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--name", member.name,
                                        "--seed", "42", "--quiet", "--no-plots"], catch_exceptions=False)
    assert trained.exit_code == 0, trained.output
    _save_state(tiny / "auto" / "g", load_competition(tiny), "fast", 60.0, LoopFactors(), [member], [])
    monkeypatch.setattr(runner, "measure_loop", lambda *args, **kwargs: Throughput(1e4, 1e4))
    monkeypatch.setattr(runner, "_train_member", lambda *args, **kwargs: pytest.fail("a member was trained"))
    toml = tiny / "competition.toml"
    toml.write_text(toml.read_text().replace('group = "person"\n', ""))
    args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s", "--name", "g"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2, refused.output
    assert "other data: folds (folds_digest)" in refused.output and "[columns] group" in refused.output
    assert "plan:" not in refused.output and "measured" not in refused.output


@pytest.mark.parametrize("train, says", [
    ('model = "resnet18"\npretrained = true', "cannot load pretrained weights for 'resnet18'"),
    ('model = "small_resnet"\npretrained = true', "'small_resnet' has no published pretrained weights"),
    ('model = "resnet18"\nweights = "missing.pth"', "weights file not found: missing.pth"),
])
def test_weights_members_cannot_load_are_refused_before_measuring_in_autos_own_flags(tiny, monkeypatch, train, says):
    from comptk.train import weights

    monkeypatch.setattr(weights, "cached_weights", lambda model: None)
    monkeypatch.setattr(weights, "hub_offline", lambda: True)
    monkeypatch.setattr(runner, "measure_loop", lambda *args, **kwargs: pytest.fail("measured"))
    toml = tiny / "competition.toml"
    toml.write_text(toml.read_text().replace('model = "small_resnet"', train))
    result = CliRunner().invoke(main, ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s"])
    assert result.exit_code == 2 and says in result.output, result.output
    assert "--no-pretrained" not in result.output and "measured" not in result.output
    if "pretrained = true" in train:
        assert "--set pretrained=false" in result.output


def test_a_weights_file_keeps_members_to_its_model_and_pretrained_ones_to_families_with_weights(monkeypatch):
    from comptk.auto.plan import families
    from comptk.train import weights

    base = resolve(None, {"model": "resnet18", "pretrained": False})
    assert families(base) == ["resnet18", "efficientnet_b0"]
    assert families(replace(base, weights="r18.pth")) == ["resnet18"]  # the file is resnet18's checkpoint
    monkeypatch.setattr(weights, "weights_obtainable", lambda model: model == "resnet18")
    assert families(replace(base, pretrained=True)) == ["resnet18"]
    monkeypatch.setattr(weights, "weights_obtainable", lambda model: True)
    assert families(replace(base, pretrained=True)) == ["resnet18", "efficientnet_b0"]
