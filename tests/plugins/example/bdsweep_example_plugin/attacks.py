"""``corner_checker``: a black-and-white checkerboard in the bottom-right corner (BadNets-style, dirty labels)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.methods import Attack, Metric


class Params(StageConfig):
    size: int = Field(3, ge=1, le=8, description="side of the checkerboard in pixels (training poisons)")
    test_size: int | None = Field(None, ge=1, le=8, description="side on test inputs; None = size")


class CornerChecker(Attack):
    """A size x size black-and-white checkerboard in the bottom-right corner; poisons relabelled to the target."""

    Params = Params
    metrics = (Metric("changed_pixels", int, "pixels the stamp changed, summed over the images"),)

    def stamp(self, params: Params, x, *, mode, rng, seed=0, y=None, parents=()):
        size = (params.test_size or params.size) if mode == "test" else params.size
        board = (np.indices((size, size)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None]
        stamped = np.array(x, copy=True)
        stamped[:, -size:, -size:, :] = board
        changed = int((stamped != x).any(axis=-1).sum())
        return stamped, {"changed_pixels": changed}
