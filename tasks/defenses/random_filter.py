"""Control ``random_filter``: removes random samples, ignoring the poison.

It removes either a given ``fraction`` of the samples or, with ``same_as``, exactly as many as a
named filtering defense flags on the same model and data: how much of that defense's effect does
removal alone explain?
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from tasks.methods import Context, DefenseData, Detected, FilterParams, TrainingSetFilter

DEFAULT_FRACTION = 0.3


class Params(FilterParams):
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
    """The full parameters of training-set filter ``name`` from ``given``, with ``retrain`` none.

    Raises ValueError for an unknown defense, one that removes no samples (``fp``), this control
    itself, or invalid parameters.
    """
    # The registry holds this module's class, so it is looked up when a config is validated.
    from tasks.registry import DefenseSpec, registry

    if name == "random_filter":
        raise ValueError("random_filter cannot copy its own removal count")
    defenses = registry().defenses
    filtering = sorted(key for key, method in defenses.items()
                       if isinstance(method, TrainingSetFilter) and key != "random_filter")
    if name not in defenses:
        raise ValueError(f"unknown defense {name!r}; same_as takes {', '.join(filtering)}")
    if name not in filtering:
        raise ValueError(f"{name} removes no samples; same_as takes {', '.join(filtering)}")
    try:
        return DefenseSpec(name=name, params={**given, "retrain": "none"}).params
    except ValidationError as error:
        detail = error.errors()[0]
        where = ".".join(str(part) for part in detail["loc"] if part != "params")
        raise ValueError(f"{name}{'.' + where if where else ''}: {detail['msg']}") from None


class RandomFilter(TrainingSetFilter):
    """Control: removes random samples, a fraction or as many as a named filter does (same_as)."""

    name = "random_filter"
    Params = Params
    role = "control"

    def label(self, params: Params) -> str:
        """As any method's, with ``same_as`` shown as the named defense's own label (its forced
        ``retrain: none`` left out): ``random_filter(same_as=ac(cluster_analysis=distance))``."""
        if params.same_as is None:
            return super().label(params)
        from tasks.registry import DefenseSpec

        ((name, named),) = params.same_as.items()
        copied = DefenseSpec(name=name, params={**named, "retrain": "full"}).label()
        rest = super().label(params.model_copy(update={"same_as": None}))
        inner = rest[len(self.name) + 1 : -1] if rest != self.name else ""
        return f"{self.name}({','.join(filter(None, [f'same_as={copied}', inner]))})"

    def prepare(self, params: Params, graph, label: str) -> tuple:
        """With ``same_as``, the named defense's detection first (``<label>_same_as_...``), its own
        stages shared with that defense's; this control's ``detection`` reads what it kept."""
        if params.same_as is None:
            return ()
        from tasks.registry import DefenseSpec

        ((name, named),) = params.same_as.items()
        spec = DefenseSpec(name=name, params=named)
        ref, _ = spec.method().detection(spec.validated(), graph, f"{label}_same_as")
        return (ref,)

    def detect(self, params: Params, data: DefenseData, context: Context) -> Detected:
        """Flag samples chosen with the trial's seed: ``round(fraction * n)`` of them, or with
        ``same_as`` as many as the named defense removed (its detection of the same samples)."""
        n = len(data.y)
        count = int(round(params.fraction * n)) if not context.prepared else n - len(context.prepared[0].keep)
        flagged = np.zeros(n, dtype=bool)
        flagged[np.random.default_rng(context.seed).choice(n, size=count, replace=False)] = True
        return Detected(flagged)
