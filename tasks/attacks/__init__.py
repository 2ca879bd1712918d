"""The built-in attacks: BadNets patches and sunglasses (thesis §4.1), a user's PNG overlay, and the
attacks research moved on to: blended, SIG, WaNet, adaptive and label-consistent poisoning.

Each is an :class:`~tasks.methods.Attack` written against the protocol as a plugin would be; the
search space names them in ``attack.trigger``.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from tasks.attacks.adaptive_patch import AdaptivePatch
from tasks.attacks.blend import AdaptiveBlend, Blend
from tasks.attacks.label_consistent import LabelConsistent
from tasks.attacks.sig import Sig
from tasks.attacks.wanet import Wanet
from tasks.config import StageConfig
from tasks.methods import Attack, Metric
from tasks.triggers import FACE_TRIGGERS, PNG_PREFIX, TRIGGERS, EyeOverlayTrigger, Trigger, get_trigger

PLACEMENT_METRICS = (
    Metric("placement_haar", int, "images whose overlay was placed on eyes OpenCV's Haar cascade found"),
    Metric("placement_prior", int, "images whose overlay was placed on the aligned-face prior"),
)


class TriggerAttack(Attack):
    """BadNets (Gu et al. 2017): a fixed trigger stamped on poisons and test inputs alike, dirty labels.

    ``trigger`` is a :class:`~tasks.triggers.Trigger` (a centred patch, or an overlay placed on the eyes).
    """

    def __init__(self, name: str, trigger: Trigger, description: str):
        self.name, self.trigger, self.description = name, trigger, description
        self.metrics = PLACEMENT_METRICS if isinstance(trigger, EyeOverlayTrigger) else ()

    def stamp(self, params, x, *, mode, rng, seed=0, y=None, parents=()):
        poisoned, placement = self.trigger.apply(np.asarray(x))
        return poisoned, {f"placement_{how}": count for how, count in placement.items()}


class PngParams(StageConfig):
    """A user's RGBA overlay file, placed over the eyes like the sunglasses."""

    path: str = Field(description="absolute path of a .png file (relative paths resolve from the space file)")
    sha256: str | None = Field(None, description="the file's SHA-256, filled in when the space is loaded",
                               json_schema_extra={"filled_by_loader": True})

    @field_validator("path")
    @classmethod
    def _png(cls, path: str) -> str:
        if not path.lower().endswith(".png"):
            raise ValueError(f"a user trigger is a .png file, got {path!r}")
        return path


class PngAttack(Attack):
    """BadNets with a user's RGBA overlay (``png:<path>``) placed over the eyes; dirty labels."""

    name = "png"
    Params = PngParams
    metrics = PLACEMENT_METRICS

    def label(self, params: PngParams) -> str:
        return PNG_PREFIX + params.path

    def stamp(self, params: PngParams, x, *, mode, rng, seed=0, y=None, parents=()):
        poisoned, placement = get_trigger(PNG_PREFIX + params.path).apply(np.asarray(x))
        return poisoned, {f"placement_{how}": count for how, count in placement.items()}


_DESCRIPTIONS = {
    "yellow_square": "a 2x2 yellow patch at the centre of the sign",
    "white_square": "a 2x2 white patch at the centre of the sign",
    "big_yellow_square": "a 4x4 yellow patch at the centre of the sign",
    "yellow_pattern": "ART's 4-pixel checkerboard in yellow at the centre of the sign",
    "white_pattern": "ART's 4-pixel checkerboard in white at the centre of the sign",
    "green_sunglasses": "the thesis's green sunglasses over the eyes",
    "black_sunglasses": "black sunglasses over the eyes",
}

ATTACKS: tuple[Attack, ...] = (
    *(TriggerAttack(name, trigger, f"BadNets: {_DESCRIPTIONS[name]}") for name, trigger in TRIGGERS.items()),
    PngAttack(),
    Blend(),
    AdaptiveBlend(),
    AdaptivePatch(),
    Sig(),
    Wanet(),
    LabelConsistent(),
)

__all__ = ["ATTACKS", "FACE_TRIGGERS", "PngAttack", "TriggerAttack"]
