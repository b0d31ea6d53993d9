"""Image files: finding them in folders and decoding them (any PIL mode -> RGB uint8).

Images are decoded once and resized to the training size, so epochs index a uint8 array
instead of decoding files again (see image_cache.py for the on-disk cache).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ComptkError

# Bump DECODE_VERSION whenever decode_image or load_images change the pixels they give:
# it is part of the image cache's key (image_cache.py), so old caches are not reused.
DECODE_VERSION = 1
RESIZE_METHOD = "bilinear"
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def is_visible(path: Path) -> bool:
    """Not a hidden file: macOS copies leave '._name.jpg' resource forks beside the images."""
    return not path.name.startswith(".")


def images_in(folder: Path) -> list[Path]:
    """Image files under folder, not hidden nor in a hidden folder (e.g. .ipynb_checkpoints)."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _too_large(path: Path, n_pixels: int | None, limit: int) -> ComptkError:
    size = f"{n_pixels:,} pixels" if n_pixels else "too many pixels"
    return ComptkError(f"cannot read image {path}: {size}, above Pillow's decompression-bomb limit of "
                       f"{limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); downscale it")


def _check_pixels(path: Path, img: Image.Image) -> None:
    """An opened image above the decompression-bomb limit is an error (Pillow itself only warns below 2x)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit and img.width * img.height > limit:
        raise _too_large(path, img.width * img.height, limit)


def _bomb_refused(path: Path, exc: Exception) -> ComptkError:
    """Image.open's DecompressionBombError (above twice the limit) as the same one-line error."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return _too_large(path, int(found.group(1)) if found else None, Image.MAX_IMAGE_PIXELS or 0)


@contextlib.contextmanager
def bomb_warnings_silenced() -> Iterator[None]:
    """Silence Pillow's DecompressionBombWarning: decode_image turns those images into a ComptkError
    naming the file instead. The warnings filter is process-wide and catch_warnings is not
    thread-safe, so enter this in the thread that starts the decoding threads, not in each of them
    (decode_image enters it itself only in the main thread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def decode_image(path: Path) -> Image.Image:
    """Open any image as RGB: grayscale is repeated, transparency goes onto white.

    An image above Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 MP)
    is an error before it is decoded: Pillow only warns up to twice the limit, but decoding such
    images in parallel threads can exhaust memory, and a competition image that large is a mistake."""
    if threading.current_thread() is threading.main_thread():  # no decoding threads run now: safe to filter
        with bomb_warnings_silenced():
            return _decode(path)
    return _decode(path)


def _decode(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            _check_pixels(path, img)
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return Image.alpha_composite(canvas, rgba).convert("RGB")
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                array = np.asarray(img, dtype=np.float64)
                span = max(array.max() - array.min(), 1e-12)
                return Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8)).convert("RGB")
            return img.convert("RGB")
    except Image.DecompressionBombError as exc:  # above twice the limit: Image.open refuses it
        raise _bomb_refused(path, exc) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        detail = "not a readable image file" if str(path) in str(exc) else str(exc)
        raise ComptkError(f"cannot read image {path}: {detail}") from None


def fit_image(img: Image.Image, size: int) -> np.ndarray:
    """An RGB image as the (size, size, 3) uint8 array training sees (the one resize of load_images)."""
    if img.size != (size, size):
        img = img.resize((size, size), _RESAMPLE[RESIZE_METHOD])
    return np.asarray(img)


def load_images(paths: tuple[Path, ...] | list[Path], size: int) -> np.ndarray:
    """Decode and resize images to size x size, as one uint8 array (N, size, size, 3)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def load(i: int) -> None:
        out[i] = fit_image(decode_image(paths[i]), size)

    with bomb_warnings_silenced(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(load, range(len(paths))))
    return out


def read_images(paths: tuple[Path, ...] | list[Path], size: int) -> tuple[np.ndarray, dict[int, str]]:
    """load_images that goes on past unreadable files: the images (rows of unreadable files are
    zeros) and, by row, why each unreadable one failed ("file not found", "cannot read image ...")."""
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    failed: dict[int, str] = {}

    def load(i: int) -> None:
        if not Path(paths[i]).is_file():  # decode_image would call a missing file "not a readable image"
            failed[i] = f"image file not found: {paths[i]}"
            return
        try:
            out[i] = fit_image(decode_image(paths[i]), size)
        except ComptkError as exc:
            failed[i] = str(exc)

    with bomb_warnings_silenced(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(load, range(len(paths))))
    return out, dict(sorted(failed.items()))


def probe_image(path: Path) -> str | None:
    """Why ``path`` cannot be an image (missing, no image header Pillow knows, above the decompression-bomb
    limit as decode_image refuses it), or None. Reads the header only, so a whole list is checked before any
    decoding; a truncated file still fails when decoded. Call it under bomb_warnings_silenced()."""
    if not Path(path).is_file():
        return f"image file not found: {path}"
    try:
        with Image.open(path) as img:
            _check_pixels(path, img)
    except ComptkError as exc:
        return str(exc)
    except Image.DecompressionBombError as exc:
        return str(_bomb_refused(path, exc))
    except (UnidentifiedImageError, OSError, ValueError):
        return f"cannot read image {path}: not a readable image file"
    return None


def fit_array(array: np.ndarray, size: int, where: str = "image") -> np.ndarray:
    """A decoded image given as an array (uint8 H x W x 3 RGB, or H x W grey) as load_images would give
    the same pixels from a file: repeated to RGB, resized to (size, size, 3) the same way."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ComptkError(f"{where}: expected a uint8 array of shape (H, W, 3) or (H, W), "
                          f"got {array.dtype} {tuple(array.shape)}")
    if min(array.shape[:2]) == 0:
        raise ComptkError(f"{where}: the array is empty, shape {tuple(array.shape)}")
    return fit_image(Image.fromarray(np.ascontiguousarray(array)).convert("RGB"), size)


def load_centre_crops(paths: tuple[Path, ...] | list[Path], size: int, crop: float) -> np.ndarray:
    """The centre ``crop`` of each side of each image, cut at the file's own resolution and then
    resized to size x size (N, size, size, 3) uint8: a whole picture as a test image that is a crop
    of ``crop`` of each side (``[test_time] crop``) looks, at the same scale and sharpness. (A crop
    of the img_size array instead would be upsampled, so blurrier than any test crop.)"""
    if not 0 < crop <= 1:
        raise ComptkError(f"crop fraction must be in (0, 1], got {crop}")
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def load(i: int) -> None:
        img = decode_image(paths[i])
        width, height = img.size
        crop_w, crop_h = max(1, round(crop * width)), max(1, round(crop * height))
        left, top = (width - crop_w) // 2, (height - crop_h) // 2
        out[i] = fit_image(img.crop((left, top, left + crop_w, top + crop_h)), size)

    with bomb_warnings_silenced(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(load, range(len(paths))))
    return out
