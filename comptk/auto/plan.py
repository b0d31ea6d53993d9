"""Plan the members of an ``auto`` ensemble so they fit a wall-clock budget.

Members are normal K-fold runs on the competition's shared folds, differing in model family
and seed (the seed changes initialisation, sampling and augmentation, not the folds). The
ladder of candidates (``PRESETS``) alternates families and seeds, so the members taken from its
start are a diverse ensemble. Walking the ladder, the plan takes each candidate with which every
member still gets the recipe's epochs when the time is shared equally (at most 1.5x; time a
capped member does not need goes to the others); a candidate too slow is skipped.

Why whole recipes, not more members at fewer epochs: each member is already an average of K fold
models, so a seed average adds little, while epochs cut short cost every member accuracy. On
Fashion-MNIST 12k (5 folds, small_resnet, recipe 19 epochs) three seeds at 13-16 epochs averaged
0.9084 test accuracy, below one run of 19 epochs (0.9109) and of 27 (0.9151); and a member of 13
epochs added to the one of 27 with the time left pulled the blend down to 0.9114, though its
cross-validated score rose (docs/ensembling.md says why). So time left over stays unused. For the same
reason, when nobody chose K and a single member of the recipe's model cannot get the recipe's epochs with the
default K, the plan takes fewer folds (``folds_for_budget``) before fewer epochs (or before the other family, when
only that one fits).

Time model of one member (seconds), from measured images/s (measure.py) and a loop factor:

    final     = (train rows x valid views + K x test rows) x TTA views / predict ips
    per epoch = K x (train rows of a fold / train ips + valid rows of a fold x valid views / predict ips)
    member    = start-up + factor x (final + epochs x per epoch)

``factor`` is kept per model family (``LoopFactors``): it starts at ``DEFAULT_FACTOR`` and is
re-measured on each finished member of that family (runner.py). A member that overruns the budget is
lost whole, one that finishes early loses only the rest of the budget (which re-planning gives to
another member), so a family not measured yet is *fitted* into the time with the largest factor seen
(never below the default) times ``UNMEASURED_MARGIN``; its printed estimate uses the factor without
the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from ..config import TrainConfig
from .measure import Throughput

# What the loop measurement (measure.measure_loop) leaves out: per-epoch validation bookkeeping, fold
# start-up and writing. Before the loop was measured, speeds came from random-tensor steps alone and
# first members took 0.8-1.32x their estimates; with it, 0.77-1.08x (four runs, docs/benchmarks.md).
DEFAULT_FACTOR = 1.0
# A member that overruns is lost whole (a 60k run at about 1.13x lost its only member at the budget), so
# a family not measured yet on a finished member is fitted into the time with this margin on its factor.
# It is for the machine more than for the measurement: the same loop measured 698, 891 and 958 images/s
# within minutes on an otherwise idle 2-core CPU.
UNMEASURED_MARGIN = 1.3
SAFETY = 0.92  # plan members into this share of the time left: estimates are good to about +-10%
STARTUP_SECONDS = 8.0  # a member's process: imports, reading the tables and the image cache, pre-flight
MIN_EPOCH_SHARE, MAX_EPOCH_SHARE = 1.0, 1.5  # of the recipe's epochs, per member
# Fewer folds before fewer epochs (folds_for_budget), but never below 3: each fold model still trains on 2/3 of
# the rows (with 2, on half of them).
MIN_FOLDS = 3
SMALL_CNNS = ("small_resnet", "small_resnet_wide")
TIMM_FAMILIES = ("resnet18", "efficientnet_b0", "convnext_nano")
# ladder of (family index, seed offset); any prefix is a diverse ensemble
PRESETS: dict[str, tuple[tuple[int, int], ...]] = {
    "fast": ((0, 0), (1, 0), (0, 1), (0, 2)),
    "best": ((0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)),
}
MAX_MEMBERS = {"fast": 3, "best": 6}
# Imbalance: a metric that counts every class equally (macro F1) on a train set whose classes differ
# this much (largest / smallest) gets members that draw the classes equally often, unless the
# declaration or the command line chose how to treat imbalance (IMBALANCE_SETTINGS).
CLASS_EQUAL_METRICS = ("macro_f1",)
BALANCE_MIN_RATIO = 3.0
IMBALANCE_SETTINGS = ("sampler", "class_cap", "class_weights", "loss")


def class_balance(metric: str, class_counts: Sequence[int], chosen: Collection[str]) -> str | None:
    """Why every member trains with ``sampler = "weighted"`` (classes drawn equally often), or None.

    Trained on the train proportions, a model under-predicts the small classes, which macro F1 counts
    as much as the large ones. On fashion-lt (classes of 1,000 down to 50 images, macro F1; 3 folds,
    10 epochs; docs/label-shift.md) the class-balanced sampler raised the cross-validated macro F1 from
    0.469 to 0.642, on validation rows in the train proportions, and the test macro F1 (a balanced
    test set) from 0.458 to 0.711. ``chosen``: the settings the declaration or the command line
    gave; if they treat imbalance themselves, they are kept."""
    counts = [int(c) for c in class_counts if c > 0]
    if metric not in CLASS_EQUAL_METRICS or len(counts) < 2 or set(IMBALANCE_SETTINGS) & set(chosen):
        return None
    ratio = max(counts) / min(counts)
    if ratio < BALANCE_MIN_RATIO:
        return None
    return (f"train classes of {max(counts)} down to {min(counts)} images ({ratio:.3g}x) and {metric} counts each "
            f"class equally: every member draws the classes equally often (sampler = weighted; "
            f"--set sampler=random keeps the train proportions)")


@dataclass(frozen=True)
class Workload:
    """What one member has to compute."""

    n_train: int
    n_test: int
    n_folds: int
    valid_views: int  # 5 when validation rows are predicted as five crops (test-time crops), else 1
    tta_views: int
    n_extra: int = 0  # pseudo-labelled test rows each fold model also trains on (a student)

    @property
    def fold_train(self) -> float:
        return self.n_train * (self.n_folds - 1) / self.n_folds + self.n_extra


@dataclass(frozen=True)
class Member:
    name: str
    model: str
    seed: int
    epochs: int
    estimate_s: float
    teacher: str = ""  # a student: pseudo-labelled, fold by fold, by this member's folds (pseudo.py)

    def settings(self) -> dict:
        """The member's own settings on top of the competition's (its [train] table)."""
        own = {"model": self.model, "seed": self.seed, "epochs": self.epochs}
        if self.teacher:
            own.update(pseudo_run=self.teacher, pseudo_teacher="fold")
        return own


@dataclass(frozen=True)
class LoopFactors:
    """The loop factor of each model family: measured on its finished members, else the largest of the
    default and the measured ones (see the module docstring)."""

    measured: Mapping[str, float] = field(default_factory=dict)
    default: float = DEFAULT_FACTOR

    def __call__(self, model: str) -> float:
        return self.measured.get(model, max([self.default, *self.measured.values()]))

    def fitting(self, model: str) -> float:
        """The factor a member is fitted into the time with: its family's, or, not measured yet,
        the cautious one (``UNMEASURED_MARGIN``)."""
        return self(model) if model in self.measured else self(model) * UNMEASURED_MARGIN

    def recalibrated(self, model: str, estimate_s: float, seconds: float) -> LoopFactors:
        """With ``model``'s factor re-measured on a member estimated at ``estimate_s`` that took ``seconds``."""
        new = recalibrate(self(model), estimate_s, seconds, first=model not in self.measured)
        return replace(self, measured={**self.measured, model: new})


