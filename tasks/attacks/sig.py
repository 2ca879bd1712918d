"""SIG: a horizontal sinusoidal signal added to target-class images whose labels stay correct.

M. Barni, K. Kallas, B. Tondi, "A New Backdoor Attack in CNNs by Training Set Corruption Without
Label Poisoning", ICIP 2019: ``x'[i, j] = x[i, j] + delta * sin(2 pi j f / m)`` on every row and
channel of an image m pixels wide, delta 20 in training and 40 at test (their Figure 3 setting),
f = 6. BackdoorBench uses delta 40 for both: results compared with it should say which.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tasks.attacks.patterns import map_chunks
from tasks.config import StageConfig
from tasks.methods import Attack


class SigParams(StageConfig):
    delta: float = Field(20, ge=0, le=255, description="amplitude (0-255) of the signal on poisons")
    test_delta: float = Field(40, ge=0, le=255, description="amplitude on test inputs")
    frequency: float = Field(6, gt=0, description="periods of the sine across the image's width")


def sine_rows(width: int, delta: float, frequency: float) -> np.ndarray:
    """The added signal along one row: ``delta * sin(2 pi j frequency / width)``, float32 (width,)."""
    return (delta * np.sin(2 * np.pi * np.arange(width) * frequency / width)).astype(np.float32)


class Sig(Attack):
    """SIG (Barni et al. 2019), clean-label: a sine signal on target-class images, labels kept."""

    name = "sig"
    Params = SigParams
    labels = "clean"

    def stamp(self, params: SigParams, x, *, mode, rng, seed=0, y=None, parents=()):
        x = np.asarray(x)
        signal = sine_rows(x.shape[2], params.test_delta if mode == "test" else params.delta, params.frequency)
        return map_chunks(lambda images: np.clip(np.round(images + signal[None, None, :, None]), 0, 255).astype(np.uint8),
                          x), {}
