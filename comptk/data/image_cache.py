"""The decoded-image cache: images decoded and resized once per image set and size, kept
as a memory-mapped uint8 .npy (N, size, size, 3) that later runs, tuner trials and test
predictions load instead of decoding again.

The cache key covers everything the decoded pixels depend on: each image's absolute path
(in row order), byte size and modification time (ns), the image size, the resize method,
the decoding code's version and Pillow's version. Touching, replacing, adding, removing or
reordering an image, or changing the size, gives another key and so a fresh decode.
Hashing file contents costs several times the stat calls (docs/speed.md, "Image cache"),
so the key uses stat.

Files are written to a temporary name and renamed into place (artifacts.save_npy): a killed
decode never leaves a partial cache, and two runs decoding at once both write the same
bytes; the last rename wins while a reader of the older file keeps its mapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL

from .. import artifacts
from ..errors import ComptkError
from .images import DECODE_VERSION, RESIZE_METHOD, load_images
from .tables import CompetitionData

log = logging.getLogger("comptk")


def cache_key(paths: tuple[Path, ...] | list[Path], size: int) -> str:
    """sha256 of what the decoded array depends on (see the module docstring)."""
    h = hashlib.sha256(f"comptk-images v{DECODE_VERSION} {RESIZE_METHOD} {size}px PIL {PIL.__version__}\n".encode())
    for path in paths:
        path = os.path.abspath(path)  # not Path.resolve(): 20x slower, and stat() follows links anyway
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise ComptkError(f"cannot read image {path}: {exc.strerror}") from None
        h.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()


def images_digest(images: np.ndarray) -> str:
    """sha256 of decoded images (shape, dtype and every pixel): what a run records of its image contents.

    The decoded uint8 arrays are what the model sees and are already in memory when a run starts, so
    one pass over them is exact and reads no file again (hashing every file's bytes would read the
    whole data set again on each start, and would also flag changes that decode to the same pixels).
    The digest depends on the size the images were decoded at, so it compares runs of one img_size:
    a resume, not two runs of another size. Like the cache key, it trusts the cache for unchanged
    path, size and mtime: the same pixels the run trains on.
    """
    h = hashlib.sha256(f"{images.shape} {images.dtype}\n".encode())
    h.update(np.ascontiguousarray(images).reshape(-1))  # a view: no copy of the pixels
    return h.hexdigest()


@dataclass(frozen=True)
class CachedImages:
    images: np.ndarray  # (N, size, size, 3) uint8; a copy-on-write memory map when read from the cache
    status: str  # "hit" (read from the cache), "written" (decoded, then cached), "off" or "unwritable" (decoded)
    path: Path | None  # the cache file, when the cache is on


def _read(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached array, or None when it is missing or not the expected array."""
    try:
        # "c": copy-on-write, so the array is writable (torch.from_numpy) and the file never changes
        array = np.load(path, mmap_mode="c")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("image cache %s is unreadable (%s); decoding again", path, exc)
        return None
    if array.shape != shape or array.dtype != np.uint8:
        log.warning("image cache %s holds %s %s, not %s uint8; decoding again", path, array.shape, array.dtype, shape)
        return None
    return array


def load_images_cached(
    paths: tuple[Path, ...] | list[Path], size: int, *, workdir: Path, label: str, cache: bool = True
) -> CachedImages:
    """Decoded images as :func:`comptk.data.load_images` returns them, through the cache.

    ``label`` (e.g. ``fashion-train``) names the cache file; cache files of the same label
    and size with another key (older versions of the images) are removed.
    """
    if not cache:
        return CachedImages(load_images(paths, size), "off", None)
    key = cache_key(paths, size)
    path = artifacts.image_cache_path(workdir, label, size, key)
    shape = (len(paths), size, size, 3)
    array = _read(path, shape)
    if array is not None:
        return CachedImages(array, "hit", path)
    images = load_images(paths, size)
    try:
        artifacts.save_npy(path, images)
    except OSError as exc:  # a full disk or a read-only work directory costs speed, not the run
        log.warning("image cache not written (%s: %s); the images were decoded in memory", path, exc.strerror or exc)
        return CachedImages(images, "unwritable", None)
    old = [p for p in artifacts.image_cache_files(workdir, label, size) if p != path]
    old += artifacts.stale_temporary_files(artifacts.image_cache_dir(workdir), older_than_s=3600)  # from killed writes
    for stale in old:
        with contextlib.suppress(OSError):
            stale.unlink()  # a run still reading it keeps its mapping (POSIX)
    return CachedImages(images, "written", path)


@dataclass(frozen=True)
class CompetitionImages:
    train: np.ndarray
    test: np.ndarray
    seconds: float  # decoding and/or reading the cache
    cache: dict[str, str]  # split -> hit | written | off

    def describe(self) -> str:
        how = {"hit": "read from the image cache", "written": "decoded and cached", "off": "decoded (no cache)",
               "unwritable": "decoded (cache not writable)"}
        parts = [f"{split} {how[state]}" for split, state in self.cache.items()]
        return f"images: {', '.join(parts)} ({self.seconds:.1f} s)"

    def digests(self) -> tuple[str, str]:
        """images_digest of the train and the test images."""
        return images_digest(self.train), images_digest(self.test)


def load_competition_images(data: CompetitionData, size: int, *, workdir: Path, cache: bool = True) -> CompetitionImages:
    """Train and test images of a competition, through the cache (a bad image fails here)."""
    started = time.perf_counter()
    name = data.competition.name
    train = load_images_cached(data.train.paths, size, workdir=workdir, label=f"{name}-train", cache=cache)
    test = load_images_cached(data.test.paths, size, workdir=workdir, label=f"{name}-test", cache=cache)
    return CompetitionImages(train.images, test.images, time.perf_counter() - started,
                             {"train": train.status, "test": test.status})
