"""The fitted recipe (settings "auto", or no [train] table) and its one door, config.resolve_run."""

from __future__ import annotations

import logging
import tomllib

import pytest

from comptk.competition import BUNDLED_DIR, load_competition
from comptk.config import AUTO_KEYS, resolve, resolve_run
from comptk.data.facts import DataFacts, SplitImages, competition_facts
from comptk.errors import ComptkError
from comptk.train import recipe as recipe_module
from comptk.train.recipe import fit_recipe, round_size


def facts(side: float, n_train: int = 3000, test_side: float | None = None) -> DataFacts:
    def split(s: float, n: int) -> SplitImages:
        return SplitImages(n, min(n, 500), int(s), int(s), float(s), (float(s),) * min(n, 500), (("RGB", 1),))

    return DataFacts(n_train, 100, ("a", "b"), (n_train // 2, n_train - n_train // 2), split(side, n_train),
                     split(test_side or side, 100))


def test_round_size():
    assert [round_size(s) for s in (8, 20, 28, 30, 45, 56, 70, 100, 500)] == [16, 24, 32, 32, 48, 56, 64, 96, 496]


@pytest.mark.parametrize("side, n, device, weights, expected", [
    # small images on a CPU: a small CNN at about their size; the wide one when the budget gives it 10+ epochs
    (28, 3000, "cpu", set(), {"model": "small_resnet_wide", "img_size": 32, "pretrained": False,
                              "batch_size": 128, "lr": 0.005}),
    (28, 60000, "cpu", set(), {"model": "small_resnet", "img_size": 32, "epochs": 5}),
    (12, 500, "cpu", set(), {"model": "small_resnet_wide", "img_size": 16, "batch_size": 64, "lr": 0.003,
                             "epochs": 30}),
    # photos on a CPU without weights: capped at 64 px
    (400, 3000, "cpu", set(), {"model": "small_resnet", "img_size": 64, "pretrained": False}),
    # photos with weights at hand: an ImageNet model, 224 px on a GPU, at most 128 px on a CPU
    (400, 3000, "cuda", {"convnext_nano", "resnet18"}, {"model": "convnext_nano", "img_size": 224,
                                                        "pretrained": True, "lr": 3e-4, "batch_size": 64}),
    (400, 3000, "cuda", {"resnet18"}, {"model": "resnet18", "pretrained": True}),
    (400, 3000, "cpu", {"resnet18", "efficientnet_b0"}, {"model": "resnet18", "img_size": 128, "pretrained": True,
                                                         "batch_size": 32}),
    # small images never take the ImageNet route, photos on a GPU without weights: resnet18 from scratch
    (28, 3000, "cuda", {"convnext_nano"}, {"model": "small_resnet_wide", "pretrained": False, "epochs": 40}),
    (300, 3000, "cuda", set(), {"model": "resnet18", "img_size": 224, "pretrained": False, "lr": 0.002}),
])
def test_fit_recipe_rules(side, n, device, weights, expected):
    fitted = fit_recipe(facts(side, n), device, True, weights)
    assert set(fitted.values) == set(AUTO_KEYS) == set(fitted.reasons)
    assert {k: fitted.values[k] for k in expected} == expected
    assert all(fitted.reasons.values())


def test_fit_recipe_respects_rules_and_fixed_values():
    photos = facts(400)
    assert fit_recipe(photos, "cuda", False, {"convnext_nano"}).values["pretrained"] is False  # not allowed
    fixed = fit_recipe(photos, "cuda", True, {"convnext_nano"}, fixed={"pretrained": False})
    assert fixed.values["model"] == "resnet18" and fixed.reasons["pretrained"] == "given"
    given = fit_recipe(photos, "cpu", True, {"efficientnet_b0"}, fixed={"model": "efficientnet_b0", "epochs": 2})
    assert given.values["model"] == "efficientnet_b0" and given.values["pretrained"] is True
    assert given.values["epochs"] == 2 and given.values["img_size"] == 128
    asked = fit_recipe(facts(28), "cpu", True, set(), fixed={"pretrained": True})
    assert asked.values["model"] == "resnet18" and asked.values["pretrained"] is True  # asked for: not silently off
    assert fit_recipe(facts(28), "cpu", True, set()) == fit_recipe(facts(28), "cpu", True, set())  # pure


def _declaration(tmp_path, tiny, train_table: str | None):
    text = (tiny / "competition.toml").read_text()
    text = text[:text.index("[train]")] + (train_table or "")
    (tiny / "competition.toml").write_text(text)
    return load_competition(tiny / "competition.toml")


def test_no_train_table_fits_every_recipe_setting(tmp_path, tiny, caplog):
    comp = _declaration(tmp_path, tiny, None)
    assert comp.auto_train == AUTO_KEYS and dict(comp.train) == {}
    with pytest.raises(ComptkError, match="are \"auto\".*no data folder was given"):
        resolve_run(comp)
    measured = competition_facts(comp, comp.data_path(tiny))
    assert measured.train.median_side == 12 and measured.n_train == 18 and measured.class_counts == (6, 6, 6)
    with caplog.at_level(logging.INFO, logger="comptk"):
        cfg = resolve_run(comp, {"epochs": 2, "device": "cpu"}, facts=lambda: measured)
    assert (cfg.model, cfg.img_size, cfg.epochs, cfg.batch_size, cfg.lr) == ("small_resnet_wide", 16, 2, 64, 0.003)
    assert "settings fitted to the data and cpu" in caplog.text and "img_size = 16" in caplog.text
    # the old code defaults (small_resnet, 224 px) were for no [train] table; explicit values still win
    assert resolve_run(comp, {"model": "small_resnet", "img_size": 224, "device": "cpu"},
                       facts=measured).img_size == 224


def test_auto_values_in_a_train_table(tmp_path, tiny):
    comp = _declaration(tmp_path, tiny, '[train]\nimg_size = "auto"\nepochs = 3\nmodel = "auto"\nlr = 0.01\n')
    assert comp.auto_train == ("model", "pretrained", "img_size", "batch_size")  # model's tied settings follow it
    cfg = resolve_run(comp, {"device": "cpu"}, facts=competition_facts(comp, comp.data_path(tiny)))
    assert (cfg.img_size, cfg.epochs, cfg.lr, cfg.model) == (16, 3, 0.01, "small_resnet_wide")
    (tiny / "competition.toml").write_text((tiny / "competition.toml").read_text().replace("lr = 0.01",
                                                                                         'augment = "auto"'))
    with pytest.raises(ComptkError, match="setting 'augment' cannot be \"auto\""):
        load_competition(tiny / "competition.toml")


def test_model_auto_on_the_command_line(tiny):
    comp = load_competition(tiny / "competition.toml")  # [train] model = "small_resnet", img_size = 12
    cfg = resolve_run(comp, {"model": "auto", "device": "cpu"}, facts=competition_facts(comp, comp.data_path(tiny)))
    assert cfg.model == "small_resnet_wide" and cfg.img_size == 12  # the table's img_size stays


def test_bundled_competitions_resolve_exactly_as_before():
    """Every bundled declaration has a [train] table: nothing is fitted, the resolution is the old one
    (code defaults < [train] < options, crop-to-test for test crops), and no data is needed."""
    for path in sorted(BUNDLED_DIR.glob("*/competition.toml")):
        comp = load_competition(path)
        assert comp.auto_train == (), path
        raw = tomllib.loads(path.read_text())
        old = resolve(raw["train"], {"epochs": 1}, where=str(path))
        new = resolve_run(comp, {"epochs": 1})  # no facts: would raise if anything were fitted
        if comp.has_test_crop and "augment" not in raw["train"]:
            old = old.__class__(**{**old.to_dict(), "augment": "crop-to-test"})
        assert new == old, path


def test_the_recipe_module_stays_pure():
    from pathlib import Path

    text = Path(recipe_module.__file__).read_text(encoding="utf-8")
    assert "\nimport torch" not in text and "\nfrom ..config" not in text  # torch only inside device_kind


def test_train_and_sweep_fit_a_declaration_without_train_table(tmp_path, tiny):
    """The data is measured through run_cv and sweep (the one resolution), the fitted values are the run's."""
    import json

    from click.testing import CliRunner

    from comptk.cli import main
    from comptk.experiments.sweep import sweep

    _declaration(tmp_path, tiny, None)
    args = ["--workdir", str(tiny), "--folds", "2", "--epochs", "1", "--device", "cpu", "--quiet", "--no-plots"]
    result = CliRunner().invoke(main, ["train", str(tiny), "--name", "fit", *args])
    assert result.exit_code == 0, result.output
    config = json.loads((tiny / "oof" / "fit.json").read_text())["config"]
    assert (config["model"], config["img_size"], config["batch_size"], config["lr"]) == ("small_resnet_wide", 16,
                                                                                          64, 0.003)
    swept = sweep(str(tiny), {"lr": [0.01, 0.02]}, name="sw", workdir=tiny, folds_subset=[0], progress=False,
                  plots=False, n_folds=2, epochs=1, device="cpu")
    assert all(json.loads((tiny / "oof" / f"{n}.json").read_text())["config"]["img_size"] == 16
               for n in swept.run_names)


def test_auto_fits_once_and_its_members_train_at_the_fitted_size(tmp_path, tiny):
    """`comptk auto` on a declaration without [train]: the base settings are fitted from the data, and the
    members (child `comptk train` runs with their own model) keep the base's image size."""
    import json

    from click.testing import CliRunner

    from comptk.cli import main

    _declaration(tmp_path, tiny, None)
    args = ["auto", str(tiny), "--workdir", str(tiny), "--budget", "60s", "--name", "fit"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    plan = json.loads((tiny / "auto" / "fit" / "plan.json").read_text())
    trained = [m["member"]["name"] for m in plan["members"] if m["status"] == "trained"]
    for name in trained:
        assert json.loads((tiny / "oof" / f"{name}.json").read_text())["config"]["img_size"] == 16


def test_train_prints_the_settings_it_fitted_to_the_data(tmp_path, tiny, monkeypatch):
    """Said before the run starts, when the 'comptk' logger's level was still the root's WARNING: it was lost."""
    from click.testing import CliRunner

    from comptk.cli import main

    monkeypatch.setattr(recipe_module, "_LOGGED", set())  # said once a process: other tests may have said it
    _declaration(tmp_path, tiny, '[train]\nmodel = "small_resnet"\nimg_size = "auto"\nepochs = 1\nbatch_size = 8\n')
    result = CliRunner().invoke(main, ["train", str(tiny), "--workdir", str(tiny), "--folds", "2", "--quiet",
                                       "--no-plots"])
    assert result.exit_code == 0, result.output
    assert 'settings fitted to the data and cpu ("auto"): img_size = 16' in result.output