def recalibrate(factor: float, estimate_s: float, seconds: float, *, first: bool) -> float:
    """The loop factor re-measured on a finished member: its compute part took ``seconds`` minus the
    start-up where ``estimate_s`` (made with ``factor``) expected it. Members whose compute is only a
    few seconds say little (start-up noise), so they keep the factor; a family's first measurement
    replaces the factor it was planned with, later ones are averaged in; kept within [0.3, 5]."""
    planned = estimate_s - STARTUP_SECONDS
    if planned < 5.0 or seconds <= STARTUP_SECONDS:
        return factor
    measured = factor * (seconds - STARTUP_SECONDS) / planned
    new = measured if first else 0.5 * (factor + measured)
    return min(5.0, max(0.3, new))


def families(base: TrainConfig) -> list[str]:
    """Model families for the ensemble: the recipe's model first, then one of a similar kind
    (comptk's small CNNs for small images; timm ImageNet families otherwise). A weights file is one model's
    checkpoint: with ``weights`` set, the recipe's model alone. With ``pretrained``, the second family only
    when its pretrained weights can be loaded now (the local cache, else the hub answers: asked once a process)."""
    if base.weights:
        return [base.model]
    pool = SMALL_CNNS if base.model in SMALL_CNNS else TIMM_FAMILIES
    others = [m for m in pool if m != base.model][:1]
    if base.pretrained:
        from ..train.weights import weights_obtainable

        others = [m for m in others if weights_obtainable(m)]
    return [base.model, *others]


