"""Control ``random_filter``: removes random samples, ignoring the poison.

It removes either a given ``fraction`` of the samples or, with ``same_as``, exactly as many as a
named filtering defense flags on the same model and data: how much of that defense's effect does
removal alone explain?
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from tasks.config import StageConfig
from tasks.defenses.filtering import DefenseData

DEFAULT_FRACTION = 0.3


class Params(StageConfig):
    """Parameters of ``random_filter``: ``fraction`` or ``same_as``, not both (neither: ``fraction`` 0.3).

    ``same_as`` names a filtering defense, ``ac`` or ``{ac: {cluster_analysis: smaller}}``; it is
    normalised to ``{name: full parameters}`` with ``retrain: none``, because only the count it
    flags is used; its detection is the very ``detection`` stage that defense computes on its own,
    whatever that one's ``retrain``.
    """

    fraction: float | None = Field(None, ge=0, le=1, description="share of the seen samples removed")
    same_as: str | dict[str, dict[str, Any] | None] | None = Field(
        None, description="a filtering defense whose removal count is copied: name or {name: {param: value}}"
    )
    retrain: Literal["full", "finetune", "none"] = "full"

    @field_validator("same_as")
    @classmethod
    def _named_filtering_defense(cls, same_as, info):
        if same_as is None:
            return None
        if info.data.get("fraction") is not None:
            raise ValueError("give fraction or same_as, not both")
        name, given = (same_as, {}) if isinstance(same_as, str) else _one_entry(same_as)
        return {name: named_defense_params(name, given or {})}

    @model_validator(mode="after")
    def _default_fraction(self) -> "Params":
        if self.fraction is None and self.same_as is None:
            object.__setattr__(self, "fraction", DEFAULT_FRACTION)
        return self


def _one_entry(same_as: dict) -> tuple[str, Any]:
    if len(same_as) != 1:
        raise ValueError("same_as names one defense: a name or {name: {param: value}}")
    return next(iter(same_as.items()))


def named_defense_params(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The full parameters of filtering defense ``name`` from ``given``, with ``retrain`` none.

    Raises ValueError for an unknown defense, one that removes no samples (``fp``), this control
    itself, or invalid parameters.
    """
    # The registry imports this module, so it is looked up when a config is validated.
    from tasks.defenses import DEFENSES, DefenseSpec

    if name == "random_filter":
        raise ValueError("random_filter cannot copy its own removal count")
    # A filtering defense is one that takes ``retrain``: it removes samples, then retrains.
    filtering = sorted(key for key, module in DEFENSES.items() if "retrain" in module.Params.model_fields)
    filtering.remove("random_filter")
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; same_as takes {', '.join(filtering)}")
    if name not in filtering:
        raise ValueError(f"{name} removes no samples; same_as takes {', '.join(filtering)}")
    try:
        return DefenseSpec(name=name, params={**given, "retrain": "none"}).params
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join(str(part) for part in detail["loc"] if part != "params")
        raise ValueError(f"{name}{'.' + where if where else ''}: {detail['msg']}") from None


def detection_walk(label: str, params: Params, state, step):
    """With ``same_as``, the named defense's detection first (``<label>_same_as_...``), shared
    with that defense's own; then this control's ``detection``."""
    from tasks.defenses import DEFENSES, DETECTION, DetectionConfig
    from tasks.defenses import detection_walk as named_detection_walk

    prepared = []
    if params.same_as is not None:
        ((name, named), ) = params.same_as.items()
        ref, _ = named_detection_walk(f"{label}_same_as", name, DEFENSES[name].Params(**named), state, step)
        prepared.append(ref)
    return step(f"{label}_detection", DETECTION.name, DetectionConfig.of("random_filter", params, state.train_config),
                state.dataset, state.poison, state.kept, *prepared)


def detect(params: Params, data: DefenseData, train, named=None):
    """Flag samples chosen with ``train.seed``: ``round(fraction * n)`` of them, or with ``same_as``
    as many as the named defense removed (``named`` is its :class:`Detection` of the same samples)."""
    n = len(data.y)
    count = int(round(params.fraction * n)) if named is None else n - len(named.keep)
    flagged = np.zeros(n, dtype=bool)
    flagged[np.random.default_rng(train.seed).choice(n, size=count, replace=False)] = True
    return flagged, {}, None
