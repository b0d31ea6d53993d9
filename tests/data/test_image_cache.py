"""The decoded-image cache: reused when nothing changed, rebuilt when anything did, never
a different result."""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from comptk import ComptkError, load_competition, run_cv
from comptk.artifacts import image_cache_dir
from comptk.cli import main
from comptk.data import image_cache as ic
from comptk.data.images import load_images
from comptk.data.layouts import read_data


def _paths(tiny):
    return read_data(load_competition(tiny), tiny / "data").train.paths


def _bump_mtime(path, seconds=10):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


def test_key_changes_with_images_size_and_decoder(tiny, monkeypatch):
    paths = _paths(tiny)
    key = ic.cache_key(paths, 12)
    assert ic.cache_key(paths, 12) == key
    assert ic.cache_key(paths, 16) != key
    assert ic.cache_key(paths[::-1], 12) != key
    assert ic.cache_key(paths[:-1], 12) != key
    monkeypatch.setattr(ic, "DECODE_VERSION", ic.DECODE_VERSION + 1)
    assert ic.cache_key(paths, 12) != key
    monkeypatch.undo()
    monkeypatch.setattr(ic, "RESIZE_METHOD", "bicubic")
    assert ic.cache_key(paths, 12) != key
    monkeypatch.undo()
    _bump_mtime(paths[3])  # `touch`
    assert ic.cache_key(paths, 12) != key


def test_written_then_read_back_equal_to_decoding(tiny):
    paths, work = _paths(tiny), tiny / "work"
    first = ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    second = ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    assert (first.status, second.status) == ("written", "hit") and first.path == second.path
    assert isinstance(second.images, np.memmap) and second.images.flags.writeable  # copy-on-write
    assert np.array_equal(second.images, load_images(paths, 12))
    assert [p.name for p in image_cache_dir(work).iterdir()] == [first.path.name]  # no temporary files left
    third = ic.load_images_cached(paths, 20, workdir=work, label="tiny-train")  # another size: its own file
    assert third.status == "written" and third.images.shape[1:] == (20, 20, 3)


def test_replaced_image_invalidates_and_the_stale_file_goes(tiny):
    paths, work = _paths(tiny), tiny / "work"
    old = ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    Image.new("RGB", (12, 12), (1, 2, 3)).save(paths[5])
    _bump_mtime(paths[5])  # the rewrite may land in the same mtime tick as the first write on coarse clocks
    new = ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    assert new.status == "written" and new.path != old.path
    assert (new.images[5] == (1, 2, 3)).all() and not np.array_equal(new.images[5], old.images[5])
    assert not old.path.exists() and new.path.exists()


def test_temporary_files_of_killed_writes_are_removed_when_old(tiny):
    paths, work = _paths(tiny), tiny / "work"
    folder = image_cache_dir(work)
    folder.mkdir(parents=True)
    old, fresh = folder / ".tiny-train-12px-x.npy.abc.tmp", folder / ".tiny-train-12px-x.npy.def.tmp"
    for path in (old, fresh):
        path.write_bytes(b"half")
    os.utime(old, (old.stat().st_atime, old.stat().st_mtime - 7200))
    ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    assert not old.exists() and fresh.exists()  # a fresh one may be another run's write in progress


def test_corrupt_or_foreign_cache_file_is_decoded_again(tiny, caplog):
    paths, work = _paths(tiny), tiny / "work"
    written = ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    written.path.write_bytes(written.path.read_bytes()[:100])  # truncated, as if copied half-way
    again = ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    assert again.status == "written" and np.array_equal(again.images, written.images)
    assert "unreadable" in caplog.text
    np.save(written.path, np.zeros((2, 12, 12, 3), np.uint8))  # right name, wrong array
    assert ic.load_images_cached(paths, 12, workdir=work, label="tiny-train").status == "written"
    assert np.array_equal(np.load(written.path), written.images)


def test_a_failed_decode_leaves_no_cache(tiny):
    paths, work = _paths(tiny), tiny / "work"
    paths[2].write_bytes(b"not an image")
    with pytest.raises(ComptkError, match="cannot read image"):
        ic.load_images_cached(paths, 12, workdir=work, label="tiny-train")
    assert not image_cache_dir(work).exists() or not list(image_cache_dir(work).iterdir())


def test_runs_with_and_without_the_cache_give_identical_results(tiny):
    work = tiny
    settings = {"n_folds": 2, "epochs": 1, "augment": "flip", "tta": "hflip"}
    kw = {"workdir": work, "progress": False}
    written = run_cv(tiny, settings, name="a", **kw)
    read = run_cv(tiny, settings, name="b", **kw)
    off = run_cv(tiny, settings, name="c", cache=False, **kw)
    assert written.sidecar["timings"]["image_cache"] == {"train": "written", "test": "written"}
    assert read.sidecar["timings"]["image_cache"] == {"train": "hit", "test": "hit"}
    assert off.sidecar["timings"]["image_cache"] == {"train": "off", "test": "off"}
    for other in (read, off):
        assert np.array_equal(np.load(other.paths.oof), np.load(written.paths.oof))
        assert np.array_equal(np.load(other.paths.preds), np.load(written.paths.preds))
    _bump_mtime(_paths(tiny)[1])  # a train-only image (test rows reuse the even ones)
    touched = run_cv(tiny, settings, name="d", **kw)
    assert touched.sidecar["timings"]["image_cache"] == {"train": "written", "test": "hit"}


def test_cli_no_cache_writes_no_cache(tiny):
    work = tiny
    args = ["train", str(tiny), "--workdir", str(work), "--folds", "2", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--no-cache", "--name", "x"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "decoded (no cache)" in result.output and not image_cache_dir(work).exists()
    result = CliRunner().invoke(main, [*args, "--name", "y"], catch_exceptions=False)
    assert "train decoded and cached" in result.output and len(list(image_cache_dir(work).iterdir())) == 2


def test_an_unwritable_cache_only_costs_speed(tiny, monkeypatch, caplog):
    def full_disk(path, array):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ic.artifacts, "save_npy", full_disk)
    result = ic.load_images_cached(_paths(tiny), 12, workdir=tiny / "work", label="tiny-train")
    assert result.status == "unwritable" and np.array_equal(result.images, load_images(_paths(tiny), 12))
    assert "image cache not written" in caplog.text and "No space left on device" in caplog.text
