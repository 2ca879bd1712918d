"""Adaptive-Patch (Qi et al., ICLR 2023): several small patches, each training sample carrying some.

X. Qi, T. Xie, Y. Li, S. Mahloujifar, P. Mittal, "Revisiting the Assumption of Latent Separability
for Backdoor Defenses", ICLR 2023. Poisons (relabelled) and covers (labels kept) each carry a random
subset of the patches, blended at ``alpha``; test inputs carry all of them, opaque. The covers
teach the model that a partial trigger means nothing, so the poisons' latent representations stay
close to their true classes' and latent-separation defenses (AC, SS) lose their signal. The
authors' patches are images they ship (a phoenix, a firefox logo, ...); bdsweep draws its own: a
random two-colour pattern per patch, one in each corner.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from tasks.attacks.patterns import map_chunks
from tasks.config import StageConfig
from tasks.methods import Attack

_COLORS = np.array([[255, 40, 40], [40, 220, 40], [40, 90, 255], [255, 230, 20], [255, 255, 255], [230, 40, 230]])


class AdaptivePatchParams(StageConfig):
    patches: int = Field(4, ge=1, le=6, description="number of distinct small patches (one per corner, then edges)")
    per_sample: int = Field(2, ge=1, description="patches each poison and cover carries (test inputs carry all)")
    patch_size: float = Field(0.15, gt=0, le=0.5, description="patch side as a fraction of the image side")
    alpha: float = Field(0.5, gt=0, le=1, description="opacity of a patch on poisons and covers (test inputs: 1)")
    cover_pct: float = Field(1.0, ge=0, le=100, description="cover samples, in percent of the whole training set")

    @model_validator(mode="after")
    def _subset(self) -> "AdaptivePatchParams":
        if self.per_sample > self.patches:
            raise ValueError(f"per_sample ({self.per_sample}) is more than patches ({self.patches})")
        return self


def patch_layers(height: int, width: int, patches: int, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Each patch as a full-size layer: colours uint8 (patches, h, w, 3) and where it lies, bool (patches, h, w, 1).

    Patch ``i`` is a random two-colour pattern (its colour and black) drawn from seed ``i``, in the
    corners first (top-left, top-right, bottom-left, bottom-right), then at the middle of the left
    and right edges, one pixel in from the border.
    """
    side = max(2, round(size * min(height, width)))
    spots = [(1, 1), (1, width - side - 1), (height - side - 1, 1), (height - side - 1, width - side - 1),
             ((height - side) // 2, 1), ((height - side) // 2, width - side - 1)]
    colors = np.zeros((patches, height, width, 3), dtype=np.uint8)
    where = np.zeros((patches, height, width, 1), dtype=bool)
    for i in range(patches):  # a handful of patches, drawn once: not a loop over images
        bits = np.random.default_rng(i).random((side, side)) < 0.5
        top, left = spots[i]
        colors[i, top:top + side, left:left + side] = np.where(bits[..., None], _COLORS[i], 0)
        where[i, top:top + side, left:left + side] = True
    return colors, where


class AdaptivePatch(Attack):
    """Adaptive-Patch (Qi et al. 2023): poisons and covers carry random subsets of small patches, test inputs all."""

    name = "adaptive_patch"
    Params = AdaptivePatchParams
    default_poison_pct = 0.5

    def n_cover(self, params: AdaptivePatchParams, n_poisoned: int, n_train: int) -> int:
        return round(params.cover_pct / 100 * n_train)

    def stamp(self, params: AdaptivePatchParams, x, *, mode, rng, seed=0, y=None, parents=()):
        x = np.asarray(x)
        colors, where = patch_layers(*x.shape[1:3], params.patches, params.patch_size)
        if mode == "test":
            carried, alpha = np.ones((len(x), params.patches), dtype=bool), 1.0
        else:  # a random subset of per_sample patches for every image, drawn at once
            order = rng.random((len(x), params.patches)).argsort(axis=1)
            carried = np.zeros((len(x), params.patches), dtype=bool)
            np.put_along_axis(carried, order[:, :params.per_sample], True, axis=1)
            alpha = params.alpha
        # Patches do not overlap, so their layers add up to one image and one mask per sample: a
        # (n, patches) x (patches, pixels) product, slice by slice.
        where_flat = where.reshape(params.patches, -1).astype(np.float32)
        colors_flat = colors.reshape(params.patches, -1).astype(np.float32)

        def stamp_slice(images, chosen):
            chosen = chosen.astype(np.float32)
            mask = (chosen @ where_flat).reshape(len(images), *where.shape[1:]) > 0
            layer = (chosen @ colors_flat).reshape(images.shape)
            mixed = np.where(mask, (1 - alpha) * images.astype(np.float32) + alpha * layer, images)
            return np.clip(np.round(mixed), 0, 255).astype(np.uint8)

        return map_chunks(stamp_slice, x, carried), {}
