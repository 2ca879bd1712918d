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

from tasks.attacks.patterns import in_threads, usable_cores
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


def grid_sample(x: np.ndarray, grid: np.ndarray, *, jitter: float = 0.0,
                rng: np.random.Generator | None = None, chunk: int = 128) -> np.ndarray:
    """Bilinear resampling of images through a sampling grid, as PyTorch's
    ``grid_sample(mode="bilinear", align_corners=True)``.

    Parameters
    ----------
    x : uint8 (n, h, w, c)
    grid : float (h, w, 2)
        Where each output pixel samples the input: (x, y) in [-1, 1], -1 the first pixel's centre.
    jitter : float
        With ``rng``, each image's grid gets its own uniform noise in [-jitter, jitter] (grid
        units) on both coordinates, clamped to [-1, 1]: WaNet's cover samples. The noise of each
        slice of ``chunk`` images comes from its own generator spawned from ``rng``, so the result
        does not depend on how slices are spread over threads.
    chunk : int
        Images per slice.

    Returns uint8 (n, h, w, c), rounded to the nearest level.
    """
    x = np.ascontiguousarray(x)  # slices are written through reshaped views of the output
    n, height, width, _ = x.shape
    grid = np.asarray(grid, dtype=np.float32)
    # Pixel coordinates of the grid, tiled over one slice's images.
    grid_x = np.tile(((grid[..., 0] + 1) * np.float32((width - 1) / 2)).ravel(), chunk)
    grid_y = np.tile(((grid[..., 1] + 1) * np.float32((height - 1) / 2)).ravel(), chunk)
    starts = range(0, n, chunk)
    noise = rng.spawn(len(starts)) if rng is not None and jitter else [None] * len(starts)
    out = np.empty(x.shape, x.dtype)
    # One share of the slices per core, each share with its own buffers.
    shares = np.array_split(np.arange(len(starts)), usable_cores())
    in_threads(lambda share: _resample_slices(x, out, [(starts[i], noise[i]) for i in share],
                                              grid_x, grid_y, jitter, chunk), [s for s in shares if len(s)])
    return out


def _resample_slices(x, out, slices, grid_x, grid_y, jitter, chunk):
    """``grid_sample`` for the slices ``[(start, noise generator or None), ...]``, written into ``out``.

    Slice by slice through buffers allocated once (fresh temporaries of the whole set cost more
    than the arithmetic here), channels planar so that gathers and weights run along contiguous
    memory.
    """
    _, height, width, channels = x.shape
    per_slice = chunk * height * width
    image_start = np.repeat(np.arange(chunk, dtype=np.int32) * (height * width), height * width)
    planes, gathered = np.empty((2, channels, per_slice), np.uint8)
    mixed, term = np.empty((2, channels, per_slice), np.float32)
    px, py, weight = np.empty((3, per_slice), np.float32)
    col, row, top_left, tap, step_x, step_y = np.empty((6, per_slice), np.int32)
    for start, noise in slices:
        images = x[start:start + chunk]
        k = images.size // channels
        P, G, A, T = planes[:, :k], gathered[:, :k], mixed[:, :k], term[:, :k]
        X, Y, W, X0, Y0, I, J, DX, DY = (a[:k] for a in (px, py, weight, col, row, top_left, tap, step_x, step_y))
        np.copyto(P, images.reshape(k, channels).T)
        X[:], Y[:] = grid_x[:k], grid_y[:k]
        if noise is not None:
            for coordinate, size in ((X, width), (Y, height)):
                coordinate += (noise.random(k, dtype=np.float32) * 2 - 1) * np.float32(jitter * (size - 1) / 2)
        np.clip(X, 0, width - 1, out=X)
        np.clip(Y, 0, height - 1, out=Y)
        np.copyto(X0, X, casting="unsafe")  # floor: coordinates are >= 0
        np.copyto(Y0, Y, casting="unsafe")
        X -= X0  # now the fractional parts: the weights of the right and lower neighbours
        Y -= Y0
        np.multiply(Y0, width, out=I)
        I += X0
        I += image_start[:k]
        # The right (lower) neighbour, or the pixel itself on the last column (row), where its
        # weight is 0.
        np.less(X0, width - 1, out=DX, casting="unsafe")
        np.less(Y0, height - 1, out=DY, casting="unsafe")
        DY *= width
        A[:] = 0
        for right, below in ((0, 0), (1, 0), (0, 1), (1, 1)):
            np.copyto(J, I)
            if right:
                J += DX
            if below:
                J += DY
            np.multiply(X if right else 1 - X, Y if below else 1 - Y, out=W)
            np.take(P, J, axis=1, out=G)
            np.multiply(G, W, out=T)
            A += T
        np.rint(A, out=A)
        np.copyto(P, A, casting="unsafe")
        out[start:start + len(images)].reshape(k, channels)[:] = P.T


class Wanet(Attack):
    """WaNet (Nguyen & Tran 2021), poisoning only: images resampled through a fixed smooth warping field."""

    name = "wanet"
    Params = WanetParams

    def n_cover(self, params: WanetParams, n_poisoned: int, n_train: int) -> int:
        return round(params.cross_ratio * n_poisoned)

    def stamp(self, params: WanetParams, x, *, mode, rng, seed=0, y=None, parents=()):
        x = np.asarray(x)
        height, width = x.shape[1:3]
        field = warping_field(height, width, params.k, params.s, params.grid_rescale, seed)
        if mode != "cover":
            return grid_sample(x, field), {}
        # The field plus fresh noise per sample, in [-1, 1] / h: warps that must not trigger.
        return grid_sample(x, field, jitter=1 / height, rng=rng), {}