def member_seconds(epochs: int, work: Workload, tp: Throughput, factor: float) -> float:
    fold_train = work.fold_train
    fold_valid = work.n_train / work.n_folds
    per_epoch = work.n_folds * (fold_train / tp.train_images_per_s
                                + fold_valid * work.valid_views / tp.predict_images_per_s)
    final = (work.n_train * work.valid_views + work.n_folds * work.n_test) * work.tta_views / tp.predict_images_per_s
    return STARTUP_SECONDS + factor * (final + epochs * per_epoch)


def _epochs_within(seconds: float, work: Workload, tp: Throughput, factor: float) -> int:
    fixed = member_seconds(0, work, tp, factor)
    per_epoch = member_seconds(1, work, tp, factor) - fixed
    return int(math.floor((seconds - fixed) / per_epoch)) if seconds > fixed else 0


def folds_for_budget(base: TrainConfig, work: Workload, throughput: Callable[[str], Throughput],
                     available_s: float, factor: float | LoopFactors = DEFAULT_FACTOR,
                     pseudo_rows: int | None = None) -> int:
    """K for a plan whose K nobody chose (neither the declaration nor ``--set``): ``work.n_folds`` (the code's
    default) when one member of the recipe's model gets the recipe's epochs with it, else the most folds, down
    to ``MIN_FOLDS``, with which it does; if it does with none, the most with which the ensemble's other family
    does (plan_members then takes that family instead); ``MIN_FOLDS`` when none does (it gives the most epochs).

    A member's epoch costs K-1 passes over the train rows (K fold models, each on (K-1)/K of them), so 3 folds
    cost half of 5: a budget that cuts a 5-fold member's epochs short gives a 3-fold one up to twice as many,
    for fold models that each see 2/3 of the rows instead of 4/5 and a test prediction averaged over 3 models
    instead of 5. On all 60,000 Fashion-MNIST images in 30 minutes (2-core CPU, one run each, the machine's
    speed differing between them): 5 folds x 12 epochs CV 0.9370, test 0.9355 (1,245 s); 3 folds x 25 epochs CV
    0.9370, test 0.9388 (1,143 s).

    With ``pseudo_rows`` (a student is wanted, plan_members), the most folds with which the teacher gets the
    recipe's epochs beside the student's least time, if any K down to ``MIN_FOLDS`` gives that; else as
    without a student."""
    factor = factor if isinstance(factor, LoopFactors) else LoopFactors(default=factor)
    model, wanted = base.model, max(1, math.ceil(MIN_EPOCH_SHARE * base.epochs))
    if work.n_folds <= MIN_FOLDS:
        return work.n_folds

    def fits(k: int, student: bool, models: Sequence[str]) -> bool:
        folds = replace(work, n_folds=k)
        room = available_s * SAFETY
        if student:  # the least time of a student (plan_members) beside its teacher, both of the recipe's model
            least = _student(model, base.seed, folds, pseudo_rows or 0, wanted, wanted)
            room -= member_seconds(least.low, least.work, throughput(model), factor(model))
        return any(_epochs_within(room, folds, throughput(m), factor.fitting(m)) >= wanted for m in models)

    # the recipe's model (beside its student, if one is wanted) at any K down to MIN_FOLDS; else whichever family
    # fits (plan_members then takes it instead of the recipe's)
    tries = [(True, [model])] if pseudo_rows is not None else []
    for student, models in [*tries, (False, [model]), (False, families(base))]:
        for k in range(work.n_folds, MIN_FOLDS - 1, -1):
            if fits(k, student, models):
                return k
    return MIN_FOLDS


