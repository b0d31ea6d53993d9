"""``comptk auto``: measure, plan, train each member as a normal run, blend, report.

Each member is trained by a ``comptk train`` child process (the same code path as the command,
so every member is a normal run that ``comptk runs`` lists and ``comptk ensemble`` can blend).
A child is the unit the budget can stop cleanly: at the deadline it is killed, its finished
folds stay on disk (atomic writes), and it is left out of the blend. The plan is saved in
WORKDIR/auto/NAME/plan.json, so running the same command again resumes: finished members are
kept, an interrupted one goes on from its finished folds, and the rest is planned anew for the
new budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifacts
from ..child_process import spawn_member
from ..competition import Competition, load_competition
from ..config import AUTO_KEYS, TrainConfig, resolve_run, settings_text
from ..data.facts import competition_facts, train_counts
from ..data.folds import check_fold_counts, folds_digest, load_or_make_folds, most_folds
from ..data.image_cache import load_competition_images
from ..data.layouts import read_data
from ..data.tables import CompetitionData
from ..errors import ComptkError
from ..label_shift import summary_line
from ..train.engine import autocast_dtype, resolve_device
from ..train.pseudo import NoConfidentRows, select_pseudo_labels
from ..train.tta import TTA, valid_crop
from .budget import format_seconds, parse_budget
from .measure import Throughput, measure_loop, measure_throughput
from .plan import (
    DEFAULT_FACTOR,
    MAX_MEMBERS,
    PRESETS,
    LoopFactors,
    Member,
    Workload,
    class_balance,
    families,
    fewer_folds_note,
    folds_for_budget,
    plan_members,
)

# 2: loop factors per model family; 3: the settings every member was given, and factors relative to the real
# loop's speed (measure_loop). Factors of an earlier version are not used: most were relative to other speeds.
PLAN_VERSION = 3


@dataclass(frozen=True)
class AutoResult:
    name: str
    submission: Path
    cv: float
    metric: str
    members: list[dict]  # name, model, seed, epochs, estimate_s, seconds, cv, status
    blend_method: str
    seconds: float
    budget_s: float
    report: Path


def blend_reserve_s(n_train: int, n_members: int) -> float:
    """Time kept for the blend: fitting five methods cross-validated on the OOF rows."""
    return 15.0 + 4e-4 * n_train * max(n_members, 2)


def run_auto(
    competition: Competition | str | Path,
    *,
    budget: str | float,
    preset: str = "fast",
    workdir: str | Path = ".",
    data_dir: str | Path | None = None,
    name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    pseudo_labels: bool | None = None,
    label_shift: str = "none",
    echo: Callable[[str], None] = print,
    started: float | None = None,
) -> AutoResult:
    """Train and blend the members that fit ``budget`` (seconds, or text like "15m"), write
    submissions/NAME.csv and WORKDIR/auto/NAME/report.md. ``settings`` pin training settings for
    every member (the competition's [train] table and the fitted defaults fill the rest).
    ``pseudo_labels``: plan a student (plan.py) pseudo-labelled by the first member; None: when the
    declaration says ``pseudo_labels_allowed = true``.
    ``label_shift``: em corrects the submission for the estimated test class prior (label_shift.py).
    ``started``: the ``time.monotonic()`` reading the budget counts from (the command line's: its process start);
    default now."""
    started = time.monotonic() if started is None else started
    budget_s = parse_budget(str(budget)) if not isinstance(budget, (int, float)) else float(budget)
    if preset not in PRESETS:
        raise ComptkError(f"--preset '{preset}' is not known; choose one of {', '.join(PRESETS)}")
    workdir = Path(workdir)
    comp = competition if isinstance(competition, Competition) else load_competition(competition, workdir)
    name = artifacts.check_run_name(name or f"auto-{comp.name}")
    pins = dict(settings or {})
    for key in ("model", "seed", "epochs"):
        if key in pins:
            raise ComptkError(f"auto chooses '{key}' per member; pin other settings, or train with `comptk train`")
    for key in ("pseudo_run", "pseudo_teacher"):
        if key in pins:
            raise ComptkError(f"auto chooses '{key}' for its student member: give --pseudo-labels (or "
                              f"--no-pseudo-labels) instead of --set {key}")
    pseudo_why = _pseudo_labels(comp, pseudo_labels)
    folder = workdir / "auto" / name
    state = _load_state(folder, comp, preset)
    _check_name_free(workdir, name, state)
    trained = [Member(**m["member"]) for m in state.get("members", []) if _finished(workdir, m["member"]["name"])]
    pending = [Member(**m["member"]) for m in state.get("members", [])
               if m["member"]["name"] not in {t.name for t in trained} and _started(workdir, m["member"]["name"])]
    saved_k = int(state["settings"]["n_folds"]) if (trained or pending) and state.get("folds_chosen_by_auto") else None
    if saved_k is not None and pins.get("n_folds") == saved_k:
        del pins["n_folds"]  # auto's own K given again: settings fitted to the data are fitted as when it chose K
    folds_given = "n_folds" in {*comp.folds_defaults(), *comp.train_defaults(), *pins}
    may_choose_folds = not (trained or pending or folds_given)  # a fresh plan whose K nobody gave
    base = resolve_run(comp, pins, facts=lambda: competition_facts(comp, comp.data_path(workdir, data_dir)))
    # Settings fitted to the data ("auto": declared, or no [train] table, or --set KEY=auto) are fitted once,
    # here, and pinned: every member trains at the size (and with the settings) the plan measured.
    if pseudo_why and (base.pseudo_run or base.pseudo_teacher != "run"):
        raise ComptkError(f"{comp.source or comp.name} [train] sets pseudo_run or pseudo_teacher, and auto's student "
                          "chooses its own teacher: remove them from [train], or give --no-pseudo-labels")
    fitted = {*comp.auto_train, *(k for k, v in pins.items() if v == "auto")} - {"model", "epochs"}
    pins = {**pins, **{k: getattr(base, k) for k in AUTO_KEYS if k in fitted}}
    data = read_data(comp, comp.data_path(workdir, data_dir))
    balance = class_balance(comp.metric, np.array(train_counts(data)),
                            {*comp.train_defaults(), *pins})
    if balance:
        pins["sampler"] = "weighted"
        base = dataclasses.replace(base, sampler="weighted")
    device = resolve_device(base.device)
    deadline = started + budget_s
    fewer_folds = None  # why auto chose fewer folds than the default, if it did
    if saved_k is not None:  # members to keep or resume on auto's folds
        k = base.n_folds if folds_given else saved_k  # other folds given now are refused with the settings below
        pins["n_folds"] = k
        base = dataclasses.replace(base, n_folds=k)
        if k == saved_k:
            fewer_folds = f"{k} folds, as auto chose for this plan when it started"
    most = most_folds(data.train.labels, data.train.groups)
    if may_choose_folds and 2 <= most < base.n_folds:  # K nobody chose, more than the data can fill
        why = (f"the train rows form {most} groups" if most < most_folds(data.train.labels)
               else f"the smallest class has {most} images")
        fewer_folds = f"{most} folds instead of {base.n_folds}: {why}, and every fold needs one"
        pins["n_folds"] = most
        base = dataclasses.replace(base, n_folds=most)
    check_fold_counts(data.train.labels, base.n_folds, data.train.groups, data.classes,  # before any time is spent
                      option="--set n_folds={}")
    _check_weights(base)

    images = load_competition_images(data, base.img_size, workdir=workdir)  # members then read the cache
    echo(f"auto {name}: {comp.name}, {len(data.train.ids)} train / {len(data.test.ids)} test images, "
         f"metric {comp.metric}, {'up to ' if may_choose_folds else ''}{base.n_folds} folds "
         f"(folds seed {base.folds_seed}), device {device}"
         f"{_precision(device, base)}; budget {format_seconds(budget_s)}, preset {preset}")
    echo(f"  {images.describe()}")
    if balance:
        echo(f"  {balance}")
    if fewer_folds:
        echo(f"  {fewer_folds}")
    if pseudo_why:
        echo(f"  {pseudo_why}")
    crop = valid_crop(comp, base)
    work = Workload(n_train=len(data.train.ids), n_test=len(data.test.ids), n_folds=base.n_folds,
                    valid_views=(5 if base.valid_crop == "five" else 1) if crop is not None else 1,
                    tta_views=len(TTA.get(base.tta)()))
    speeds: dict[str, Throughput] = {}

    def throughput(model: str) -> Throughput:
        if model not in speeds:
            cfg = dataclasses.replace(base, model=model)
            quick = measure_throughput(cfg, data.n_classes, device)
            speeds[model] = measure_loop(cfg, comp, images.train, data.train.labels, data.n_classes, device, quick)
            echo(f"  measured {model} at {base.img_size} px, batch {base.batch_size}: "
                 f"{speeds[model].train_images_per_s:.0f} train / {speeds[model].predict_images_per_s:.0f} "
                 f"predict images/s in the training loop ({quick.train_images_per_s:.0f} / "
                 f"{quick.predict_images_per_s:.0f} on random tensors)")
        return speeds[model]

    factor = loop_factors(state)
    if trained or pending:  # members to keep or resume: they must have been given the same settings
        _check_same_settings(state, pins, folder, name)
    _check_trained_earlier(trained, pending, workdir, name, comp, data, base)
    students = [m.name for m in trained + pending if m.teacher]
    if students and pseudo_why is None:
        how = ("the declaration forbids them" if comp.pseudo_labels_allowed is False
               else "give --pseudo-labels to resume it")
        raise ComptkError(f"auto {name}: {folder / 'plan.json'} has a pseudo-labelled member ({students[0]}), and "
                          f"pseudo-labels are off now ({how}); or start afresh with another --name")
    reserve = blend_reserve_s(work.n_train, len(PRESETS[preset]))
    # With room for more members, the families are measured before the time is shared out: measuring takes some.
    if len(trained) + len(pending) < MAX_MEMBERS[preset]:
        for model in families(base):
            throughput(model)
    if may_choose_folds:
        left = deadline - time.monotonic() - reserve
        k = folds_for_budget(base, work, throughput, left, factor, pseudo_rows=work.n_test if pseudo_why else None)
        for_student = bool(pseudo_why) and k != folds_for_budget(base, work, throughput, left, factor)
        if k != base.n_folds:
            fewer_folds = fewer_folds_note(base, k, for_student=for_student)
            echo(f"  {fewer_folds}")
            pins["n_folds"] = k
            base, work = dataclasses.replace(base, n_folds=k), dataclasses.replace(work, n_folds=k)
    resumed = {m.name for m in pending}  # they run only their unfinished folds: their time measures nothing

    def student_plan() -> dict[str, Any]:
        """plan_members' pseudo-label arguments: the trained teacher, and the rows its student will add."""
        if pseudo_why is None:
            return {}
        teacher = next((m.name for m in trained if (m.model, m.seed, m.teacher) == (base.model, base.seed, "")), "")
        rows = _confident_rows(workdir, teacher, base.pseudo_threshold, data) if teacher else work.n_test
        if rows == 0:  # the teacher is sure of no test row: a student would learn nothing more
            return {}
        return {"pseudo_rows": rows, "teacher": teacher}

    members = pending + plan_members(base, work, throughput, deadline - time.monotonic() - reserve - _cost(pending),
                                     preset=preset, factor=factor, prefix=name, done=trained + pending,
                                     **student_plan())
    plan_s = sum(m.estimate_s for m in members) + _blend_s(reserve, trained, members)
    echo(f"plan: {len(members)} member(s) to train"
         + (f", {len(trained)} trained earlier" if trained else "")
         + f"; estimated {format_seconds(plan_s)}" + (" with the blend" if len(trained) + len(members) > 1 else "")
         + f" (finishing about {format_seconds(time.monotonic() - started + plan_s)} after the start)")
    for m in trained:
        echo(f"  = {m.name}: trained earlier")
    for i, m in enumerate(members, 1):
        echo(f"  {i}. {m.name}: {m.model}, seed {m.seed}, {m.epochs} epochs, ~{format_seconds(m.estimate_s)}"
             + (f", pseudo-labelled by {m.teacher}" if m.teacher else ""))
    saved = {m["member"]["name"]: m for m in state.get("members", [])}
    records = {}
    for m in trained:  # with the time and CV plan.json kept (a plan saved before it kept CVs: the member's record)
        kept = {k: saved[m.name][k] for k in ("seconds", "cv") if k in saved[m.name]}
        if "cv" not in kept:
            kept["cv"] = artifacts.read_record(artifacts.RunPaths(workdir, m.name).sidecar).cv.oof
        records[m.name] = {"member": dataclasses.asdict(m), "status": "trained earlier", **kept}
    _save_state(folder, comp, preset, budget_s, factor, trained, members, pins, fewer_folds is not None, records)

    queue, failed, stopped = list(members), [], []
    while queue:
        member = queue.pop(0)
        left = deadline - time.monotonic() - reserve
        if member.teacher and member.teacher not in {t.name for t in trained}:
            records[member.name] = {"member": dataclasses.asdict(member),
                                    "status": f"dropped: its teacher {member.teacher} did not finish"}
            echo(f"  - {member.name}: dropped, its teacher {member.teacher} did not finish")
            continue
        if left < STOP_MARGIN_S:
            records[member.name] = {"member": dataclasses.asdict(member), "status": "dropped: no time left"}
            echo(f"  - {member.name}: dropped, no time left")
            continue
        t0 = time.monotonic()
        status = _train_member(comp, member, pins, workdir, data_dir, folder, timeout=left, label_shift=label_shift,
                               resumed=member.name in resumed)
        seconds = time.monotonic() - t0
        record = {"member": dataclasses.asdict(member), "status": status, "seconds": seconds}
        if status == "trained":
            record["cv"] = artifacts.read_record(artifacts.RunPaths(workdir, member.name).sidecar).cv.oof
            trained.append(member)
            if member.name not in resumed:
                factor = factor.recalibrated(member.model, member.estimate_s, seconds)
            echo(f"  + {member.name}: CV {comp.metric} {record['cv']:.4f} in {format_seconds(seconds)} "
                 f"(estimated {format_seconds(member.estimate_s)})")
            # re-plan what is left with the time left and the re-measured factor (more may fit now)
            queue = plan_members(base, work, throughput, deadline - time.monotonic() - reserve, preset=preset,
                                 factor=factor, prefix=name, done=trained + failed + stopped,
                                 **student_plan())
            finish = time.monotonic() - started + _cost(queue) + _blend_s(reserve, trained, queue)
            echo("  re-planned: " + (", ".join(f"{m.name} ~{format_seconds(m.estimate_s)}" for m in queue)
                                    or "nothing more fits")
                 + f"; finishing about {format_seconds(finish)} after the start")
        else:
            (stopped if status.startswith("stopped") else failed).append(member)
            echo(f"  - {member.name}: {status}")
        records[member.name] = record
        _save_state(folder, comp, preset, budget_s, factor, trained, stopped + queue, pins,  # stopped ones resume
                    fewer_folds is not None, records)

    if not trained:
        out_of_time = stopped or any(r.get("status") == "dropped: no time left" for r in records.values())
        if failed and not out_of_time:  # every member failed on its own: more time would not help
            first = records[failed[0].name]["status"]
            raise ComptkError(f"auto {name}: no member finished: every member failed ({failed[0].name}: {first})")
        raise ComptkError(f"auto {name}: no member finished within {format_seconds(budget_s)}; "
                          f"give a larger --budget (see {folder / 'plan.json'})")
    result = _blend(name, trained, workdir, label_shift, echo)
    seconds = time.monotonic() - started
    report = _write_report(folder, name, comp, budget_s, seconds, plan_s, records, result, pins,
                           [why for why in (balance, fewer_folds, _student_outcome(pseudo_why, trained)) if why])
    echo(f"blend {name} ({result['method']}): CV {comp.metric} {result['cv']:.4f} (cross-validated, pooled OOF) "
         f"from {len(trained)} member(s)")
    if result.get("label_shift"):
        echo(f"  {result['label_shift']}")
    echo(f"finished in {format_seconds(seconds)} of {format_seconds(budget_s)} "
         f"(planned {format_seconds(plan_s)})\nsubmission: {result['submission']}\nreport: {report}")
    return AutoResult(name=name, submission=Path(result["submission"]), cv=result["cv"], metric=comp.metric,
                      members=list(records.values()), blend_method=result["method"], seconds=seconds,
                      budget_s=budget_s, report=report)


STOP_MARGIN_S = 20.0  # no member is started with less time than this


def _pseudo_labels(comp: Competition, wanted: bool | None) -> str | None:
    """Why auto plans a student pseudo-labelled by its first member (plan.py), or None. It trains on the test
    images (never their labels, which it has not), which some contests' rules forbid: by default only when the
    declaration says the rules allow it."""
    where = comp.source or comp.name
    if wanted is False or (wanted is None and not comp.pseudo_labels_allowed):
        return None
    if comp.pseudo_labels_allowed is False:
        raise ComptkError(f"--pseudo-labels: {where} says pseudo_labels_allowed = false (the rules forbid training "
                          "on test images)")
    given = "the declaration allows it (pseudo_labels_allowed = true; --no-pseudo-labels turns it off)" \
        if wanted is None else "--pseudo-labels"
    return ("pseudo-labels: the first member's second seed is a student: fold k also trains on the test images "
            f"that the first member's fold k predicts confidently, with those labels; {given}")


def _student_outcome(pseudo_why: str | None, trained: Sequence[Member]) -> str | None:
    """The report's line on pseudo-labels: why a student trained, or that none did."""
    if pseudo_why is None or any(m.teacher for m in trained):
        return pseudo_why
    return ("pseudo-labels were allowed, but no student finished (no time for one beside its teacher, its teacher "
            "did not finish, or the teacher was sure of no test row)")


def _confident_rows(workdir: Path, teacher: str, threshold: float, data: CompetitionData) -> int:
    """The most test rows one of the teacher's folds predicts with probability >= threshold: what each of its
    student's fold models adds to its training rows (pseudo.py); 0 when none does."""
    try:
        pseudo = select_pseudo_labels(workdir, teacher, threshold, data, teacher="fold")
    except NoConfidentRows:
        return 0
    return max(len(rows) for rows, _ in pseudo.by_fold)


def loop_factors(state: Mapping[str, Any]) -> LoopFactors:
    """The measured loop factors of a saved plan (plan.json). Those of an earlier PLAN_VERSION are left out
    (version 1: one factor measured on whichever family ran first; version 2: factors relative, but for
    a few development versions, to the random-tensor speeds, which would count the loop's own costs twice
    now): a family not measured is planned cautiously."""
    if state.get("version", 1) < PLAN_VERSION:
        return LoopFactors({}, DEFAULT_FACTOR)
    return LoopFactors({str(k): float(v) for k, v in state.get("factors", {}).items()}, DEFAULT_FACTOR)


def _check_same_settings(state: Mapping[str, Any], pins: Mapping[str, Any], folder: Path, name: str) -> None:
    """A plan is resumed only with the settings its members were given: members trained with others would be
    blended with new ones as if alike, and one resumed with others is refused by its run's identity check."""
    if "settings" not in state:  # a plan of an earlier version: its members' own files say what they had
        return
    saved = dict(state["settings"])
    now = json.loads(json.dumps(dict(pins)))  # as saved: JSON values
    if saved != now:
        changed = sorted(k for k in {*saved, *now} if saved.get(k) != now.get(k))
        what = ", ".join(f"{k} ({saved.get(k, 'unset')!r} -> {now.get(k, 'unset')!r})" for k in changed)
        why = (" (auto chose n_folds for this plan: its members' folds cannot change)"
               if "n_folds" in changed and state.get("folds_chosen_by_auto") else "")
        raise ComptkError(f"auto {name}: {folder / 'plan.json'} was planned with other member settings: {what}{why}; "
                          f"give the same --set to resume it, or start afresh with another --name")


def _check_trained_earlier(trained: list[Member], pending: list[Member], workdir: Path, name: str,
                           comp: Competition, data: CompetitionData, base: TrainConfig) -> None:
    """Members kept or resumed from an earlier call must still match the data and be on the folds the declaration
    gives now (K, folds seed, group column: a member on other folds could not be blended with the new ones, and one
    whose folds no longer keep groups together has a leaking CV), and share them (as a blend checks), before any
    time is spent: otherwise the blend would fail at the end of the budget."""
    if not trained and not pending:
        return
    from ..ensemble.validate import load_members, load_truth

    fold, _ = load_or_make_folds(workdir, comp.name, data.train, base.n_folds, base.folds_seed, data.classes)
    now = {"folds_digest": folds_digest(data.train.ids, fold)}
    for member in trained + pending:
        artifacts.check_same_run(artifacts.RunPaths(workdir, member.name), now, fix=(
            f"auto {name} trained it on other folds than the declaration and data give now (another K, folds seed, "
            f"[columns] group, or train rows or labels); restore them to resume, or start afresh with another --name"))
    if len(trained) < 2:  # one member is checked by its own resume rules when blended alone
        return
    try:
        load_truth(load_members([artifacts.RunPaths(workdir, m.name).oof for m in trained]))
    except ComptkError as exc:
        raise ComptkError(f"auto {name}: a member trained earlier no longer fits ({exc}); start afresh with "
                          f"another --name") from None


def _check_name_free(workdir: Path, name: str, state: Mapping[str, Any]) -> None:
    """auto writes its blend as NAME (oof/NAME.json, submissions/NAME.csv, replacing its own earlier blend): a
    training run of that name, or a blend this plan did not make, is refused before any time is spent."""
    paths = artifacts.RunPaths(workdir, name)
    if paths.is_training_run():
        where = paths.run_dir if paths.run_dir.exists() else paths.sidecar
        raise ComptkError(f"auto {name}: '{name}' is a training run ({where}); auto writes its blend under its "
                          f"--name: choose another")
    if paths.sidecar.is_file() and not state:
        raise ComptkError(f"auto {name}: a blend '{name}' exists ({paths.sidecar}) that this plan did not make "
                          f"(no {workdir / 'auto' / name / 'plan.json'}); choose another --name")


def _check_weights(base: TrainConfig) -> None:
    """The weights every member of the recipe's model will load, checked before any time is spent (a member would
    fail on them only after the measuring); the ways out as auto spells them."""
    from ..train.weights import require_pretrained

    if base.weights:
        if not Path(base.weights).is_file():
            raise ComptkError(f"weights file not found: {base.weights} (--set weights)")
    elif base.pretrained:
        require_pretrained(base.model, flags=("--set weights=FILE", "--set pretrained=false"))


def _precision(device, base: TrainConfig) -> str:
    dtype = autocast_dtype(device, base.precision)
    return f" ({str(dtype).replace('torch.', '')} autocast)" if dtype is not None else ""


def _cost(members: list[Member]) -> float:
    return sum(m.estimate_s for m in members)


def _blend_s(reserve: float, trained: list[Member], planned: list[Member]) -> float:
    """The time kept for the blend, when there will be one (one member is its own submission)."""
    return reserve if len(trained) + len(planned) > 1 else 0.0


def _finished(workdir: Path, name: str) -> bool:
    return artifacts.RunPaths(workdir, name).is_finished()


def _started(workdir: Path, name: str) -> bool:
    return artifacts.RunPaths(workdir, name).run_dir.is_dir()


def _load_state(folder: Path, comp: Competition, preset: str) -> dict:
    path = folder / "plan.json"
    if not path.is_file():
        return {}
    state = artifacts.load_json(path)
    if state.get("competition") != comp.name:
        raise ComptkError(f"{path} belongs to competition '{state.get('competition')}'; use another --name")
    return state


def _save_state(folder: Path, comp: Competition, preset: str, budget_s: float, factor: LoopFactors,
                trained: list[Member], planned: list[Member], pins: Mapping[str, Any] | None = None,
                folds_chosen_by_auto: bool = False, records: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """plan.json; a trained member keeps the wall time it took and its CV (``records``) for a later call's report."""
    def kept(m: Member) -> dict[str, Any]:
        return {k: v for k, v in (records or {}).get(m.name, {}).items() if k in ("seconds", "cv")}

    artifacts.save_json(folder / "plan.json", {
        "version": PLAN_VERSION, "competition": comp.name, "preset": preset, "budget_s": budget_s,
        "factors": dict(factor.measured), "settings": dict(pins or {}), "folds_chosen_by_auto": folds_chosen_by_auto,
        "members": [{"member": dataclasses.asdict(m), "status": "trained", **kept(m)} for m in trained]
        + [{"member": dataclasses.asdict(m), "status": "planned"} for m in planned],
    })


def _train_member(comp: Competition, member: Member, pins: Mapping[str, Any], workdir: Path,
                  data_dir: str | Path | None, folder: Path, *, timeout: float, label_shift: str = "none",
                  resumed: bool = False) -> str:
    """Train one member with `comptk train` in a child process; 'trained', or why not. A member that another
    process finished while this one's child waited for its lock is trained, if it was this plan's to resume
    (``resumed``: begun by an earlier call) or was not finished when the child started (else it is another run
    of that name, which `comptk train` refuses)."""
    settings = folder / "members" / f"{member.name}.toml"
    values = {**pins, **member.settings()}
    with artifacts.atomic_path(settings) as tmp:
        tmp.write_text(settings_text(values, f"auto member {member.name}"), encoding="utf-8")
    command = [sys.executable, "-m", "comptk", "train", str(comp.source), "--workdir", str(workdir),
               "--name", member.name, "--settings", str(settings), "--quiet", "--no-plots",
               "--label-shift", label_shift]
    if data_dir is not None:
        command += ["--data", str(data_dir)]
    log_path = folder / "members" / f"{member.name}.log"
    finished_before = _finished(workdir, member.name)
    with open(log_path, "ab") as log, _signals_raise():
        child = spawn_member(command, log)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(child)
            return "stopped at the budget (its finished folds are kept: re-run to resume)"
        except BaseException:
            _stop(child)
            raise
    if code != 0 and (resumed or not finished_before) and _finished(workdir, member.name):
        return "trained"  # finished meanwhile by the process of an earlier, killed call (this one waited for it)
    if code != 0:
        lines = [line for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        return f"failed ({lines[-1] if lines else f'exit {code}'}; log {log_path})"
    return "trained"


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGHUP (a closed terminal, `kill`) raise SystemExit while a member trains, as Ctrl-C raises
    KeyboardInterrupt, so the member's child is stopped rather than left training (main thread only). A signal
    the process ignores (SIGHUP under nohup) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    wanted = [sig for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
              if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN]  # nohup's SIGHUP stays ignored
    before = {sig: signal.signal(sig, stop) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _stop(child: subprocess.Popen) -> None:
    with _quiet():
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with _quiet():
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return exc[0] is ProcessLookupError


def _blend(name: str, trained: list[Member], workdir: Path, label_shift: str,
           echo: Callable[[str], None] = print) -> dict:
    """The blend of the members (submissions/NAME.csv, a run-like record oof/NAME.json); with one member,
    that member's own submission (its record says how it was made)."""
    if len(trained) == 1:
        only = artifacts.RunPaths(workdir, trained[0].name)
        record = artifacts.read_record(only.sidecar)
        return {"method": f"single member {trained[0].name}", "cv": record.cv.oof,
                "submission": str(only.submission), "weights": {trained[0].name: 1.0},
                "label_shift": summary_line(record.label_shift)}
    submission = artifacts.RunPaths(workdir, name).submission
    from ..ensemble import blend

    result = blend([artifacts.RunPaths(workdir, m.name).oof for m in trained], out=submission, method="auto",
                   workdir=workdir, force=True, label_shift=label_shift, echo=echo)
    return {"method": result.method, "cv": result.cv, "submission": str(result.submission),
            "weights": result.weights, "label_shift": summary_line(result.record.label_shift)}


def _write_report(folder: Path, name: str, comp: Competition, budget_s: float, seconds: float, planned_s: float,
                  records: dict, result: dict, pins: Mapping[str, Any], chosen: Sequence[str] = ()) -> Path:
    pinned = ", ".join(f"{k} = {json.dumps(v)}" for k, v in pins.items()) or "none (the competition's [train] table)"
    lines = [f"# auto {name}", "", f"competition {comp.name}, metric {comp.metric}; budget {format_seconds(budget_s)}, "
             f"wall time {format_seconds(seconds)} (planned {format_seconds(planned_s)})", "",
             f"settings of every member besides model, seed and epochs: {pinned}", "",
             *[line for why in chosen for line in (f"chosen by auto: {why}", "")],
             "| member | model | seed | epochs | estimated | took | CV | status |", "|---|---|---|---|---|---|---|---|"]
    for rec in records.values():
        m = rec["member"]
        took = format_seconds(rec["seconds"]) if "seconds" in rec else ""
        cv = f"{rec['cv']:.4f}" if "cv" in rec else ""
        lines.append(f"| {m['name']} | {m['model']} | {m['seed']} | {m['epochs']} | {format_seconds(m['estimate_s'])} "
                     f"| {took} | {cv} | {rec['status']} |")
    weights = result["weights"] or f"none per member (the {result['method']} method has none)"
    lines += ["", f"blend: {result['method']}, CV {result['cv']:.4f} (cross-validated, pooled OOF)",
              f"weights: {weights}",
              *([result["label_shift"]] if result.get("label_shift") else []), f"submission: {result['submission']}",
              ""]
    path = folder / "report.md"
    with artifacts.atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path
