"""Blended triggers: a whole-image pattern mixed into the input (Chen et al. 2017), and Qi et al.'s
adaptive variant that blends only some pieces of it into training samples (ICLR 2023).

- X. Chen, C. Liu, B. Li, K. Lu, D. Song, "Targeted Backdoor Attacks on Deep Learning Systems
  Using Data Poisoning", arXiv:1712.05526, 2017.
- X. Qi, T. Xie, Y. Li, S. Mahloujifar, P. Mittal, "Revisiting the Assumption of Latent
  Separability for Backdoor Defenses", ICLR 2023 (the authors' ``adaptive_blend``: 16 pieces,
  half of them masked per training sample, alpha 0.15 in training and 0.2 at test).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator, model_validator

from tasks.config import StageConfig
from tasks.methods import Attack, digest_param, file_param
from tasks.attacks.patterns import blend, cartoon_pattern, noise_pattern, png_pattern

PNG = "png:"
PATTERNS = ("noise", "cartoon")


class PatternParams(StageConfig):
    """Which whole-image pattern is blended in."""

    pattern: str = file_param("cartoon", prefix=PNG, digest="pattern_sha256",
                              description="noise (uniform, from pattern_seed), cartoon (drawn by bdsweep), or png:<path>")
    pattern_seed: int = Field(0, ge=0, description="seed of the noise pattern (not the trial's seed: one pattern for every trial)")
    pattern_sha256: str | None = digest_param()

    @field_validator("pattern")
    @classmethod
    def _known(cls, pattern: str) -> str:
        if pattern in PATTERNS or (pattern.startswith(PNG) and pattern.lower().endswith(".png")):
            return pattern
        raise ValueError(f"pattern is noise, cartoon or png:<path>.png, got {pattern!r}")


def pattern_image(params: PatternParams, height: int, width: int) -> np.ndarray:
    """The pattern ``params`` names at (height, width, 3), uint8."""
    if params.pattern == "noise":
        return noise_pattern(height, width, params.pattern_seed)
    if params.pattern == "cartoon":
        return cartoon_pattern(height, width)
    return png_pattern(params.pattern[len(PNG):], height, width)


class BlendParams(PatternParams):
    alpha: float = Field(0.2, ge=0, le=1, description="weight of the pattern in a poison: x' = (1 - alpha) x + alpha pattern")
    test_alpha: float | None = Field(None, ge=0, le=1, description="weight on test inputs (default: alpha)")


class Blend(Attack):
    """Blended trigger (Chen et al. 2017): x' = (1 - alpha) x + alpha pattern on poisons and test inputs."""

    name = "blend"
    Params = BlendParams

    def stamp(self, params: BlendParams, x, *, mode, rng, seed=0, y=None, parents=()):
        alpha = params.alpha if mode != "test" or params.test_alpha is None else params.test_alpha
        return blend(x, pattern_image(params, *np.shape(x)[1:3]), alpha), {}


class AdaptiveBlendParams(PatternParams):
    alpha: float = Field(0.15, ge=0, le=1, description="weight of the pattern's pieces in poisons and covers")
    test_alpha: float = Field(0.2, ge=0, le=1, description="weight of the whole pattern on test inputs")
    pieces: int = Field(16, ge=1, description="the pattern is cut into this many pieces (a square number: a grid)")
    mask_rate: float = Field(0.5, ge=0, lt=1, description="share of the pieces left out of each training sample")
    cover_pct: float = Field(0.3, ge=0, le=100, description="cover samples, in percent of the whole training set")

    @model_validator(mode="after")
    def _square(self) -> "AdaptiveBlendParams":
        if round(self.pieces ** 0.5) ** 2 != self.pieces:
            raise ValueError(f"pieces must be a square number (a grid of pieces), got {self.pieces}")
        return self


def piece_masks(n: int, height: int, width: int, pieces: int, n_left_out: int, rng: np.random.Generator) -> np.ndarray:
    """Per image, which pixels keep the pattern: a ``sqrt(pieces)`` grid with ``n_left_out`` random
    cells off. Returns bool (n, height, width, 1)."""
    side = round(pieces ** 0.5)
    order = rng.random((n, pieces)).argsort(axis=1)
    on = np.ones((n, pieces), dtype=bool)
    np.put_along_axis(on, order[:, :n_left_out], False, axis=1)
    rows = np.minimum(np.arange(height) * side // height, side - 1)
    cols = np.minimum(np.arange(width) * side // width, side - 1)
    cell = rows[:, None] * side + cols[None, :]  # (h, w): which piece each pixel belongs to
    return on[:, cell][..., None]


class AdaptiveBlend(Attack):
    """Adaptive-Blend (Qi et al. 2023): poisons and correctly labelled covers carry random pieces of
    a blended pattern, test inputs the whole of it, so poison does not form its own cluster."""

    name = "adaptive_blend"
    Params = AdaptiveBlendParams
    default_poison_pct = 0.3

    def n_cover(self, params: AdaptiveBlendParams, n_poisoned: int, n_train: int) -> int:
        return round(params.cover_pct / 100 * n_train)

    def stamp(self, params: AdaptiveBlendParams, x, *, mode, rng, seed=0, y=None, parents=()):
        n, height, width = np.shape(x)[:3]
        pattern = pattern_image(params, height, width)
        if mode == "test":
            return blend(x, pattern, params.test_alpha), {}
        masks = piece_masks(n, height, width, params.pieces, round(params.mask_rate * params.pieces), rng)
        return blend(x, pattern, params.alpha, masks), {}
