"""The comptk command line: each command parses its options, calls one library function and prints.

Adding a command: a function under ``@main.command()`` that takes the shared arguments and options
declared below (``competition_argument``, ``workdir_option``, ``data_option``, ...), gives each new
option a help text, imports the library inside the function (``comptk --help``, ``--version`` and
shell completion must not load torch), calls one library function and echoes what it returns. A user
mistake is a ComptkError from the library: the group prints it as one line and exits 2.
tests/test_cli_help.py runs ``--help`` on every command and checks every option has help.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click
from click.shell_completion import CompletionItem

from . import __version__
from .config import CHOICES, FIELD_TYPES, parse_folds_subset
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

    COMPETITION is a name declared in competitions/NAME/competition.toml (also WORKDIR/competitions,
    then the bundled ones) or a path to a declaration; left out, the work directory's only competition.

    \b
    comptk prepare fashion --train-n 12000   build the local Fashion-MNIST competition
    comptk train fashion --folds 5           K-fold training: OOF + test probabilities, CV, submission
    comptk score submissions/RUN.csv --answers data/fashion/answers.csv
    comptk runs fashion --sort cv --top 10    the local leaderboard of runs and blends
    comptk sweep fashion --models resnet18,small_resnet --folds-subset 0
    comptk inspect fashion --run RUN          data report, duplicates, label issues, outliers
    """
    log = logging.getLogger("comptk")
    if log.level == logging.NOTSET:  # else INFO lines said before a run starts (the settings fitted to the data,
        log.setLevel(logging.INFO)   # predict's label-shift note) would stop at the root logger's WARNING
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        console = _Stderr()
        # INFO: progress lines; per-epoch lines are INFO only where no progress bar redraws (train/engine.py)
        console.setLevel(logging.INFO)
        console.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(console)


# ---- arguments and options shared by several commands: declared once, here -------------------------------------------

