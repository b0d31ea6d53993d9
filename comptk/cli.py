"""The comptk command line: each command parses options and calls one library function."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from . import __version__
from .errors import ComptkError


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (click's test runner swaps it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _Group(click.Group):
    """User mistakes (ComptkError) print one line and exit 2; Ctrl-C says how to resume."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ComptkError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished folds are kept; run the same command to resume", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="comptk")
def main() -> None:
    """comptk: image-classification competitions, done right.

    \b
    comptk prepare fashion --train-n 12000   build the local Fashion-MNIST competition
    comptk train fashion --folds 5           K-fold training: OOF + test probabilities, CV, submission
    comptk score submissions/RUN.csv --answers data/fashion/answers.csv
    comptk runs fashion --sort cv --top 10    the local leaderboard of runs and blends
    comptk sweep fashion --models resnet18,small_resnet --folds-subset 0
    comptk inspect fashion --run RUN          data report, duplicates, label issues, outliers
    """
    log = logging.getLogger("comptk")
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        console = _Stderr()
        console.setLevel(logging.INFO)  # per-epoch lines go to the run's log.txt only
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(console)


workdir_option = click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help="Where data/, folds/, oof/, preds/, runs/ and submissions/ live.",
)


@main.command()
@click.argument("name")
@workdir_option
@click.option("--train-n", type=int, default=None,
              help="Keep a stratified subset of N training images (stand-ins: about N training images).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the subset and of the digits split (stand-ins: of everything drawn).")
@click.option("--test-n", type=int, default=None,
              help="Keep a stratified subset of N test images (stand-ins: about N test images).")
@click.option("--force", is_flag=True, help="Rebuild WORKDIR/data/NAME if it exists.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Write here instead of WORKDIR/data/NAME (then train with --data OUT).")
def prepare(name: str, workdir: Path, train_n: int | None, test_n: int | None, seed: int, force: bool,
            out: Path | None) -> None:
    """Build a local competition's data under WORKDIR/data/NAME.

    \b
    fashion, fashion-lt, digits: local data sets (Fashion-MNIST, scikit-learn digits).
    artist, kfood, mask, cifar10, illustration: small generated stand-ins in the contest's own
    layout (not the contest data; with the real data, skip this and pass --data DIR to train).
    """
    from .datasets import prepare as build
    from .datasets.standins import STANDINS

    target = build(name, workdir, train_n=train_n, test_n=test_n, seed=seed, force=force, out=out)
    kind = "stand-in (generated, not the contest data; see STANDIN.md)" if name in STANDINS else "data"
    click.echo(f"wrote {name} {kind}: {target}")


@main.command()
@click.argument("competition")
@workdir_option
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Data folder (overrides the declaration's).")
@click.option("--name", help="Run name (default: COMPETITION-MODEL-TIME). Same name + same settings resumes.")
@click.option("--folds", "n_folds", type=int, help="Number of folds (K).")
@click.option("--model", help="timm model name, e.g. resnet18, efficientnet_b0, small_resnet.")
@click.option("--pretrained/--no-pretrained", default=None, help="Start from pretrained weights (hub cache).")
@click.option("--weights", help="Local weights file (.safetensors / .pth) to start from.")
@click.option("--img-size", type=int, help="Images are resized to this square size.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float, help="Peak learning rate.")
@click.option("--weight-decay", type=float)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]))
@click.option("--scheduler", type=click.Choice(["cosine", "step", "onecycle", "constant"]))
@click.option("--warmup-epochs", type=float)
@click.option("--augment", help="Augment preset: none, flip, shift, basic (batch-level, fast); albu-basic, geometric, "
              "strong, crop-to-test (albumentations); or a pipeline declared as [augment.NAME] in the competition.")
@click.option("--tta", help="TTA preset: none, hflip, flip, five-crop, ten-crop, multi-scale.")
@click.option("--patience", type=int, help="Early stopping after N epochs without gain (0 = off).")
@click.option("--label-smoothing", type=float)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]))
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--num-workers", type=int, help="DataLoader worker processes.")
@click.option("--seed", type=int, help="Seed of folds, sampling and initialisation.")
# training techniques (README "Techniques")
@click.option("--sampler", type=click.Choice(["random", "weighted"]),
              help="weighted: draw classes equally often (inverse class frequency).")
