"""Training techniques in real (tiny) training: freezing, EMA, clipping, accumulation, mixup,
the pretrained_allowed flag and pseudo-labelling."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from tests.conftest import assert_cv_is_pooled_oof

from comptk import ComptkError, run_cv
from comptk.artifacts import RunPaths, save_json, save_npy
from comptk.cli import main
from comptk.config import resolve
from comptk.metrics import get_metric
from comptk.train import engine
from comptk.train.dataset import ImageArrayDataset
from comptk.train.engine import predict_proba
from comptk.train.mixing import BatchMixer
from comptk.train.models import Classifier, create_model

CPU = torch.device("cpu")
FAST = {"n_folds": 2, "epochs": 1}


def fit(**settings):
    """Train small_resnet on 36 random 12 px images (3 classes), validating on 12 others.
    Returns the model, the outcome, its initial weights, the validation rows and the
    (raw, not EMA) weights after each epoch."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (48, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(48) % 3
    cfg = resolve(None, {"img_size": 12, "epochs": 2, "batch_size": 8, "augment": "none", "tta": "none", **settings})
    torch.manual_seed(0)
    np.random.seed(0)
    model = Classifier(create_model(cfg, 3))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    snapshots = []
    outcome = engine.fit(
        model, ImageArrayDataset(images[:36], labels[:36]), images[36:], labels[36:], cfg, get_metric("accuracy"),
        device=CPU, seed=0, n_classes=3, progress=False,
        on_epoch=lambda record: snapshots.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    return model, outcome, initial, (images[36:], labels[36:]), snapshots


def test_freeze_epochs_train_only_the_head_first():
    model, _, initial, _, (after_1, after_2) = fit(freeze_epochs=1)
    head = [k for k in initial if k.startswith("model.head.")]
    backbone = [k for k in initial if k not in head]
    assert head and len(backbone) > 10
    assert all(torch.equal(after_1[k], initial[k]) for k in backbone)  # weights and BatchNorm statistics
    assert all(not torch.equal(after_1[k], initial[k]) for k in head)
    assert any(not torch.equal(after_2[k], after_1[k]) for k in backbone if k.endswith("weight"))
    assert all(p.requires_grad for p in model.parameters())  # unfrozen at the end


def test_ema_weights_are_validated_selected_and_kept():
    model, outcome, _, (valid_images, valid_labels), raw = fit(ema_decay=0.9)
    best_raw = raw[outcome.best_epoch - 1]
    conv = "model.stem.0.weight"
    assert not torch.allclose(outcome.state_dict[conv], best_raw[conv])  # the kept weights are the EMA's
    assert torch.equal(model.state_dict()[conv], outcome.state_dict[conv])
    proba = predict_proba(model, valid_images, device=CPU)
    valid_loss = -np.log(proba[np.arange(len(valid_labels)), valid_labels]).mean()
    assert np.isclose(outcome.history[outcome.best_epoch - 1]["valid_loss"], valid_loss, rtol=1e-5)


@pytest.mark.parametrize("clip, most, least", [(1e-9, 1e-6, 0.0), (0.0, np.inf, 1e-3)])
def test_gradient_clipping_bounds_the_step(clip, most, least):
    settings = {"optimizer": "sgd", "weight_decay": 0.0, "scheduler": "constant", "epochs": 1, "lr": 0.1}
    model, _, initial, _, _ = fit(clip_grad_norm=clip, **settings)
    change = max((p.detach() - initial[k]).abs().max().item() for k, p in model.named_parameters())
    assert least <= change <= most


def test_gradient_accumulation_steps_the_optimizer_and_schedule_per_group(monkeypatch):
    steps = []
    original = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (steps.append(1), original(self, *a, **k))[1])
    _, outcome, _, _, _ = fit(accum_steps=3, scheduler="cosine", lr=0.01)
    # 36 rows / batch 8 = 4 full batches an epoch -> optimizer steps after batches 3 and 4
    assert len(steps) == 4
    assert np.isclose(outcome.history[0]["lr"], 0.005) and np.isclose(outcome.history[1]["lr"], 0.0, atol=1e-12)


