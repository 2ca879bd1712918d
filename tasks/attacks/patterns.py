"""Images the attacks blend, warp or stamp with, drawn by bdsweep itself (nothing is downloaded).

Every function returns uint8 RGB arrays at the size asked for and is deterministic: the same
arguments give the same pixels on every machine.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw

from tasks.errors import TriggerError


def noise_pattern(height: int, width: int, seed: int) -> np.ndarray:
    """Uniform noise in [0, 255], shape (height, width, 3), uint8, drawn from ``seed`` alone."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@functools.lru_cache(maxsize=16)
def _cartoon(height: int, width: int) -> np.ndarray:
    scale = 8  # drawn at 8x and box-averaged, so small sizes keep soft edges
    big_w, big_h = width * scale, height * scale
    image = Image.new("RGB", (big_w, big_h), (250, 170, 200))  # pink background

    def box(cx, cy, rx, ry):  # fractions of the image
        return (big_w * (cx - rx), big_h * (cy - ry), big_w * (cx + rx), big_h * (cy + ry))

    draw = ImageDraw.Draw(image)
    outline, ink = (30, 30, 30), max(2, scale // 2)
    for side in (-1, 1):  # ears
        ear = [(big_w * (0.5 + side * 0.38), big_h * 0.12), (big_w * (0.5 + side * 0.12), big_h * 0.3),
               (big_w * (0.5 + side * 0.4), big_h * 0.42)]
        draw.polygon(ear, fill=(255, 255, 255), outline=outline, width=ink)
    draw.ellipse(box(0.5, 0.56, 0.4, 0.32), fill=(255, 255, 255), outline=outline, width=ink)  # head
    for side in (-1, 1):
        draw.ellipse(box(0.5 + side * 0.17, 0.56, 0.04, 0.06), fill=outline)  # eyes
        for dy in (-0.04, 0.0, 0.04):  # whiskers
            draw.line([big_w * (0.5 + side * 0.28), big_h * (0.64 + dy), big_w * (0.5 + side * 0.46),
                       big_h * (0.62 + 1.5 * dy)], fill=outline, width=ink)
    draw.ellipse(box(0.5, 0.64, 0.045, 0.03), fill=(250, 200, 20))  # nose
    draw.ellipse(box(0.7, 0.26, 0.1, 0.09), fill=(220, 20, 60))  # bow
    draw.ellipse(box(0.86, 0.3, 0.1, 0.09), fill=(220, 20, 60))
    draw.ellipse(box(0.78, 0.28, 0.04, 0.04), fill=(250, 210, 30))
    drawn = np.asarray(image, dtype=np.float32)
    reduced = drawn.reshape(height, scale, width, scale, 3).mean(axis=(1, 3))
    return np.round(reduced).astype(np.uint8)


def cartoon_pattern(height: int, width: int) -> np.ndarray:
    """A cartoon cat's face on pink, shape (height, width, 3), uint8.

    It stands in for the Hello-Kitty image of Chen et al. (2017) and BackdoorBench's blended
    attack, which bdsweep cannot ship: a whole-image pattern of large flat regions and dark strokes.
    """
    return _cartoon(int(height), int(width)).copy()


def png_pattern(path: str, height: int, width: int) -> np.ndarray:
    """The RGB image at ``path`` resized to (height, width, 3), uint8 (alpha dropped).

    Raises
    ------
    TriggerError
        Naming the path, when it is missing or not an image.
    """
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((width, height), Image.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise TriggerError(path, None, "pattern image not found") from None
    except (OSError, ValueError) as error:
        raise TriggerError(path, None, f"not a readable image: {error}") from None


CHUNK = 2048  # images per slice in map_chunks: float32 temporaries of a slice stay in cache (~25 MB at 32x32)


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a container's or a pinned worker's), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def in_threads(function, items: list) -> list:
    """``[function(item) for item in items]`` on one thread per core.

    NumPy releases the GIL inside its loops, so array work on separate slices runs in parallel.
    ``function`` must not draw from a shared generator: the order of calls is not fixed.
    """
    workers = max(1, min(usable_cores(), len(items)))
    if workers == 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(function, items))


def map_chunks(function, x: np.ndarray, *per_image: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """``function(x[s], *(a[s] for a in per_image))`` for consecutive slices ``s`` of the first axis,
    written into one uint8 array like ``x``; slices run on every core (``in_threads``).

    Element-wise work on 50,000 images at once makes float temporaries of gigabytes and runs at
    memory speed; slice by slice it runs in cache (several times faster, bounded memory).
    """
    out = np.empty_like(x)

    def fill(part: slice) -> None:
        out[part] = function(x[part], *(array[part] for array in per_image))

    in_threads(fill, [slice(start, start + chunk) for start in range(0, len(x), chunk)])
    return out


def blend(x: np.ndarray, pattern: np.ndarray, alpha: float | np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(1 - alpha) * x + alpha * pattern`` rounded to uint8, optionally only where ``mask`` is set.

    Parameters
    ----------
    x : uint8 (n, h, w, 3)
    pattern : uint8 (h, w, 3)
    alpha : float in [0, 1], or float (n, 1, 1, 1)
    mask : bool (n, h, w, 1) or (h, w, 1), optional
        Where the pattern is blended; elsewhere the image is kept.
    """
    x = np.asarray(x)
    pattern = pattern.astype(np.float32)

    def mix(images, *masks):
        mixed = (1 - alpha) * images.astype(np.float32) + alpha * pattern
        if mask is not None:
            mixed = np.where(masks[0] if masks else mask, mixed, images)
        return np.clip(np.round(mixed), 0, 255).astype(np.uint8)

    per_image = mask is not None and np.ndim(mask) == 4
    return map_chunks(mix, x, *((np.asarray(mask),) if per_image else ()))