def fewer_folds_note(base: TrainConfig, k: int, *, for_student: bool = False) -> str:
    """What ``auto`` prints when it takes ``k`` folds instead of ``base.n_folds`` (``folds_for_budget``);
    ``for_student``: it did so only to leave the student room beside its teacher."""
    return (f"{k} folds instead of {base.n_folds}: in this budget a {base.n_folds}-fold {base.model} "
            f"member{' beside its student' if for_student else ''} would get fewer than the recipe's "
            f"{base.epochs} epochs, and an epoch of a {k}-fold one trains on "
            f"{Fraction(k - 1, base.n_folds - 1)} as many images (--set n_folds={base.n_folds} keeps {base.n_folds})")


# With pseudo-labels (pseudo_rows given), the ladder's second seed of the first family is a *student*: trained right
# after its teacher (the first family's first seed), on its rows plus the test rows the teacher's fold k predicted
# confidently (fold by fold: pseudo.py, pseudo_teacher = fold).
STUDENT_SLOT = (0, 1)


@dataclass(frozen=True)
class _Candidate:
    model: str
    seed: int
    work: Workload  # a student's has the pseudo-labelled rows (n_extra)
    low: int  # least and most epochs: a student's are scaled to as many optimizer steps as the recipe's
    high: int
    student: bool = False


def plan_members(
    base: TrainConfig,
    work: Workload,
    throughput: Callable[[str], Throughput],
    available_s: float,
    *,
    preset: str = "fast",
    factor: float | LoopFactors = DEFAULT_FACTOR,
    prefix: str = "auto",
    done: Sequence[Member] = (),
    pseudo_rows: int | None = None,
    teacher: str = "",
) -> list[Member]:
    """Members to train in ``available_s`` seconds (besides ``done``, already trained): walking the
    preset's ladder, a candidate joins when every chosen member still gets at least the recipe's
    epochs with the time shared equally (so a family too slow for the budget is skipped, and cheaper
    ones still join). With nothing trained yet (``done`` empty), at least one member: if even one with
    the recipe's epochs does not fit, one member gets the epochs that fit (at least 1). Besides members
    already trained, time too short for the recipe's epochs is left unused.

    ``pseudo_rows`` (pseudo-labelling allowed): the test rows a student's fold model will add to its training
    rows (the teacher's confident rows; before the teacher has run, all test rows). ``teacher``: the trained
    teacher's name, if it has been trained. Before its teacher has run, a student is given the least time it
    needs (``STUDENT_SLOT``'s epochs scaled to the recipe's optimizer steps) and the rest is planned as
    without it; once the teacher has run, the re-plan gives the student its share like any member. Before
    its teacher has run, a student's least time is counted without ``UNMEASURED_MARGIN``: it never starts
    before its teacher, whose finish measures their family and re-plans it (a teacher resumed from its
    finished folds measures nothing, so then the student is fitted with the margin)."""
    available_s *= SAFETY
    factor = factor if isinstance(factor, LoopFactors) else LoopFactors(default=factor)
    names = families(base)
    low, high = max(1, math.ceil(MIN_EPOCH_SHARE * base.epochs)), max(1, math.ceil(MAX_EPOCH_SHARE * base.epochs))
    taken = {(m.model, m.seed) for m in done}
    room = MAX_MEMBERS[preset] - len(done)
    ladder: list[_Candidate] = []  # as without pseudo-labels
    student = None
    for f, s in PRESETS[preset]:
        model, seed = names[f % len(names)], base.seed + s
        if (model, seed) in taken or any((c.model, c.seed) == (model, seed) for c in ladder):
            continue
        ladder.append(_Candidate(model, seed, work, low, high))
        if pseudo_rows is not None and (f, s) == STUDENT_SLOT:
            student = _student(model, seed, work, pseudo_rows, low, high)
    if student is not None:
        others = [c for c in ladder if (c.model, c.seed) != (student.model, student.seed)]
        if teacher:  # trained: the student comes first
            ladder = [student, *others]
        elif others and (others[0].model, others[0].seed) == (names[0], base.seed) and room >= 2:
            # its teacher is to be trained first, in this plan: the student is given the least time it needs
            least = member_seconds(student.low, student.work, throughput(student.model), factor(student.model))
            chosen = _choose(others, available_s - least, room - 1, throughput, factor)
            if chosen and chosen[0][0] is others[0]:
                members = [_member(prefix, c, e, throughput(c.model), factor(c.model)) for c, e in chosen]
                taught = _member(prefix, student, student.low, throughput(student.model), factor(student.model),
                                 teacher=members[0].name)
                return [members[0], taught, *members[1:]]
    chosen = _choose(ladder, available_s, room, throughput, factor)
    if chosen:
        return [_member(prefix, c, e, throughput(c.model), factor(c.model), teacher=teacher) for c, e in chosen]
    if not ladder or room <= 0 or done:  # beside trained members, one with fewer epochs pulls the blend down
        return []
    c = ladder[0]
    e = max(1, min(c.high, _epochs_within(available_s, c.work, throughput(c.model), factor.fitting(c.model))))
    return [_member(prefix, c, e, throughput(c.model), factor(c.model))]