def test_drop_rates_reach_the_model_or_fail_clearly():
    model = create_model(resolve(None, {"drop_rate": 0.2, "drop_path_rate": 0.1}), 3)
    assert model.drop_rate == 0.2
    assert sum(type(m).__name__ == "DropPath" for m in model.modules()) == 2
    plain = create_model(resolve(None, {}), 3)
    assert set(plain.state_dict()) == set(model.state_dict())  # no new weights: old checkpoints still load
    with pytest.raises(ComptkError, match="model 'ghostnet_050' does not take drop_path_rate"):
        create_model(resolve(None, {"model": "ghostnet_050", "drop_path_rate": 0.1}), 3)


def test_techniques_together_end_to_end(tiny, monkeypatch):
    mixed = []
    original = BatchMixer.__call__
    monkeypatch.setattr(BatchMixer, "__call__", lambda self, x, y: (mixed.append(len(x)), original(self, x, y))[1])
    settings = {"loss": "ce+0.5*f1", "class_weights": "inverse", "sampler": "weighted", "mixup_alpha": 0.4,
                "cutmix_alpha": 1.0, "ema_decay": 0.9, "clip_grad_norm": 1.0, "accum_steps": 2, "drop_rate": 0.1,
                "drop_path_rate": 0.1, "freeze_epochs": 1, "epochs": 2}
    result = run_cv(tiny, {**FAST, **settings}, workdir=tiny, name="all", progress=False)
    assert mixed and all(n == 8 for n in mixed)  # every training batch was mixed
    classes = ["cat", "dog", "fox"]
    labels = [classes.index(v) for v in __import__("pandas").read_csv(tiny / "data/train.csv")["label"]]
    assert_cv_is_pooled_oof(result, labels)
    assert {k: result.sidecar["config"][k] for k in settings} == settings


def toml_with(root, text):
    path = root / "competition.toml"
    path.write_text(text + "\n" + path.read_text())


def train_cli(root, *args):
    return CliRunner().invoke(main, ["train", str(root), "--workdir", str(root), "--quiet", *map(str, args)])


@pytest.mark.parametrize("flags, says", [
    (["--pretrained"], "pretrained = true"),
    (["--weights", "w.pth"], "weights = "),
])
def test_pretrained_forbidden_by_the_competition(tiny, flags, says):
    toml_with(tiny, "pretrained_allowed = false")
    (tiny / "w.pth").write_bytes(b"")
    result = train_cli(tiny, *[str(tiny / f) if f.endswith(".pth") else f for f in flags])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: competition 'tiny' forbids pretrained weights")
    assert "pretrained_allowed = false" in lines[0] and says in lines[0]
    assert not (tiny / "folds").exists() and not (tiny / "runs").exists()


def test_pretrained_forbidden_and_set_in_the_same_declaration(tiny):
    toml_with(tiny, "pretrained_allowed = false")
    path = tiny / "competition.toml"
    path.write_text(path.read_text().replace('model = "small_resnet"', 'model = "small_resnet"\npretrained = true'))
    for flags in ([], ["--no-pretrained"]):  # the declaration contradicts itself: no flag is the way out
        result = train_cli(tiny, *flags)
        assert result.exit_code == 2 and "pretrained_allowed = false, but its [train] table sets pretrained = true" \
            in result.output, result.output
        assert "remove 'pretrained' from [train]" in result.output and "--no-pretrained" not in result.output


def test_training_from_scratch_is_fine_when_pretrained_is_forbidden(tiny):
    toml_with(tiny, "pretrained_allowed = false")
    result = train_cli(tiny, "--folds", "2", "--name", "scratch")
    assert result.exit_code == 0, result.output
    side = json.loads(RunPaths(tiny, "scratch").sidecar.read_text())
    assert side["config"]["pretrained"] is False and side["config"]["weights"] == ""


@pytest.fixture
def source_run(tiny):
    """A finished tiny run to take pseudo-labels from, and a threshold half its test rows pass."""
    result = run_cv(tiny, FAST, workdir=tiny, name="src", progress=False)
    preds = np.load(result.paths.preds)
    return tiny, result, float(np.median(preds.max(1)))