def _complete_competition(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of COMPETITION: the names find_declaration knows (no torch is imported)."""
    from .competition import competition_names

    workdir = ctx.params.get("workdir") or Path(".")
    return [CompletionItem(name) for name in competition_names(workdir) if name.startswith(incomplete)]


competition_argument = click.argument("competition", required=False, shell_complete=_complete_competition)
workdir_option = click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
    help="Where data/, folds/, oof/, preds/, runs/ and submissions/ live.",
)
data_option = click.option("--data", "data_dir", type=click.Path(path_type=Path),
                           help="Data folder (overrides the declaration's).")
quiet_option = click.option("--quiet", is_flag=True,
                            help="No progress bar (outside a terminal: no per-epoch lines).")
folds_subset_option = click.option(
    "--folds-subset", help="Train only these folds, by 0-based index (0 is the log's fold 1/K), e.g. 0 or 0,1: a "
    "partial run; the same command without it later trains the others.")
tracker_option = click.option(
    "--tracker", type=click.Choice(["none", "mlflow", "wandb"]), default="none", show_default=True,
    help="Also log to MLflow (WORKDIR/mlflow.db) or W&B (offline); needs the package installed.")
plots_option = click.option("--plots/--no-plots", default=True, show_default=True,
                            help="Write runs/RUN/*.png (learning curves, confusion matrix, per-class F1).")
storage_option = click.option(
    "--storage", help="Optuna storage of the study (default WORKDIR/tune/studies.db): sqlite:///FILE.db, "
    "postgresql://USER:PASS@HOST/DB to share a study between machines, or journal:FILE.")
label_shift_option = click.option(
    "--label-shift", type=click.Choice(["none", "em"]), default="none", show_default=True,
    help="em: correct the test probabilities and submission for the test set's class prior, estimated by EM "
         "(Saerens et al. 2002) on OOF-calibrated probabilities; OOF and preds/NAME.npy stay uncorrected. "
         "The estimate is always in the sidecar's label_shift.")


def name_option(text: str) -> Callable:
    """--name: what it names differs by command (a run, a sweep), so only its help is given per command."""
    return click.option("--name", help=text)


# One help text per training setting (config.TrainConfig): `train` takes each as a flag, `sweep` as a list.
SETTING_HELP: dict[str, str] = {
    "model": "timm model name, e.g. resnet18, efficientnet_b0, small_resnet.",
    "pretrained": "Start from pretrained weights (hub cache).",
    "weights": "Local weights file (.safetensors / .pth) to start from.",
    "img_size": "Images are resized to this square size (pixels).",
    "n_folds": "Number of folds (K).",
    "epochs": "Training epochs per fold.",
    "batch_size": "Training images per batch.",
    "lr": "Peak learning rate.",
    "weight_decay": "Weight decay (norms and biases get none).",
    "optimizer": "Optimizer (sgd: Nesterov momentum 0.9).",
    "scheduler": "Learning-rate schedule, stepped per optimizer step (step: x0.1 after each third).",
    "warmup_epochs": "Linear learning-rate warm-up over this many epochs (fractions allowed).",
    "augment": "Augment preset: none, flip, shift, basic (batch-level, fast); albu-basic, geometric, strong, "
               "crop-to-test (albumentations); or a pipeline declared as [augment.NAME] in the competition.",
    "tta": "TTA preset: none, hflip, flip, five-crop, ten-crop, multi-scale.",
    "patience": "Early stopping after N epochs without gain (0 = off).",
    "label_smoothing": "Label smoothing of the loss, in [0, 1) (0 = off).",
    "precision": "auto: AMP on CUDA, bf16 on CPUs with native bf16, else fp32.",
    "device": "auto, cpu, cuda, cuda:N or mps.",
    "num_workers": "DataLoader worker processes.",
    "seed": "Seed of sampling, augmentation and initialisation (not of the folds).",
    "folds_seed": "Seed of the fold assignment (default: the competition's [folds] seed, 42); runs blend only when "
                  "they share folds.",
    "tta_merge": "Merge TTA views' probabilities by mean or geometric mean (renormalised).",
    "valid_crop": "Competitions with test crops: predict validation rows as five crops, one centre crop or whole.",
    "sampler": "weighted: draw classes equally often (inverse class frequency).",
    "class_cap": "At most N rows of each class per epoch, re-drawn every epoch (0 = off).",
    "class_weights": "Loss weight of each class from its training-row count.",
    "loss": "ce, focal, f1 (soft macro F1) or a weighted sum such as 'ce+0.5*f1'.",
    "focal_gamma": "Focusing parameter of the focal loss.",
    "mixup_alpha": "Mixup Beta(alpha, alpha); 0 = off.",
    "cutmix_alpha": "CutMix Beta(alpha, alpha); 0 = off.",
    "mix_prob": "Probability a batch is mixed.",
    "mix_switch_prob": "Probability of CutMix rather than mixup when both are on.",
    "ema_decay": "EMA of the weights (e.g. 0.999), used for validation and prediction; 0 = off.",
    "clip_grad_norm": "Clip the gradient norm to this (0 = off).",
    "accum_steps": "Batches per optimizer step (gradient accumulation).",
    "drop_rate": "Dropout before the classifier (0 = the model's default).",
    "drop_path_rate": "Stochastic depth (0 = the model's default).",
    "freeze_epochs": "Train only the classifier head for the first N epochs.",
    "pseudo_run": "Finished run (name or oof/RUN.npy) whose confident test predictions become extra training rows.",
    "pseudo_threshold": "Top probability a test row needs to be pseudo-labelled.",
    "pseudo_teacher": "run: the source's test predictions teach every fold; fold: fold k learns from the source's "
                      "fold k (a run on the same folds; the OOF score stays honest).",
    "compile": "torch.compile the model (slow first steps, then faster; needs a C++ compiler on CPU).",
    "heads": "Factorised heads, e.g. 3x2x3 (mask x gender x age): one head per factor, combined into their "
             "product's classes.",
}
_SETTING_FLAGS = {"n_folds": "--folds", "pseudo_run": "--pseudo"}  # flags not spelt like their setting


def setting_options(command: Callable) -> Callable:
    """One flag per training setting (None when not given, so the declaration's [train] value stays)."""
    for key in reversed(list(FIELD_TYPES)):
        flag, kind = _SETTING_FLAGS.get(key, f"--{key.replace('_', '-')}"), FIELD_TYPES[key]
        if kind is bool:
            option = click.option(f"{flag}/--no-{flag[2:]}", key, default=None, help=SETTING_HELP[key])
        else:
            kind = click.Choice(CHOICES[key]) if key in CHOICES else kind
            option = click.option(flag, key, type=kind, default=None, help=SETTING_HELP[key])
        command = option(command)
    return command


def grid_options(command: Callable) -> Callable:
    """One comma-list option per training setting, so every setting can be swept."""
    aliases = {"model": ["--models"], "n_folds": ["--folds"]}
    for key in reversed(list(FIELD_TYPES)):
        flag = f"--{key.replace('_', '-')}"
        command = click.option(flag, *aliases.get(key, []), key, default=None, metavar="V1,V2,...",
                               help=f"{SETTING_HELP[key]} Comma-separated {FIELD_TYPES[key].__name__} values: "
                                    "two or more are swept.")(command)
    return command


# ---- commands --------------------------------------------------------------------------------------------------------

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


@main.command("init")
@click.argument("name")
@click.option("--data", "data", required=True, type=click.Path(path_type=Path),
              help="The contest as downloaded: a folder, or a .zip (extracted into WORKDIR/data/NAME).")
@click.option("--metric", help="How the contest is scored: accuracy or macro_f1 (default: accuracy, said so).")
@click.option("--force", is_flag=True, help="Write over an existing declaration (and re-extract the zip).")
@workdir_option
@click.option("--id-col", help="The id column (when it cannot be told from the sample submission).")
@click.option("--image-col", help="The column naming the image files (when several could).")
@click.option("--label-col", help="The train CSV's label column (when it cannot be told).")
@click.option("--train", help="The train CSV or folder of class folders, relative to the data folder.")
@click.option("--test", help="The test CSV or folder of test images, relative to the data folder.")
@click.option("--sample-submission", "sample", help="The sample submission CSV, relative to the data folder.")
def init_command(name: str, data: Path, metric: str | None, force: bool, workdir: Path, **options) -> None:
    """Write WORKDIR/competitions/NAME/competition.toml from a downloaded contest, explaining each guess.

    \b
    comptk init leaves --data leaves-classification.zip --metric macro_f1
    comptk init food --data ~/Downloads/food        (train/CLASS/*.jpg + test/*.jpg, or Dacon CSVs)
    """
    from .declare import init_competition

    result = init_competition(name, data, workdir=workdir, metric=metric, force=force, **options)
    click.echo("\n".join(result.summary))


@main.command()
@competition_argument
@workdir_option
@data_option
@name_option("Run name (default: COMPETITION-MODEL-TIME). Same name + same settings resumes.")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML file with a [train] table (e.g. from `comptk tune --export`); flags override it.")
@click.option("--from-study", help="Use the best trial's settings of this tuning study (over --settings); flags "
              "override them.")
@storage_option
@folds_subset_option
@quiet_option
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Keep decoded images in WORKDIR/cache/images and reuse them (never changes results).")
@tracker_option
@plots_option
@label_shift_option
@setting_options
def train(competition: str | None, workdir: Path, data_dir: Path | None, name: str | None,
          settings_file: Path | None, from_study: str | None, storage: str | None, folds_subset: str | None,
          quiet: bool, cache: bool, tracker: str, plots: bool, label_shift: str, **settings) -> None:
    """Train K-fold models; write OOF/test probabilities, CV, a submission and plots.

    Settings: code defaults < the competition's [train] table < --settings < --from-study < flags.
    """
    from .train.crossval import run_cv
    from .tune import base_settings

    base = base_settings(settings_file, from_study, storage=storage, workdir=workdir, competition=competition,
                         echo=click.echo)
    result = run_cv(competition, settings, base=base, workdir=workdir, data_dir=data_dir, name=name,
                    progress=not quiet, folds_subset=parse_folds_subset(folds_subset), tracker=tracker, plots=plots,
                    cache=cache, label_shift=label_shift)
    click.echo(result.summary())


@main.command()
@click.argument("submission", type=click.Path(path_type=Path))
@click.option("--answers", type=click.Path(path_type=Path), required=True, help="CSV of id,label held-out answers.")
@click.option("--metric", help="accuracy or macro_f1 (default: the run's competition metric).")
def score(submission: Path, answers: Path, metric: str | None) -> None:
    """Score a submission against held-out answers (the local leaderboard)."""
    from .submission import score_submission, submission_metric

    metric = metric or submission_metric(submission)
    click.echo(f"{metric} {score_submission(submission, answers, metric):.4f}")


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
@click.option("--force", is_flag=True, help="Overwrite an existing blend of this name (the same command again "
              "rewrites its own blend without it).")
@click.option("--allow-blends", is_flag=True, help="Stack earlier blends given as members (left out by default, "
              "as a glob like oof/*.npy matches them).")
@label_shift_option
def ensemble(members: tuple[Path, ...], meta_params: str | None, **options) -> None:
    """Blend finished runs' OOF/test probabilities (MEMBERS: oof/RUN.npy files) into a submission.

    Earlier blends (unless --allow-blends), the blend being written and partial runs are left
    out with a note, so a glob works and the same command can be run again.

    \b
    comptk ensemble oof/*.npy --out submissions/blend.csv
    comptk ensemble oof/a.npy oof/b.npy --out submissions/blend.csv --method hill
    """
    from .ensemble import blend, parse_meta_params
    from .ensemble.report import summary

    click.echo(summary(blend(members, meta_params=parse_meta_params(meta_params), echo=click.echo, **options)))


@main.command()
@competition_argument
@workdir_option
@data_option
@click.option("--study", help="Study name (default: the competition's name).")
@storage_option
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
@click.option("--force", is_flag=True, help="With --export: replace an existing file.")
@click.option("--progress/--no-progress", default=False, show_default=True,
              help="A progress bar per trial (where it can redraw in place).")
def tune(competition: str | None, workdir: Path, data_dir: Path | None, study: str | None, storage: str | None,
         n_trials: int, timeout: float | None, folds_per_trial: int, pruner: str | None,
         assignments: tuple[str, ...], seed: int | None, show: bool, export_file: Path | None, force: bool,
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
        name = tuning.study_name(study, competition, workdir)
        if show:
            click.echo(tuning.show(name, storage=storage, workdir=workdir))
        if export_file:
            written = tuning.export_settings(name, export_file, storage=storage, workdir=workdir, force=force)
            click.echo(f"wrote {written}")
        return
    pins = dict(parse_assignment(a) for a in assignments)
    result = tuning.tune(competition, workdir=workdir, data_dir=data_dir, study=study, storage=storage,
                         n_trials=n_trials, timeout=timeout, folds_per_trial=folds_per_trial, pruner=pruner,
                         pins=pins, seed=seed, progress=progress, echo=click.echo)
    if result.best_value is not None:
        click.echo(f"study '{result.study}': {result.n_counted} trials, best {result.best_value:.4f} with "
                   + ", ".join(f"{k}={v!r}" for k, v in result.best_params.items()))
        click.echo(f"next: comptk train {competition + ' ' if competition else ''}--from-study {result.study}"
                   + (f" --storage {storage}" if storage else ""))
    if result.interrupted:
        sys.exit(130)


@main.command("runs")
@click.argument("competition", required=False, shell_complete=_complete_competition)
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
    COMPETITION here only filters; without it, every competition's runs.

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


@main.command()
@competition_argument
@name_option("Sweep name (default: the competition's); runs are NAME-MODEL[-KEYVALUE...].")
@workdir_option
@data_option
@folds_subset_option
@tracker_option
@plots_option
@quiet_option
@grid_options
def sweep(competition: str | None, name: str | None, workdir: Path, data_dir: Path | None, folds_subset: str | None,
          tracker: str, plots: bool, quiet: bool, **texts: str | None) -> None:
    """Train every combination of the listed settings (a grid) as normal K-fold runs; table and plot.

    Any train setting takes a comma-separated list; one value fixes it for all runs.

    \b
    comptk sweep fashion --models resnet18,efficientnet_b0,convnext_nano --folds-subset 0 --epochs 5
    comptk sweep digits --name lr --lr 1e-3,3e-3 --img-size 16,28
    """
    from .experiments.sweep import parse_grid
    from .experiments.sweep import sweep as run_sweep

    grid, fixed = parse_grid(texts)
    result = run_sweep(competition, grid, name=name, workdir=workdir, data_dir=data_dir,
                       folds_subset=parse_folds_subset(folds_subset), progress=not quiet, tracker=tracker,
                       plots=plots, **fixed)
    click.echo(result.summary())


@main.command("inspect")
@competition_argument
@workdir_option
@data_option
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
def inspect_command(competition: str | None, workdir: Path, data_dir: Path | None, run: str | None,
                    no_outliers: bool, **options) -> None:
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


@main.command()
@competition_argument
@click.option("--budget", required=True, help="Wall-clock time for everything: 15m, 2h, 1h30m or seconds.")
@click.option("--preset", type=click.Choice(["fast", "best"]), default="fast", show_default=True,
              help="fast: up to 3 members; best: up to 6 (families x seeds), as many as keep the recipe's epochs.")
@workdir_option
@data_option
@name_option("Name of the blend and prefix of its members (default: auto-COMPETITION); the same name resumes.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="Pin a training setting for every member (repeatable), e.g. --set batch_size=64.")
@click.option("--pseudo-labels/--no-pseudo-labels", "pseudo_labels", default=None,
              help="Train a second member on the test rows the first one's folds predict confidently (fold k from "
                   "fold k). Default: as the declaration's pseudo_labels_allowed says (on only when true).")
@label_shift_option
def auto(competition: str | None, budget: str, preset: str, workdir: Path, data_dir: Path | None, name: str | None,
         assignments: tuple[str, ...], pseudo_labels: bool | None, label_shift: str) -> None:
    """The best submission in a time budget: measure, plan members, train them K-fold, blend.

    \b
    comptk auto fashion --budget 15m
    comptk auto fashion --budget 2h --preset best
    """
    from .auto import run_auto
    from .auto.budget import process_started
    from .config import parse_assignment

    run_auto(competition, budget=budget, preset=preset, workdir=workdir, data_dir=data_dir, name=name,
             settings=dict(parse_assignment(a) for a in assignments), pseudo_labels=pseudo_labels,
             label_shift=label_shift, echo=click.echo, started=process_started())


# ---- predict and export (comptk.predict) --------------------------------------------------------------------------

@main.command("predict")
@click.argument("source", metavar="RUN_OR_BUNDLE")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV of ids and image paths to predict (e.g. the competition's test.csv).")
@click.option("--image-col", help="--csv: the image-path column (default: the competition's).")
@click.option("--id-col", help="--csv: the id column (default: the competition's).")
@click.option("--image-dir", type=click.Path(file_okay=False, path_type=Path),
              help="--csv: the folder relative image paths start from (default: as in the competition, from the "
                   "CSV's folder).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV to write (default: standard output).")
@click.option("--force", is_flag=True, help="Replace an existing --out file.")
@click.option("--proba/--no-proba", default=True, show_default=True,
              help="Add one proba_<class> column per class after id and label.")
@click.option("--submission", is_flag=True,
              help="Write the competition's submission columns instead (its id column and label column, or "
                   "one probability column per class).")
@click.option("--skip-bad", is_flag=True, help="Leave out unreadable images (listed on stderr) instead of failing.")
@workdir_option
@click.option("--device", default="auto", show_default=True, help=SETTING_HELP["device"])
@click.option("--precision", type=click.Choice(CHOICES["precision"]),
              help="Default: the run's setting (the run's device and precision reproduce its predictions exactly).")
@click.option("--batch-size", type=int, default=256, show_default=True,
              help="Images per forward pass (memory, not results).")
def predict_command(source: str, images: tuple[Path, ...], csv_path: Path | None, image_col: str | None,
                    id_col: str | None, **options) -> None:
    """Predict images with a run's fold models and its TTA (RUN in --workdir, or a bundle folder).

    Writes id, label and proba_<class> columns (rows in input order). A file's id is its path as
    given; a folder's images are named by their path inside it without extension.

    \b
    comptk predict RUN --csv data/NAME/test.csv --out predictions.csv
    comptk predict bundles/RUN photos/ a.jpg --no-proba
    comptk predict /kaggle/input/BUNDLE --csv /kaggle/input/COMP/test.csv --submission --out submission.csv
    """
    from .predict import predict_table

    table = predict_table(source, images, csv=csv_path, image_column=image_col, id_column=id_col, **options)
    for note in table.notes:
        click.echo(note, err=True)
    if options["out"] is None:
        click.echo(table.frame.to_csv(index=False), nl=False)


@main.command("export")
@click.argument("run")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle folder (never a folder that is not one).")
@workdir_option
def export_command(run: str, out: Path, force: bool, workdir: Path) -> None:
    """Write RUN as a self-contained bundle: bundle.json + one safetensors file per fold.

    `comptk predict DIR ...` and `comptk.load_predictor(DIR)` use it without the competition, its data,
    the work directory or a network.

    \b
    comptk export RUN --out bundles/RUN
    """
    from .predict import export_run

    recipe = export_run(run, out, workdir=workdir, force=force)
    click.echo(f"wrote bundle {out} ({recipe.weights_bytes / 1e6:.1f} MB of weights): {recipe.describe()}\n"
               f"predict with: comptk predict {out} IMAGES... | --csv FILE")
