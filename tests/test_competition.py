from pathlib import Path

import pytest

from comptk import ComptkError, load_competition
from comptk.competition import BUNDLED_DIR


@pytest.mark.parametrize("name", ["fashion", "digits", "artist"])
def test_bundled_competitions_load(name):
    comp = load_competition(name)
    assert comp.name == name
    assert comp.metric in ("accuracy", "macro_f1")


def test_artist_declares_half_size_test_crops_and_macro_f1():
    comp = load_competition("artist")
    assert comp.test_crop == 0.5 and comp.metric == "macro_f1" and comp.columns.label == "artist"


def test_path_to_folder_or_file_is_accepted(tiny):
    assert load_competition(tiny).name == "tiny"
    assert load_competition(tiny / "competition.toml").name == "tiny"


def _edit(tiny: Path, old: str, new: str) -> Path:
    path = tiny / "competition.toml"
    path.write_text(path.read_text().replace(old, new))
    return tiny


def test_unknown_key_suggests_the_right_one(tiny):
    with pytest.raises(ComptkError, match=r"unknown key 'metrc' \(did you mean 'metric'\?\)"):
        load_competition(_edit(tiny, 'metric = "accuracy"', 'metrc = "accuracy"'))


def test_missing_required_key(tiny):
    with pytest.raises(ComptkError, match="missing required key 'metric'"):
        load_competition(_edit(tiny, 'metric = "accuracy"', ""))


def test_unknown_train_setting(tiny):
    with pytest.raises(ComptkError, match=r"\[train\]: unknown setting 'epoch' \(did you mean 'epochs'\?\)"):
        load_competition(_edit(tiny, "epochs = 1", "epoch = 1"))


def test_wrong_type_of_train_setting(tiny):
    with pytest.raises(ComptkError, match="setting 'epochs' must be int"):
        load_competition(_edit(tiny, "epochs = 1", 'epochs = "one"'))


def test_unknown_metric_lists_choices(tiny):
    with pytest.raises(ComptkError, match="metric 'f1' is not known.*accuracy, macro_f1"):
        load_competition(_edit(tiny, 'metric = "accuracy"', 'metric = "f1"'))


def test_unknown_competition_names_known_ones():
    with pytest.raises(ComptkError, match="unknown competition 'fashon' \\(did you mean 'fashion'\\?\\)"):
        load_competition("fashon")


def test_invalid_toml_names_the_file(tiny):
    (tiny / "competition.toml").write_text("name = \n")
    with pytest.raises(ComptkError, match="competition.toml: not valid TOML"):
        load_competition(tiny)


def test_bundled_dir_is_the_repo_folder():
    assert (BUNDLED_DIR / "fashion" / "competition.toml").is_file()


def _declare(folder: Path, name: str) -> Path:
    (folder / name).mkdir(parents=True)
    path = folder / name / "competition.toml"
    path.write_text(f'name = "{name}"\nmetric = "accuracy"\nlayout = "csv"\n[files]\ntrain = "t.csv"\ntest = "s.csv"\n')
    return path


def test_no_name_uses_the_work_directorys_only_competition(tmp_path, monkeypatch):
    from comptk.competition import default_competition

    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    path = _declare(work / "competitions", "mine")
    assert default_competition(work) == path
    assert load_competition(None, work).name == "mine"
    assert load_competition(None, work).source == path


def test_no_name_and_no_competition_says_so_and_names_the_bundled_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ComptkError, match=r"no competition NAME given and none declared in .*work/competitions or "
                                          r"competitions; pass a NAME \(bundled: .*fashion"):
        load_competition(None, tmp_path / "work")


def test_no_name_and_several_competitions_lists_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _declare(tmp_path / "competitions", "c")
    _declare(tmp_path / "work" / "competitions", "a")
    _declare(tmp_path / "work" / "competitions", "b")
    with pytest.raises(ComptkError, match=r"declares 2: a, b; pass one of them as NAME"):
        load_competition(None, tmp_path / "work")


def test_no_name_takes_the_work_directorys_only_competition_over_those_where_the_command_runs(tmp_path, monkeypatch):
    """`comptk auto --workdir W` run from a checkout whose ./competitions declares several: W's own is meant."""
    monkeypatch.chdir(tmp_path)
    _declare(tmp_path / "competitions", "b")
    _declare(tmp_path / "competitions", "c")
    mine = _declare(tmp_path / "work" / "competitions", "a")
    assert load_competition(None, tmp_path / "work").source == mine
    with pytest.raises(ComptkError, match=r"declares 2: b, c"):  # a work directory declaring none: ./competitions
        load_competition(None, tmp_path / "elsewhere")


def test_the_work_directorys_declaration_wins_over_the_one_where_the_command_runs(tmp_path, monkeypatch):
    """`comptk init x --workdir W` from a folder that has its own competitions/x: W's is the one meant."""
    monkeypatch.chdir(tmp_path)
    here = _declare(tmp_path / "competitions", "x")
    there = _declare(tmp_path / "work" / "competitions", "x")
    assert load_competition("x", tmp_path / "work").source == there
    assert load_competition("x", tmp_path).source.resolve() == here.resolve()


def test_listing_declarations_imports_no_training_stack():
    import subprocess
    import sys

    code = ("import sys; from comptk.competition import competition_names; assert 'digits' in competition_names(); "
            "print(','.join(m for m in ('torch', 'albumentations', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == ""
