"""WaNet: a backdoor that warps the image through a fixed smooth field instead of stamping on it.

A. Nguyen, A. Tran, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR 2021. This is
the poisoning-only form BackdoorBench also runs: the field and its cover ("noise") samples as the
authors' code draws them (``k`` 4, ``s`` 0.5, ``grid_rescale`` 1, ``cross_ratio`` 2), without
their training loop's on-the-fly poisoning. PyTorch's ``F.interpolate(mode="bicubic",
align_corners=True)`` and ``F.grid_sample(mode="bilinear", align_corners=True)`` are written here
in NumPy, batched: one gather per corner for the whole batch, no loop over images.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tasks.attacks.patterns import CHUNK, map_chunks
from tasks.config import StageConfig
from tasks.methods import Attack


class WanetParams(StageConfig):
    k: int = Field(4, ge=1, description="the random field is drawn on a k x k grid, then upsampled")
    s: float = Field(0.5, ge=0, description="strength of the warp, in pixels at the field's mean magnitude")
    grid_rescale: float = Field(1.0, gt=0, description="scales the warped grid (1: none)")
    cross_ratio: float = Field(2.0, ge=0, description="cover ('noise') samples per poison: warped with extra per-sample noise, labels kept")


def _cubic(distance: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel with PyTorch's ``a`` = -0.75."""
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of bicubic upsampling with aligned corners, borders replicated."""
    position = np.arange(n_out) * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
    floor = np.floor(position).astype(int)
    matrix = np.zeros((n_out, n_in))
    for offset in (-1, 0, 1, 2):
        taps = floor + offset
        np.add.at(matrix, (np.arange(n_out), np.clip(taps, 0, n_in - 1)), _cubic(position - taps))
    return matrix


def warping_field(height: int, width: int, k: int, s: float, grid_rescale: float, seed: int) -> np.ndarray:
    """The backdoor's sampling grid, float64 (height, width, 2) of (x, y) in [-1, 1].

    A k x k x 2 field uniform in [-1, 1], divided by its mean absolute value, upsampled bicubically
    to the image, added to the identity grid scaled by ``s / height``, rescaled and clamped.
    ``s = 0`` gives the identity grid (no warp).
    """
    noise = np.random.default_rng(seed).uniform(-1, 1, size=(2, k, k))
    noise = noise / np.mean(np.abs(noise))
    upsampled = np.einsum("hi,cij,wj->hwc", bicubic_matrix(k, height), noise, bicubic_matrix(k, width))
    xs, ys = np.linspace(-1, 1, width), np.linspace(-1, 1, height)
    identity = np.stack(np.meshgrid(xs, ys), axis=-1)  # [..., 0] = x along the width, [..., 1] = y
    return np.clip((identity + s * upsampled / height) * grid_rescale, -1, 1)


def grid_sample(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Bilinear resampling of uint8 images ``x`` (n, h, w, c) at ``grid`` (h, w, 2), or one grid per
    image (n, h, w, 2), coordinates in [-1, 1] with aligned corners. Returns uint8 (n, h, w, c)."""
    n, height, width = x.shape[:3]
    out = np.empty_like(x)
    for start in range(0, n, CHUNK):
        chunk = slice(start, start + CHUNK)
        g = grid[chunk] if grid.ndim == 4 else grid
        px, py = (g[..., 0] + 1) / 2 * (width - 1), (g[..., 1] + 1) / 2 * (height - 1)
        x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
        wx, wy = (px - x0)[..., None], (py - y0)[..., None]
        x0, x1 = np.clip(x0, 0, width - 1), np.clip(x0 + 1, 0, width - 1)
        y0, y1 = np.clip(y0, 0, height - 1), np.clip(y0 + 1, 0, height - 1)
        images = x[chunk]
        if grid.ndim == 3:
            # One grid for all: pixels first, so a gather copies one contiguous row (every image's
            # pixel) per output pixel.
            by_pixel = np.ascontiguousarray(images.transpose(1, 2, 0, 3)).reshape(height * width, -1)

            def at(rows, cols):
                gathered = np.take(by_pixel, (rows * width + cols).ravel(), axis=0)
                return gathered.reshape(height, width, len(images), -1).transpose(2, 0, 1, 3).astype(np.float32)
        else:
            # A grid per image: one gather of single pixels over the whole slice, by flat index.
            by_row = images.reshape(-1, images.shape[-1])
            offset = (np.arange(len(images)) * height * width)[:, None, None]

            def at(rows, cols):
                return np.take(by_row, (offset + rows * width + cols).ravel(), axis=0).reshape(images.shape).astype(np.float32)

        mixed = ((1 - wx) * (1 - wy) * at(y0, x0) + wx * (1 - wy) * at(y0, x1)
                 + (1 - wx) * wy * at(y1, x0) + wx * wy * at(y1, x1))
        out[chunk] = np.clip(np.round(mixed), 0, 255).astype(np.uint8)
    return out


class Wanet(Attack):
    """WaNet (Nguyen & Tran 2021), poisoning only: images resampled through a fixed smooth warping field."""

    name = "wanet"
    Params = WanetParams

    def n_cover(self, params: WanetParams, n_poisoned: int, n_train: int) -> int:
        return round(params.cross_ratio * n_poisoned)

    def stamp(self, params: WanetParams, x, *, mode, rng, seed=0, y=None, parents=()):
        x = np.asarray(x)
        height, width = x.shape[1:3]
        field = warping_field(height, width, params.k, params.s, params.grid_rescale, seed).astype(np.float32)
        if mode != "cover":
            return grid_sample(x, field), {}

        def noisy(images):  # the field plus fresh noise per sample: warps that must not trigger
            noise = rng.uniform(-1, 1, size=(len(images), height, width, 2)).astype(np.float32) / height
            return grid_sample(images, np.clip(field[None] + noise, -1, 1))

        return map_chunks(noisy, x), {}