def test_pseudo_labels_join_training_rows_only(source_run, monkeypatch):
    root, source, threshold = source_run
    from comptk.train import crossval

    seen = []
    original = crossval.fit

    def spy(model, train_set, valid_images, valid_labels, *args, **kwargs):
        seen.append((train_set.labels.copy(), valid_labels.copy()))
        return original(model, train_set, valid_images, valid_labels, *args, **kwargs)

    monkeypatch.setattr(crossval, "fit", spy)
    result = run_cv(root, {**FAST, "pseudo_run": "src", "pseudo_threshold": threshold}, workdir=root, name="pseudo",
                    progress=False)
    preds = np.load(source.paths.preds)
    chosen = np.flatnonzero(preds.max(1) >= threshold)
    assert 0 < len(chosen) < len(preds)
    record = result.sidecar["pseudo_labels"]
    assert record["run"] == "src" and record["threshold"] == threshold and record["n_rows"] == len(chosen)
    classes = result.sidecar["classes"]
    expected_counts = np.bincount(preds[chosen].argmax(1), minlength=len(classes))
    assert record["per_class"] == dict(zip(classes, expected_counts.tolist()))
    # validation rows, folds and OOF rows are the source run's; only training rows grew
    assert result.sidecar["folds_digest"] == source.sidecar["folds_digest"]
    assert np.load(result.paths.oof).shape == np.load(source.paths.oof).shape
    for k, (fold_new, fold_old) in enumerate(zip(result.sidecar["folds"], source.sidecar["folds"])):
        assert fold_new["n_valid"] == fold_old["n_valid"] and fold_new["n_train"] == fold_old["n_train"]
        assert fold_new["n_pseudo"] == len(chosen)
        train_labels, valid_labels = seen[k]
        assert len(train_labels) == fold_old["n_train"] + len(chosen) and len(valid_labels) == fold_old["n_valid"]
        assert train_labels[-len(chosen):].tolist() == preds[chosen].argmax(1).tolist()
    assert json.loads(RunPaths(root, "pseudo").config.read_text())["pseudo_labels"] == record


def _fake_source(root, name, edit_sidecar=None, preds=None):
    src, copy = RunPaths(root, "src"), RunPaths(root, name)
    shutil.copy(src.oof, copy.oof)
    meta = json.loads(src.sidecar.read_text())
    save_json(copy.sidecar, edit_sidecar(meta) if edit_sidecar else meta)
    save_npy(copy.preds, np.load(src.preds) if preds is None else preds)


@pytest.mark.parametrize("case, flags, message", [
    ("unknown", ["--pseudo", "nope"], "pseudo-labels: unknown run 'nope'"),
    ("threshold", ["--pseudo", "src", "--pseudo-threshold", "1.5"], "'pseudo_threshold' must be in (0, 1], got 1.5"),
    ("other competition", ["--pseudo", "other"], "run 'other' is of competition 'cifar', not 'tiny'"),
    ("other test rows", ["--pseudo", "moved"], "run 'moved' predicted other test rows"),
    ("no row passes", ["--pseudo", "flat", "--pseudo-threshold", "0.5"], "no test row of run 'flat' reaches"),
])
def test_pseudo_label_errors(source_run, case, flags, message):
    root, _, _ = source_run
    _fake_source(root, "other", lambda m: {**m, "competition": "cifar"})
    _fake_source(root, "moved", lambda m: {**m, "test_ids_digest": "0" * 64})
    n_test = len(np.load(RunPaths(root, "src").preds))
    _fake_source(root, "flat", preds=np.full((n_test, 3), 1 / 3, dtype=np.float32))
    result = train_cli(root, "--folds", "2", "--name", "p", *flags)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not RunPaths(root, "p").run_dir.exists()


def test_a_run_started_before_a_setting_existed_resumes(tiny):
    """config.json of an interrupted run lacks settings added since: they count as their defaults."""
    first = run_cv(tiny, FAST, workdir=tiny, name="old", progress=False)
    paths = first.paths
    saved = json.loads(paths.config.read_text())
    for key in ("loss", "sampler", "ema_decay", "pseudo_run"):
        del saved["config"][key]
    save_json(paths.config, saved)
    paths.sidecar.unlink()
    result = run_cv(tiny, FAST, workdir=tiny, name="old", progress=False)
    assert np.allclose(np.load(result.paths.oof), np.load(paths.oof))
    with pytest.raises(ComptkError, match="other settings: loss"):
        paths.sidecar.unlink()
        run_cv(tiny, {**FAST, "loss": "focal"}, workdir=tiny, name="old", progress=False)


