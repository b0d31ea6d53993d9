import numpy as np
import pytest

from comptk import ComptkError, artifacts


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "x.npy"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_atomic_write_replaces(tmp_path):
    artifacts.save_npy(tmp_path / "a.npy", np.arange(3))
    artifacts.save_npy(tmp_path / "a.npy", np.arange(4))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_digest_is_order_sensitive():
    assert artifacts.digest(["a", "b"]) != artifacts.digest(["b", "a"])
    assert artifacts.digest(["a", "b"]) == artifacts.digest(iter(["a", "b"]))


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "a b"])
def test_bad_run_names(bad):
    with pytest.raises(ComptkError, match="run name"):
        artifacts.check_run_name(bad)


def test_paths_are_the_documented_layout(tmp_path):
    p = artifacts.RunPaths(tmp_path, "r1")
    assert p.oof == tmp_path / "oof" / "r1.npy" and p.sidecar == tmp_path / "oof" / "r1.json"
    assert p.preds == tmp_path / "preds" / "r1.npy" and p.submission == tmp_path / "submissions" / "r1.csv"
    assert artifacts.sidecar_of_submission(p.submission) == p.sidecar


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_get_a_normal_writes_mode(tmp_path, umask):
    """Not mkstemp's 0600: a shared work directory (a group folder, a Docker volume) stays readable."""
    import os
    import stat

    old = os.umask(umask)
    try:
        artifacts.save_json(tmp_path / "oof" / "r.json", {"a": 1})
        artifacts.save_npy(tmp_path / "oof" / "r.npy", np.arange(3))
        with artifacts.atomic_folder(tmp_path / "data" / "x") as building:
            (building / "f.txt").write_text("x")
        normal = tmp_path / "normal.txt"
        normal.write_text("x")
    finally:
        os.umask(old)

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(tmp_path / "oof" / "r.json") == mode(tmp_path / "oof" / "r.npy") == 0o666 & ~umask == mode(normal)
    assert mode(tmp_path / "data" / "x") == 0o777 & ~umask
    assert sorted(p.name for p in (tmp_path / "oof").iterdir()) == ["r.json", "r.npy"]  # no temporary left