@click.option("--class-cap", type=int, help="At most N rows of each class per epoch, re-drawn every epoch (0 = off).")
@click.option("--class-weights", type=click.Choice(["none", "inverse", "sqrt-inverse"]),
              help="Loss weight of each class from its training-row count.")
@click.option("--loss", help="ce, focal, f1 (soft macro F1) or a weighted sum such as 'ce+0.5*f1'.")
@click.option("--focal-gamma", type=float, help="Focusing parameter of the focal loss.")
@click.option("--mixup-alpha", type=float, help="Mixup Beta(alpha, alpha); 0 = off.")
@click.option("--cutmix-alpha", type=float, help="CutMix Beta(alpha, alpha); 0 = off.")
@click.option("--mix-prob", type=float, help="Probability a batch is mixed.")
@click.option("--mix-switch-prob", type=float, help="Probability of CutMix rather than mixup when both are on.")
@click.option("--ema-decay", type=float,
              help="EMA of the weights (e.g. 0.999), used for validation and prediction; 0 = off.")
@click.option("--clip-grad-norm", type=float, help="Clip the gradient norm to this (0 = off).")
@click.option("--accum-steps", type=int, help="Batches per optimizer step (gradient accumulation).")
@click.option("--drop-rate", type=float, help="Dropout before the classifier (0 = the model's default).")
@click.option("--drop-path-rate", type=float, help="Stochastic depth (0 = the model's default).")
@click.option("--freeze-epochs", type=int, help="Train only the classifier head for the first N epochs.")
@click.option("--heads", help="Factorised heads, e.g. 3x2x3 (mask x gender x age): one head per factor, combined "
              "into their product's classes.")
@click.option("--pseudo", "pseudo_run", help="Finished run (name or oof/RUN.npy) whose confident test predictions "
              "become extra training rows.")
@click.option("--pseudo-threshold", type=float, help="Top probability a test row needs to be pseudo-labelled.")
@click.option("--tta-merge", type=click.Choice(["mean", "gmean"]),
              help="Merge TTA views' probabilities by mean or geometric mean (renormalised).")
@click.option("--valid-crop", type=click.Choice(["five", "center", "whole"]),
              help="Competitions with test crops: predict validation rows as five crops, one centre crop or whole.")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with a [train] table (e.g. from `comptk tune --export`); flags override it.")
@click.option("--from-study", help="Use the best trial's settings of this tuning study; flags override them.")
@click.option("--storage", help="Storage of --from-study (default: WORKDIR/tune/studies.db).")
@click.option("--compile/--no-compile", default=None,
              help="torch.compile the model (slow first steps, then faster; needs a C++ compiler on CPU).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Keep decoded images in WORKDIR/cache/images and reuse them (never changes results).")
@click.option("--folds-subset", help="Train only these folds (0-based, e.g. 0 or 0,1): a partial run; "
              "the same command without it later trains the others.")
@click.option("--tracker", type=click.Choice(["none", "mlflow", "wandb"]), default="none", show_default=True,
              help="Also log to MLflow (WORKDIR/mlflow.db) or W&B (offline); needs the package installed.")
@click.option("--plots/--no-plots", default=True, show_default=True,
              help="Write runs/RUN/*.png (learning curves, confusion matrix, per-class F1).")
def train(competition: str, workdir: Path, data_dir: Path | None, name: str | None, quiet: bool,
          settings_file: Path | None, from_study: str | None, storage: str | None,
          folds_subset: str | None, tracker: str, plots: bool, cache: bool, **options) -> None:
    """Train K-fold models; write OOF/test probabilities, CV, a submission and plots."""
    from .config import read_settings
    from .train.crossval import run_cv

    if storage and not from_study:
        raise ComptkError("--storage is only used with --from-study")
    base: dict = read_settings(settings_file) if settings_file else {}
    if from_study:
        from .tune import best_settings

        base.update(best_settings(from_study, storage=storage, workdir=workdir))
    result = run_cv(competition, options, base=base, workdir=workdir, data_dir=data_dir, name=name,
                    progress=not quiet, folds_subset=_fold_list(folds_subset), tracker=tracker, plots=plots,
                    cache=cache)
    record, cv = result.record, result.record.cv
    partial = ""
    if result.partial:
        partial = f" [partial: folds {', '.join(map(str, record.trained_folds))} of {record.n_folds}]"
    click.echo(
        f"run {result.name}: CV {record.metric} {cv.oof:.4f} (pooled OOF), "
        f"{cv.mean_of_folds:.4f} +- {cv.std_of_folds:.4f} (mean of folds){partial}\n"
        f"submission: {result.paths.submission}"
    )


