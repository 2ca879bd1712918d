"""Defenses: a registry of modules with one signature, and the ``defense`` stage that applies one.

Each module exposes ``Params`` (a :class:`~tasks.config.StageConfig`) and

    defend(params, model, x, y, is_poison, train, n_classes, activations) -> (model, kept, metrics)

where ``x``, ``y``, ``is_poison`` are the training samples the stage sees (what earlier stages
kept), ``kept`` is a bool mask over them and ``metrics`` a flat dict. A module that sets
``USES_ACTIVATIONS = True`` (and has a ``layer`` parameter) gets the shared ``activations`` stage's
values for ``x``; the others get None. Adding a defense means adding a module and a line in
``DEFENSES``.
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.defenses import activation_clustering, perfect_filter, random_filter, spectral_signatures
from tasks.defenses.activations import Activations, ActivationsConfig
from tasks.poison import PoisonedDataset
from tasks.train import TrainConfig, TrainedModel

DEFENSES = {
    "ac": activation_clustering,
    "ss": spectral_signatures,
    "perfect_filter": perfect_filter,
    "random_filter": random_filter,
}


class DefenseSpec(StageConfig):
    """One defense of a pipeline: its registry name and its full, validated parameters."""

    name: str
    params: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_defense(cls, name: str) -> str:
        if name not in DEFENSES:
            raise ValueError(f"unknown defense {name!r}; known: {', '.join(sorted(DEFENSES))}")
        return name

    @model_validator(mode="after")
    def _valid_params(self) -> "DefenseSpec":
        # Normalised to the full parameter set, so equal recipes hash equal whatever was spelled out.
        full = DEFENSES[self.name].Params(**self.params).model_dump(mode="json")
        object.__setattr__(self, "params", full)
        return self


class DefenseConfig(DefenseSpec):
    """Stage ``defense``: one defense with its parameters, and how to retrain after it."""

    train: TrainConfig


def activations_config(spec: DefenseSpec) -> ActivationsConfig | None:
    """The ``activations`` stage a defense needs before it runs, or None if it needs none."""
    if not getattr(DEFENSES[spec.name], "USES_ACTIVATIONS", False):
        return None
    return ActivationsConfig(layer=spec.params.get("layer"))


def apply_defense(
    config: DefenseConfig,
    dataset: ImageDataset,
    poisoned: PoisonedDataset,
    current: TrainedModel,
    activations: Activations | None = None,
) -> TrainedModel:
    """Stage ``defense``: apply ``config.name`` to the model and data an earlier stage handed on."""
    x, y, is_poison = poisoned.training_set(dataset)
    seen = current.keep
    module = DEFENSES[config.name]
    model, kept, metrics = module.defend(
        module.Params(**config.params), current.model, x[seen], y[seen], is_poison[seen], config.train,
        dataset.n_classes, None if activations is None else activations.values,
    )
    return TrainedModel(model=model, keep=seen[kept], metrics=metrics)
