"""Small image generators shared by the stand-ins (numpy only, seeded by the caller's rng)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image


def hue_rgb(hue: float, sat: float = 0.7, val: float = 0.9) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, sat, val)) * 255


def stripes(rng: np.random.Generator, height: int, width: int, rgb: np.ndarray, angle: float, freq: float,
            noise: float = 18.0) -> np.ndarray:
    """A striped texture at ``angle`` (radians) with ``freq`` cycles per 32 px, in the colour ``rgb``."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    wave = np.sin(2 * np.pi * freq / 32 * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    shade = 0.55 + 0.4 * wave[..., None]
    pixels = rgb[None, None, :] * shade + rng.normal(0, noise, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def blobs(rng: np.random.Generator, height: int, width: int, rgb: np.ndarray, background: np.ndarray,
          n: int = 3) -> np.ndarray:
    """A few ellipses of colour ``rgb`` (shade varied) at random places on a flat background."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.broadcast_to(background, (height, width, 3)).astype(np.float32).copy()
    for _ in range(n):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.12, 0.3) * height, rng.uniform(0.12, 0.3) * width
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
        pixels[inside] = rgb * rng.uniform(0.8, 1.1)
    pixels += rng.normal(0, 10, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def long_tail(n_classes: int, total: int, largest: float, smallest: float, minimum: int) -> np.ndarray:
    """Class sizes falling exponentially from ``largest`` to ``smallest`` (the contest's profile),
    scaled to about ``total`` images, none under ``minimum``."""
    profile = largest * (smallest / largest) ** (np.arange(n_classes) / (n_classes - 1))
    return np.maximum(np.round(profile * total / profile.sum()), minimum).astype(int)


def save(pixels: np.ndarray, path: Path, *, gray: bool = False, quality: int = 90) -> None:
    """Save as the extension says (JPEG quality ``quality``); ``gray`` stores a one-channel image."""
    image = Image.fromarray(pixels)
    if gray:
        image = image.convert("L")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=quality)
    else:
        image.save(path)


def crop(pixels: np.ndarray, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """A random window of ``fraction`` of each side."""
    height, width = pixels.shape[:2]
    ch, cw = max(1, round(height * fraction)), max(1, round(width * fraction))
    top, left = rng.integers(0, height - ch + 1), rng.integers(0, width - cw + 1)
    return pixels[top:top + ch, left:left + cw]
