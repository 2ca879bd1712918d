"""Backdoor triggers and how they are stamped onto images (thesis §4.1).

The GTSRB triggers are small patches placed around the middle of the image, because traffic-sign
images are centred and a sticker on the sign is what an attacker can place in the real world
(the thesis rejected triggers outside the sign for that reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

YELLOW = (255, 255, 0)
WHITE = (255, 255, 255)

# ART's add_pattern_bd draws four pixels in a 3x3 box: (0,2), (1,1), (2,0), (2,2) relative to its
# top-left corner. The thesis used that pattern, moved from the corner to the sign.
_ART_PATTERN = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=bool)


@dataclass(frozen=True)
class PatchTrigger:
    """A fixed-colour patch of pixels placed at the centre of every image.

    Attributes
    ----------
    mask : ndarray of bool, shape (h, w)
        Which pixels of the patch's bounding box are painted.
    color : tuple of 3 ints in [0, 255]
    """

    mask: np.ndarray
    color: tuple[int, int, int]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Return a copy of ``x`` (uint8, shape (n, height, width, 3)) with the patch painted on."""
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"expected uint8 images of shape (n, h, w, c), got {x.dtype} {x.shape}")
        height, width = x.shape[1:3]
        patch_h, patch_w = self.mask.shape
        top, left = (height - patch_h) // 2, (width - patch_w) // 2
        poisoned = np.array(x, copy=True)
        region = poisoned[:, top : top + patch_h, left : left + patch_w]
        region[:, self.mask] = np.asarray(self.color, dtype=np.uint8)
        return poisoned


def _square(size: int) -> np.ndarray:
    return np.ones((size, size), dtype=bool)


TRIGGERS: dict[str, PatchTrigger] = {
    "yellow_square": PatchTrigger(_square(2), YELLOW),
    "white_square": PatchTrigger(_square(2), WHITE),
    "big_yellow_square": PatchTrigger(_square(4), YELLOW),
    "yellow_pattern": PatchTrigger(_ART_PATTERN, YELLOW),
    "white_pattern": PatchTrigger(_ART_PATTERN, WHITE),
}


def apply_trigger(x: np.ndarray, trigger: str) -> np.ndarray:
    """Stamp the trigger named ``trigger`` onto a copy of the uint8 images ``x`` (n, h, w, 3)."""
    return TRIGGERS[trigger].apply(x)