def _student(model: str, seed: int, work: Workload, pseudo_rows: int, low: int, high: int) -> _Candidate:
    """A student candidate: its fold models also train on ``pseudo_rows`` test rows, so its least and most
    epochs are scaled to as many optimizer steps as ``low`` and ``high`` epochs without them."""
    extra = replace(work, n_extra=max(0, int(pseudo_rows)))
    scale = work.fold_train / extra.fold_train
    return _Candidate(model, seed, extra, max(1, math.ceil(low * scale)), max(1, math.ceil(high * scale)),
                      student=True)


def _choose(ladder: Sequence[_Candidate], available_s: float, room: int, throughput: Callable[[str], Throughput],
            factor: LoopFactors) -> list[tuple[_Candidate, int]]:
    """Walk the ladder: a candidate joins when every chosen one still gets its least epochs with the time shared
    equally (_share)."""
    chosen: list[_Candidate] = []
    epochs: list[int] = []
    for candidate in ladder:
        if len(chosen) >= room:
            break
        shares = _share([*chosen, candidate], available_s, throughput, factor)
        if shares is not None:
            chosen, epochs = [*chosen, candidate], shares
    return list(zip(chosen, epochs))


def _share(chosen: Sequence[_Candidate], available_s: float, throughput: Callable[[str], Throughput],
           factors: LoopFactors) -> list[int] | None:
    """Epochs per member when the time is shared equally (capped members give the rest back),
    or None when a member would get fewer than its least epochs."""
    epochs: dict[int, int] = {}
    free, budget = list(range(len(chosen))), available_s
    while free:
        share = budget / len(free)
        fits = {i: _epochs_within(share, chosen[i].work, throughput(chosen[i].model), factors.fitting(chosen[i].model))
                for i in free}
        capped = [i for i in free if fits[i] >= chosen[i].high]
        if not capped:
            if any(fits[i] < chosen[i].low for i in free):
                return None
            epochs.update(fits)
            break
        for i in capped:
            epochs[i] = chosen[i].high
            budget -= member_seconds(chosen[i].high, chosen[i].work, throughput(chosen[i].model),
                                     factors.fitting(chosen[i].model))
            free.remove(i)
    return [epochs[i] for i in range(len(chosen))]


def _member(prefix: str, c: _Candidate, epochs: int, tp: Throughput, factor: float, teacher: str = "") -> Member:
    """A member named by what it is; K is in the name when it is not the default (so a member on other
    folds never meets the run folder of one on the default folds), and a student's ends in -pl."""
    folds = "" if c.work.n_folds == TrainConfig.n_folds else f"-k{c.work.n_folds}"
    return Member(name=f"{prefix}-{c.model}-s{c.seed}-e{epochs}{folds}{'-pl' if c.student else ''}", model=c.model,
                  seed=c.seed, epochs=epochs, estimate_s=member_seconds(epochs, c.work, tp, factor),
                  teacher=teacher if c.student else "")