def test_pseudo_teacher_fold_takes_each_fold_from_the_source_fold(source_run, monkeypatch):
    """pseudo_teacher = fold: fold k trains on the test rows fold k of the source predicted confidently
    (a model that never saw fold k), with that fold's labels; the sidecar says so."""
    root, source, threshold = source_run
    from comptk.train import crossval

    seen = []
    original = crossval.fit

    def spy(model, train_set, *args, **kwargs):
        seen.append(train_set.labels.copy())
        assert train_set.plain_from is None  # whole test images: augmented like the train rows
        return original(model, train_set, *args, **kwargs)

    monkeypatch.setattr(crossval, "fit", spy)
    result = run_cv(root, {**FAST, "pseudo_run": "src", "pseudo_threshold": threshold, "pseudo_teacher": "fold"},
                    workdir=root, name="byfold", progress=False)
    record = result.sidecar["pseudo_labels"]
    assert record["teacher"] == "fold"
    classes = result.sidecar["classes"]
    for k, fold_old in enumerate(source.sidecar["folds"]):
        teacher = np.load(source.paths.fold_test(k))
        chosen = np.flatnonzero(teacher.max(1) >= threshold)
        assert record["n_rows_by_fold"][k] == len(chosen) == result.sidecar["folds"][k]["n_pseudo"]
        counts = np.bincount(teacher[chosen].argmax(1), minlength=len(classes)).tolist()
        assert record["per_class_by_fold"][k] == dict(zip(classes, counts))
        assert len(seen[k]) == fold_old["n_train"] + len(chosen)
        if len(chosen):
            assert seen[k][-len(chosen):].tolist() == teacher[chosen].argmax(1).tolist()
    assert result.sidecar["folds_digest"] == source.sidecar["folds_digest"]


def test_pseudo_teacher_fold_refuses_other_folds_and_blends(source_run):
    root, _, threshold = source_run
    with pytest.raises(ComptkError, match="pseudo_teacher 'fold' needs the folds of run 'src'"):
        run_cv(root, {**FAST, "n_folds": 3, "pseudo_run": "src", "pseudo_threshold": threshold,
                      "pseudo_teacher": "fold"}, workdir=root, name="k3", progress=False)
    assert not RunPaths(root, "k3").oof.exists()
    _fake_source(root, "blendlike", lambda m: {**m, "kind": "blend", "method": "mean"})
    with pytest.raises(ComptkError, match="needs a finished K-fold run, and 'blendlike' is a blend"):
        run_cv(root, {**FAST, "pseudo_run": "blendlike", "pseudo_threshold": threshold, "pseudo_teacher": "fold"},
               workdir=root, name="fromblend", progress=False)
    with pytest.raises(ComptkError, match="pseudo_teacher.*'teacher'|'teacher'.*pseudo_teacher"):
        run_cv(root, {**FAST, "pseudo_run": "src", "pseudo_teacher": "teacher"}, workdir=root, name="bad",
               progress=False)
    with pytest.raises(ComptkError, match="pseudo_teacher = 'fold' needs pseudo_run"):
        run_cv(root, {**FAST, "pseudo_teacher": "fold"}, workdir=root, name="alone", progress=False)
    # the same K on another fold assignment is refused before anything is written, its folds file included
    with pytest.raises(ComptkError, match="pseudo_teacher 'fold' needs the folds of run 'src'"):
        run_cv(root, {**FAST, "folds_seed": 7, "pseudo_run": "src", "pseudo_threshold": threshold,
                      "pseudo_teacher": "fold"}, workdir=root, name="seed7", progress=False)
    assert not RunPaths(root, "seed7").run_dir.exists() and not list((root / "folds").glob("*-seed7-*"))
    # a run pseudo-labelled by a whole run's predictions (pseudo_teacher run, the default) saw every fold through
    # them: it cannot teach fold by fold
    run_cv(root, {**FAST, "pseudo_run": "src", "pseudo_threshold": threshold}, workdir=root, name="taught",
           progress=False)
    with pytest.raises(ComptkError, match="run 'taught' was itself pseudo-labelled by a whole run"):
        run_cv(root, {**FAST, "pseudo_run": "taught", "pseudo_threshold": threshold, "pseudo_teacher": "fold"},
               workdir=root, name="fromtaught", progress=False)


