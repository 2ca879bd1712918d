"""Defenses: a registry of modules with one signature, and the ``defense`` stage that applies one.

Each module exposes ``Params`` (a :class:`~tasks.config.StageConfig`) and

    defend(params, model, data: DefenseData, train: TrainConfig, prepared) -> (model, kept, metrics)

where ``data`` holds the training samples the stage sees (what earlier stages kept) and the clean
tuning set, ``kept`` is a bool mask over ``data.x`` and ``metrics`` a flat dict. A module may also
expose ``preparation(params) -> (stage name, config)`` (or None): a shared stage computed before
it on the same model and data (the ``activations`` of a layer, a ``pruning_curve``, or another
defense given as a :class:`DefenseSpec`, run as a ``defense`` stage with its own preparation),
passed in as ``prepared`` and reused by every configuration that needs the same one; else
``prepared`` is None.
Adding a defense means adding a module and a line in ``DEFENSES``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import field_validator, model_validator

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.defenses import (
    activation_clustering,
    data_provenance,
    fine_pruning,
    perfect_filter,
    random_filter,
    spectral_signatures,
)
from tasks.defenses.filtering import DefenseData
from tasks.poison import PoisonedDataset
from tasks.train import TrainConfig, TrainedModel

DEFENSES = {
    "ac": activation_clustering,
    "ss": spectral_signatures,
    "dp": data_provenance,
    "fp": fine_pruning,
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


def preparation(config: DefenseConfig):
    """``(stage name, config)`` of the shared stage a defense reads before it runs, or None.

    A defense prepared by another (``random_filter``'s ``same_as``) comes back as a
    :class:`DefenseConfig` trained like ``config``, ready to be a ``defense`` stage of its own.
    """
    module = DEFENSES[config.name]
    prepare = getattr(module, "preparation", None)
    if prepare is None or (prepared := prepare(module.Params(**config.params))) is None:
        return None
    stage, prepared_config = prepared
    if isinstance(prepared_config, DefenseSpec):
        prepared_config = DefenseConfig(name=prepared_config.name, params=prepared_config.params, train=config.train)
    return stage, prepared_config


def apply_defense(
    config: DefenseConfig, dataset: ImageDataset, poisoned: PoisonedDataset, current: TrainedModel, prepared=None
) -> TrainedModel:
    """Stage ``defense``: apply ``config.name`` to the model and data an earlier stage handed on."""
    seen = current.keep
    x, y, is_poison = poisoned.training_set(dataset, keep=seen)
    data = DefenseData(x, y, is_poison, np.asarray(dataset.x_tune), np.asarray(dataset.y_tune), dataset.n_classes)
    module = DEFENSES[config.name]
    model, kept, metrics = module.defend(module.Params(**config.params), current.model, data, config.train, prepared)
    return TrainedModel(model=model, keep=seen[kept], metrics=metrics)
