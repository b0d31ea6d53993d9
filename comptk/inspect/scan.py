"""One pass over the image files: header facts for the data report and the hashes the
duplicate search needs, each file read and decoded once.

Per image: file format, PIL mode, width and height (header), file size, whether it
decodes, whether it is grey (mode L/LA/1/I/F, or RGB with equal channels), a sha256 of
the file bytes, a sha256 of the decoded RGB pixels (so a PNG and a lossless re-encode
of the same pixels match), a 64-bit perceptual hash (pHash: DCT of a 32x32 grey
version, 8x8 low frequencies against their median) and that 32x32 grey version (uint8),
used to confirm near-duplicate candidates.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.fft import dctn

from ..data.images import bomb_warnings_silenced, decode_image
from ..errors import ComptkError

HASH_SIZE = 8  # 8 x 8 = 64 bits
DCT_SIZE = 32
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class Scan:
    """Column arrays, one row per image (train rows first, then test rows)."""

    format: np.ndarray  # str: PNG, JPEG, ... ("" when unreadable)
    mode: np.ndarray  # str: PIL mode before conversion
    width: np.ndarray  # int (0 when unreadable)
    height: np.ndarray
    file_bytes: np.ndarray  # int
    grey: np.ndarray  # bool: grey mode, or colour mode with equal channels
    error: np.ndarray  # str: "" or why the file cannot be decoded
    file_sha: np.ndarray  # str
    pixel_sha: np.ndarray  # str ("" when unreadable)
    phash: np.ndarray  # uint64
    grey32: np.ndarray  # (N, 32, 32) uint8 grey versions (zeros when unreadable)

    @property
    def readable(self) -> np.ndarray:
        return self.error == ""

    def __len__(self) -> int:
        return len(self.format)


def _one(path: Path) -> tuple:
    """(format, mode, width, height, bytes, grey, error, file_sha, pixel_sha, 32x32 grey or None)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return ("", "", 0, 0, 0, False, f"cannot read file: {exc.strerror}", "", "", None)
    file_sha = hashlib.sha256(raw).hexdigest()
    try:
        with Image.open(io.BytesIO(raw)) as img:
            fmt, mode, (width, height) = img.format or "", img.mode, img.size
    except Exception as exc:  # noqa: BLE001 - any failure to parse means an unreadable image
        return ("", "", 0, 0, len(raw), False, f"not a readable image ({type(exc).__name__})", file_sha, "", None)
    try:
        rgb = np.asarray(decode_image(path))
    except ComptkError as exc:
        return (fmt, mode, width, height, len(raw), False, str(exc).split(": ", 1)[-1], file_sha, "", None)
    grey = mode in GREY_MODES or bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    pixel_sha = hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest()
    small = Image.fromarray(rgb).convert("L").resize((DCT_SIZE, DCT_SIZE), Image.Resampling.BILINEAR)
    return (fmt, mode, width, height, len(raw), grey, "", file_sha, pixel_sha, np.asarray(small, dtype=np.uint8))


def phash_bits(small: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes of (N, 32, 32) grey images, as uint64."""
    if len(small) == 0:
        return np.zeros(0, dtype=np.uint64)
    low = dctn(small, axes=(1, 2), norm="ortho")[:, :HASH_SIZE, :HASH_SIZE].reshape(len(small), -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def scan_images(paths: tuple[Path, ...] | list[Path], *, workers: int | None = None) -> Scan:
    """Read, decode and hash every image once (threads; PIL releases the GIL while decoding)."""
    with bomb_warnings_silenced(), ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        rows = list(pool.map(_one, paths, chunksize=64))
    small = np.zeros((len(rows), DCT_SIZE, DCT_SIZE), dtype=np.uint8)
    for i, row in enumerate(rows):
        if row[9] is not None:
            small[i] = row[9]
    columns = list(zip(*[r[:9] for r in rows])) if rows else [()] * 9
    error = np.array(columns[6], dtype=object).astype(str) if rows else np.zeros(0, dtype=str)
    phash = np.concatenate([phash_bits(small[lo:lo + 8192].astype(np.float32))
                            for lo in range(0, len(small), 8192)] or [np.zeros(0, np.uint64)])
    phash[error != ""] = 0
    return Scan(
        format=np.array(columns[0], dtype=str),
        mode=np.array(columns[1], dtype=str),
        width=np.array(columns[2], dtype=np.int64),
        height=np.array(columns[3], dtype=np.int64),
        file_bytes=np.array(columns[4], dtype=np.int64),
        grey=np.array(columns[5], dtype=bool),
        error=error,
        file_sha=np.array(columns[7], dtype=str),
        pixel_sha=np.array(columns[8], dtype=str),
        phash=phash,
        grey32=small,
    )