def test_pseudo_teacher_fold_reads_the_folds_of_a_run_given_by_path_from_its_own_work_directory(source_run,
                                                                                              tmp_path):
    root, source, threshold = source_run
    other = tmp_path / "other"
    shutil.copytree(root, other)
    for k in range(len(source.sidecar["folds"])):  # this work directory's run of that name has no fold files
        RunPaths(other, "src").fold_test(k).unlink()
    result = run_cv(other, {**FAST, "pseudo_run": str(source.paths.oof), "pseudo_threshold": threshold,
                            "pseudo_teacher": "fold"}, workdir=other, name="bypath", progress=False)
    expected = [int((np.load(source.paths.fold_test(k)).max(1) >= threshold).sum())
                for k in range(len(source.sidecar["folds"]))]
    assert result.sidecar["pseudo_labels"]["n_rows_by_fold"] == expected


def test_pseudo_labelled_test_crops_are_not_cropped_again(tiny, monkeypatch):
    """Where test images are crops ([test_time] crop), the training rows get crop-to-test crops and the
    pseudo-labelled test rows, crops at the test scale already, skip that per-image transform."""
    toml = tiny / "competition.toml"
    toml.write_text(toml.read_text() + "\n[test_time]\ncrop = 0.8\n")
    run_cv(tiny, FAST, workdir=tiny, name="src", progress=False)
    from comptk.train import crossval

    seen = []
    original = crossval.fit

    def spy(model, train_set, *args, **kwargs):
        seen.append(train_set)
        return original(model, train_set, *args, **kwargs)

    monkeypatch.setattr(crossval, "fit", spy)
    result = run_cv(tiny, {**FAST, "augment": "crop-to-test", "pseudo_run": "src", "pseudo_threshold": 0.01},
                    workdir=tiny, name="crops", progress=False)
    assert result.sidecar["config"]["augment"] == "crop-to-test"
    for k, train_set in enumerate(seen):
        n_rows = result.sidecar["folds"][k]["n_train"]
        assert train_set.plain_from == n_rows and len(train_set) == n_rows + result.sidecar["folds"][k]["n_pseudo"]
        images, _ = train_set.__getitems__(list(range(len(train_set))))
        raw = torch.from_numpy(train_set.images)
        for got, image in zip(images[n_rows:], raw[n_rows:]):  # not cropped: as they are, or flipped
            assert torch.equal(got, image) or torch.equal(got, torch.flip(image, (1,)))
        assert not torch.equal(images[:n_rows], raw[:n_rows])  # the train rows are cropped


def test_per_image_pipelines_skip_rows_from_plain_from_and_leave_other_runs_unchanged():
    import albumentations as A
    from comptk.train.augment import AUGMENTS, BatchAugment, ImageAugment, without_crops
    from comptk.train.dataset import ImageArrayDataset

    images = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    invert = ImageArrayDataset(images, np.zeros(6, np.int64), ImageAugment([A.InvertImg(p=1)], 8, 0), plain_from=4,
                               plain_transform=None)
    batch, _ = invert.__getitems__([5, 0, 4, 2])
    assert torch.equal(batch[0], torch.from_numpy(images[5])) and torch.equal(batch[2], torch.from_numpy(images[4]))
    assert torch.equal(batch[1], torch.from_numpy(255 - images[0])) and torch.equal(batch[3],
                                                                                  torch.from_numpy(255 - images[2]))
    # rows below plain_from only, or a batch-level augmentation: the same draws as without plain_from
    for make in (lambda: ImageAugment([A.RandomResizedCrop(size=(8, 8), scale=(0.3, 0.6), p=1)], 8, 3),
                 lambda: BatchAugment(3, flip=True, shift=0.1)):
        plain, with_from = (ImageArrayDataset(images, None, make(), plain_from=p) for p in (None, 3))
        for rows in ([0, 1, 2], [2, 0, 1]):
            expect = plain.__getitems__(rows)[0]
            assert torch.equal(with_from.__getitems__(rows)[0], expect)
    # crop-to-test without its crop keeps its flip
    kept = without_crops(AUGMENTS.get("crop-to-test")(8, 0, 0.6), 0)
    assert [type(t).__name__ for t in kept.compose.transforms] == ["HorizontalFlip"]
    assert without_crops(BatchAugment(0), 0) is None and without_crops(None, 0) is None