def _fold_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ComptkError(f"--folds-subset '{text}': expected fold indices like 0 or 0,2") from None


@main.command()
@click.argument("submission", type=click.Path(path_type=Path))
@click.option("--answers", type=click.Path(path_type=Path), required=True, help="CSV of id,label held-out answers.")
@click.option("--metric", help="accuracy or macro_f1 (default: the run's competition metric).")
def score(submission: Path, answers: Path, metric: str | None) -> None:
    """Score a submission against held-out answers (the local leaderboard)."""
    from . import artifacts
    from .submission import score_submission

    if metric is None:
        sidecar = artifacts.sidecar_of_submission(submission)
        if not sidecar.is_file():
            raise ComptkError(f"cannot tell the metric of {submission} (no run sidecar {sidecar}); pass --metric")
        metric = artifacts.load_json(sidecar)["metric"]
    value = score_submission(submission, answers, metric)
    click.echo(f"{metric} {value:.4f}")


@main.command()
@click.argument("members", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Submission CSV to write; its stem names the blend (oof/NAME.npy, preds/NAME.npy, oof/NAME.json).")
@click.option("--method", type=click.Choice(["hill", "weights", "mean", "rank", "stack", "auto"]), default="hill",
              show_default=True, help="auto: the best cross-validated score.")
@workdir_option
@click.option("--rounds", "n_rounds", type=int, default=25, show_default=True, help="hill: selection rounds.")
@click.option("--bags", "n_bags", type=int, default=1, show_default=True,
              help="hill: average N selections, each over a random half of the members (seeded).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bags and of the meta-model.")
@click.option("--meta", help="stack: a classifier's import path (default sklearn.linear_model.LogisticRegression).")
@click.option("--meta-params", help='stack: JSON of the meta-model\'s parameters, e.g. \'{"n_estimators": 200}\'.')
@click.option("--class-bias", is_flag=True, help="Fit per-class log-probability biases to the metric (macro F1).")
@click.option("--compare/--no-compare", default=True, show_default=True,
              help="Also fit and report the other methods.")
@click.option("--force", is_flag=True, help="Overwrite an existing blend of this name.")
def ensemble(members: tuple[Path, ...], out: Path, meta_params: str | None, **options) -> None:
    """Blend finished runs' OOF/test probabilities (MEMBERS: oof/RUN.npy files) into a submission.

    \b
    comptk ensemble oof/a.npy oof/b.npy --out submissions/blend.csv --method hill
    """
    import json

    from .ensemble import blend
    from .ensemble.report import to_text

    params = None
    if meta_params:
        try:
            params = json.loads(meta_params)
        except json.JSONDecodeError as exc:
            raise ComptkError(f"--meta-params '{meta_params}': not valid JSON ({exc})") from None
        if not isinstance(params, dict):
            raise ComptkError(f"--meta-params '{meta_params}': must be a JSON object")
    result = blend(members, out=out, meta_params=params, **options)
    click.echo(to_text(result.report))
    click.echo(f"\nblend {result.name} ({result.method}): CV {result.record.metric} {result.cv:.4f} "
               f"(cross-validated, pooled OOF)\nsubmission: {result.submission}\nreport: {result.report_md}")


@main.command()
@click.argument("competition")
@workdir_option
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Data folder (overrides the declaration's).")
@click.option("--study", help="Study name (default: the competition's name).")
@click.option("--storage", help="Optuna storage: sqlite:///FILE.db (default WORKDIR/tune/studies.db), "
                                "postgresql://USER:PASS@HOST/DB to share a study between machines, or journal:FILE.")
@click.option("--trials", "n_trials", type=int, default=20, show_default=True,
              help="Total trials the study should hold; re-running resumes up to it, workers share it.")
@click.option("--timeout", type=float, help="Stop starting trials after this many seconds.")
@click.option("--folds-per-trial", type=int, default=1, show_default=True,
              help="Train this many of the saved folds per trial; the value is their mean.")
@click.option("--pruner", type=click.Choice(["median", "hyperband", "wilcoxon", "none"]),
              help="Default: median (per epoch) with one fold per trial, wilcoxon (per fold) with more.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Pin a training setting for every trial (repeatable), e.g. --set epochs=3.")
@click.option("--seed", type=int, help="Seed of the sampler (default: the training seed).")
@click.option("--show", is_flag=True, help="Print the study's trials and best settings; run nothing.")
@click.option("--export", "export_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the best settings to this TOML file (for `comptk train --settings`); run nothing.")
@click.option("--progress/--no-progress", default=False, show_default=True, help="A progress bar per trial.")
def tune(competition: str, workdir: Path, data_dir: Path | None, study: str | None, storage: str | None,
         n_trials: int, timeout: float | None, folds_per_trial: int, pruner: str | None,
         assignments: tuple[str, ...], seed: int | None, show: bool, export_file: Path | None,
         progress: bool) -> None:
    """Search training settings with Optuna on the saved folds (pruning, resumable, shared studies).

    \b
    comptk tune fashion --trials 40 --timeout 3600
    comptk tune fashion --show
    comptk train fashion --folds 5 --from-study fashion
    """
    from . import tune as tuning
    from .config import parse_assignment

    if show or export_file:
        name = study or _competition_name(competition, workdir)
        if show:
            click.echo(tuning.show(name, storage=storage, workdir=workdir))
        if export_file:
            path = tuning.export_settings(name, export_file, storage=storage, workdir=workdir)
            click.echo(f"wrote {path}")
        return
    pins = dict(parse_assignment(a) for a in assignments)
    result = tuning.tune(competition, workdir=workdir, data_dir=data_dir, study=study, storage=storage,
                         n_trials=n_trials, timeout=timeout, folds_per_trial=folds_per_trial, pruner=pruner,
                         pins=pins, seed=seed, progress=progress, echo=click.echo)
    if result.best_value is not None:
        click.echo(f"study '{result.study}': {result.n_counted} trials, best {result.best_value:.4f} with "
                   + ", ".join(f"{k}={v!r}" for k, v in result.best_params.items()))
        click.echo(f"next: comptk train {competition} --from-study {result.study}"
                   + (f" --storage {storage}" if storage else ""))
    if result.interrupted:
        sys.exit(130)


def _competition_name(competition: str, workdir: Path) -> str:
    from .competition import load_competition

    return load_competition(competition, workdir).name


@main.command("runs")
@click.argument("competition", required=False)
@workdir_option
@click.option("--sort", help="Column to sort by (default cv; scores, images/s and dates best first).")
@click.option("--reverse", is_flag=True, help="Reverse the sort order.")
@click.option("--where", multiple=True, help="Keep rows where KEY=VALUE (also !=, >, >=, <, <=); repeatable. "
              "KEY: any column or config key, e.g. model=resnet18, lr<0.01, kind=blend, partial=false.")
@click.option("--top", type=int, help="Show the first N rows.")
@click.option("--columns", help="Comma-separated columns to show instead of the default ones.")
@click.option("--answers", type=click.Path(path_type=Path),
              help="Answers CSV for the test column (default: answers.csv in each run's data folder).")
@click.option("--diff", nargs=2, metavar="A B", help="Show the settings in which runs A and B differ.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table, every column, to this CSV.")
def runs_command(competition: str | None, workdir: Path, sort: str | None, reverse: bool, where: tuple[str, ...],
                 top: int | None, columns: str | None, answers: Path | None, diff: tuple[str, str] | None,
                 csv_path: Path | None) -> None:
    """The local leaderboard: finished runs and blends (CV pooled and per fold, test score, time, blends).

    \b
    comptk runs digits --where model=small_resnet --sort train_s --top 5
    comptk runs --diff RUN_A RUN_B
    """
    from . import artifacts
    from .experiments import leaderboard

    if diff:
        click.echo(leaderboard.diff_text(leaderboard.diff(workdir, *diff), *diff))
        return
    table = leaderboard.collect(workdir, competition=competition, answers=answers)
    table = leaderboard.select(table, where=where, sort=sort, reverse=reverse, top=top)
    shown = [c.strip() for c in columns.split(",")] if columns else leaderboard.COLUMNS
    click.echo(leaderboard.to_text(table, shown))
    if csv_path:
        artifacts.save_csv(csv_path, table)
        click.echo(f"wrote {csv_path}")


@main.command()
@click.argument("run")
@workdir_option
def plots(run: str, workdir: Path) -> None:
    """(Re)make a run's plots: runs/RUN/learning_curves.png, confusion_matrix.png, per_class_f1.png."""
    from .experiments.plots import plot_run

    for path in plot_run(run, workdir):
        click.echo(f"wrote {path}")


def _grid_options(command):
    """One comma-list option per TrainConfig field, so every train setting can be swept."""
    from .config import FIELD_TYPES

    aliases = {"model": ["--models"], "n_folds": ["--folds"]}
    for key in reversed(list(FIELD_TYPES)):
        flag = f"--{key.replace('_', '-')}"
        command = click.option(flag, *aliases.get(key, []), key, default=None, metavar="V1,V2,...",
                               help=f"{FIELD_TYPES[key].__name__} value(s), comma-separated.")(command)
    return command


@main.command()
@click.argument("competition")
@click.option("--name", help="Sweep name (default: the competition's); runs are NAME-MODEL[-KEYVALUE...].")
@workdir_option
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Data folder (overrides the declaration's).")
@click.option("--folds-subset", help="Train only these folds of each run (e.g. 0): fast, partial runs.")
@click.option("--tracker", type=click.Choice(["none", "mlflow", "wandb"]), default="none", show_default=True)
@click.option("--plots/--no-plots", default=True, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_grid_options
def sweep(competition: str, name: str | None, workdir: Path, data_dir: Path | None, folds_subset: str | None,
          tracker: str, plots: bool, quiet: bool, **options) -> None:
    """Train every combination of the listed settings (a grid) as normal K-fold runs; table and plot.

    Any train setting takes a comma-separated list; one value fixes it for all runs.

    \b
    comptk sweep fashion --models resnet18,efficientnet_b0,convnext_nano --folds-subset 0 --epochs 5
    comptk sweep digits --name lr --lr 1e-3,3e-3 --img-size 16,28
    """
    from .experiments import leaderboard
    from .experiments.sweep import parse_values
    from .experiments.sweep import sweep as run_sweep

    given = {key: parse_values(key, text) for key, text in options.items() if text is not None}
    grid = {key: values for key, values in given.items() if len(values) > 1}
    fixed = {key: values[0] for key, values in given.items() if len(values) == 1}
    if not grid and "model" in fixed:
        grid["model"] = [fixed.pop("model")]
    result = run_sweep(competition, grid, name=name, workdir=workdir, data_dir=data_dir,
                       folds_subset=_fold_list(folds_subset), progress=not quiet, tracker=tracker, plots=plots, **fixed)
    click.echo(leaderboard.to_text(result.table))
    click.echo(f"table: {result.paths.table}")
    if result.plot:
        click.echo(f"plot: {result.plot}")


@main.command("inspect")
@click.argument("competition")
@workdir_option
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="Data folder (overrides the declaration's).")
@click.option("--run", help="A finished run (name or oof/RUN.npy): adds label issues (from its OOF) and outliers "
              "(from its fold models).")
@click.option("--max-distance", type=int, default=6, show_default=True,
              help="Near duplicates: perceptual-hash bits that may differ (candidates).")
@click.option("--min-similarity", type=float, default=0.99, show_default=True,
              help="Near duplicates: correlation of the 32x32 grey images a candidate pair needs.")
@click.option("--write-groups", is_flag=True, help="Write a corrected copy (inspect/NAME/derived) whose group "
              "column keeps duplicates in one fold.")
@click.option("--apply", "apply_labels", is_flag=True, help="With --run: the corrected copy takes the suggested "
              "labels of the flagged rows (the original CSV is never edited).")
@click.option("--top", "n_top", type=int, default=100, show_default=True,
              help="Outliers: list at least this many top-scoring train rows.")
@click.option("--no-outliers", is_flag=True, help="With --run: skip the embeddings (label issues only).")
@click.option("--device", default="auto", show_default=True, help="Device for the embeddings.")
def inspect_command(competition: str, workdir: Path, data_dir: Path | None, run: str | None, no_outliers: bool,
                    **options) -> None:
    """Data report (classes, sizes, modes, formats), duplicates and fold leakage; with --run, label issues
    and outliers. Writes WORKDIR/inspect/NAME/report.html and CSVs.

    \b
    comptk inspect fashion
    comptk inspect fashion --run RUN --apply --write-groups
    """
    from .inspect import inspect_competition

    result = inspect_competition(competition, workdir=workdir, data_dir=data_dir, run=run,
                                 outliers=not no_outliers, echo=click.echo, **options)
    for line in result.lines:
        click.echo(line)
