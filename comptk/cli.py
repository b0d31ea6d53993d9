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
@click.option("--train-n", type=int, default=None, help="Keep a stratified subset of N training images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subset and of the digits split.")
@click.option("--force", is_flag=True, help="Rebuild WORKDIR/data/NAME if it exists.")
def prepare(name: str, workdir: Path, train_n: int | None, seed: int, force: bool) -> None:
    """Build a local competition's data (fashion, digits) under WORKDIR/data/NAME."""
    from .prepare import prepare as build

    target = build(name, workdir, train_n=train_n, seed=seed, force=force)
    click.echo(f"wrote {target}")


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
@click.option("--augment", help="Augment preset: none, flip, shift, basic (batch-level, fast), albu-basic (albumentations).")
@click.option("--tta", help="TTA preset: none, hflip, flip.")
@click.option("--patience", type=int, help="Early stopping after N epochs without gain (0 = off).")
@click.option("--label-smoothing", type=float)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]))
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--num-workers", type=int, help="DataLoader worker processes.")
@click.option("--seed", type=int, help="Seed of folds, sampling and initialisation.")
@click.option("--compile/--no-compile", default=None,
              help="torch.compile the model (slow first steps, then faster; needs a C++ compiler on CPU).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="Keep decoded images in WORKDIR/cache/images and reuse them (never changes results).")
def train(competition: str, workdir: Path, data_dir: Path | None, name: str | None, quiet: bool, cache: bool,
          **options) -> None:
    """Train K-fold models; write OOF/test probabilities, CV and a submission."""
    from .crossval import run_cv

    result = run_cv(competition, workdir=workdir, data_dir=data_dir, name=name, progress=not quiet, cache=cache,
                    **options)
    cv = result.sidecar["cv"]
    click.echo(
        f"run {result.name}: CV {result.sidecar['metric']} {cv['oof']:.4f} (pooled OOF), "
        f"{cv['mean_of_folds']:.4f} +- {cv['std_of_folds']:.4f} (mean of folds)\n"
        f"submission: {result.paths.submission}"
    )


@main.command()
@click.argument("submission", type=click.Path(path_type=Path))
@click.option("--answers", type=click.Path(path_type=Path), required=True, help="CSV of id,label held-out answers.")
@click.option("--metric", help="accuracy or macro_f1 (default: the run's competition metric).")
def score(submission: Path, answers: Path, metric: str | None) -> None:
    """Score a submission against held-out answers (the local leaderboard)."""
    from . import runs
    from .submission import score_submission

    if metric is None:
        sidecar = runs.sidecar_of_submission(submission)
        if not sidecar.is_file():
            raise ComptkError(f"cannot tell the metric of {submission} (no run sidecar {sidecar}); pass --metric")
        metric = runs.load_json(sidecar)["metric"]
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
    click.echo(f"\nblend {result.name} ({result.method}): CV {result.sidecar['metric']} {result.cv:.4f} "
               f"(cross-validated, pooled OOF)\nsubmission: {result.submission}\nreport: {result.report_md}")
