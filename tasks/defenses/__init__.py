"""Defenses: a registry of modules with one signature, and the stages that run them.

A *filtering* defense module exposes ``Params`` (a :class:`~tasks.config.StageConfig` with a
``retrain`` mode) and

    detect(params, data: DefenseData, train: TrainConfig, *prepared) -> (flagged, metrics, scores)

where ``data`` holds the training samples the defense sees (what earlier stages kept) and the
clean tuning set, ``flagged`` is a bool mask over ``data.x``, ``metrics`` a flat dict and
``scores`` a per-sample array or None. It runs as the ``detection`` stage, which stores no model;
the retraining after it is the shared ``retrain`` stage (:mod:`tasks.defenses.filtering`). A
module may also expose

- ``READS_MODEL = True``: ``detect`` gets the current Keras model after ``train``, before ``prepared``;
- ``prepare(label, params, state, step) -> [refs]``: shared stages computed first on the same model
  and data (the ``activations`` of a layer, Data Provenance's judging models), handed to ``detect``
  as ``prepared`` and reused by every configuration that needs the same one;
- ``detection_walk(label, params, state, step) -> (ref, record)``: its own way to the detection
  (Activation Clustering's exclusionary reclassification, ``random_filter``'s ``same_as``);
- ``walk(label, params, state, step) -> (state, row metrics)``: a defense that is not a filter at
  all (Fine-Pruning);
- ``STAGES``: the stages it declares.

Adding a defense means adding a module and a line in ``DEFENSES``.
"""

from __future__ import annotations

from typing import Any

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
from tasks.defenses.filtering import GRAPH_METRICS, RETRAIN, Detection, State, Step, defense_data, retrain_walk
from tasks.poison import PoisonedDataset
from tasks.stage import Stage
from tasks.train import TrainConfig

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


def is_filtering(name: str) -> bool:
    """A filtering defense removes samples, then retrains: it takes ``retrain``."""
    return "retrain" in DEFENSES[name].Params.model_fields


class DetectionConfig(StageConfig):
    """Stage ``detection``: a filtering defense's parameters (without ``retrain``, which only the
    retraining reads) and the train config whose seed it draws from."""

    name: str
    params: dict[str, Any]
    train: TrainConfig

    @classmethod
    def of(cls, name: str, params: StageConfig, train: TrainConfig) -> "DetectionConfig":
        return cls(name=name, params=params.model_dump(mode="json", exclude={"retrain"}), train=train)


def detection_stage(config: DetectionConfig, dataset: ImageDataset, poisoned: PoisonedDataset, kept,
                    *rest) -> Detection:
    """Stage ``detection``: which of the samples ``kept.keep`` defense ``config.name`` keeps.

    ``rest`` is the current model (for a module with ``READS_MODEL``), then its prepared artifacts.
    """
    module = DEFENSES[config.name]
    data = defense_data(dataset, poisoned, kept.keep)
    if getattr(module, "READS_MODEL", False):
        model, *prepared = rest
        rest = (model.model, *prepared)
    flagged, metrics, scores = module.detect(module.Params(**config.params), data, config.train, *rest)
    return Detection.of(kept.keep, flagged, data.is_poison, len(dataset.y_train), metrics, scores)


DETECTION = Stage("detection", 1, detection_stage, Detection, identity="kept_digest")


def detection_walk(label: str, name: str, params: StageConfig, state: State, step: Step):
    """The detection of defense ``name`` at ``label`` and what it reads, its module's own way if it
    has one; returns the detection's ``(ref, record)``."""
    own = getattr(DEFENSES[name], "detection_walk", None)
    return own(label, params, state, step) if own else plain_detection(label, name, params, state, step)


def plain_detection(label: str, name: str, params: StageConfig, state: State, step: Step,
                    detection_label: str | None = None):
    """The module's prepared stages, then its ``detection`` stage (``<label>_detection``)."""
    module = DEFENSES[name]
    prepare = getattr(module, "prepare", None)
    prepared = prepare(label, params, state, step) if prepare else []
    model = (state.model,) if getattr(module, "READS_MODEL", False) else ()
    return step(detection_label or f"{label}_detection", DETECTION.name,
                DetectionConfig.of(name, params, state.train_config),
                state.dataset, state.poison, state.kept, *model, *prepared)


def defense_walk(label: str, spec: DefenseSpec, state: State, step: Step) -> tuple[State, dict]:
    """Run defense ``spec`` at position ``label`` (``d1``) through ``step``.

    Returns the state handed to the next defense and the metrics of this position's row columns.
    """
    module = DEFENSES[spec.name]
    params = module.Params(**spec.params)
    if (own := getattr(module, "walk", None)) is not None:
        return own(label, params, state, step)
    detection, record = detection_walk(label, spec.name, params, state, step)
    state, retraining = retrain_walk(label, params.retrain, state, detection, record.metrics, step)
    shown = {k: v for k, v in record.metrics.items() if k not in GRAPH_METRICS}
    return state, {**shown, **retraining}


def defense_stages() -> list[Stage]:
    """Every stage the defenses declare: ``detection``, ``retrain`` and the modules' own."""
    stages = [DETECTION, RETRAIN]
    for module in DEFENSES.values():
        stages += [stage for stage in getattr(module, "STAGES", ()) if stage not in stages]
    return stages
