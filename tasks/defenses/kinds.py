"""The generic stages of model inspections, model repairs and input filters.

Each runs a registered method (:mod:`tasks.methods`) by name, hands it only what its kind may see
(the model and the clean tuning set), and stores what it returns. A method with stages of its own
(Fine-Pruning) runs those instead, through the graph.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tasks.config import MethodOrigin, StageConfig
from tasks.datasets import ImageDataset
from tasks.methods import Calibration, CleanData, Context, Inspected
from tasks.poison import PoisonedDataset
from tasks.stage import Stage
from tasks.train import TrainConfig, TrainedModel


class MethodConfig(MethodOrigin):
    """A generic defense stage's config: the method's name, its full parameters, the train config
    (its seed is the method's; its optimiser settings are those of any training the method does)
    and, for a plugin, ``origin`` (``distribution==version``, part of the key)."""

    name: str
    params: dict[str, Any]
    train: TrainConfig

    @classmethod
    def of(cls, method, params: StageConfig, train: TrainConfig) -> "MethodConfig":
        from tasks.registry import origin_of

        return cls(name=method.name, params=params.model_dump(mode="json"), train=train, origin=origin_of(method))

    def method(self):
        """The registered method (checked to be the planned plugin version) and its parameters."""
        from tasks.registry import defense

        method = defense(self.name, self.origin)
        return method, method.Params(**self.params)

    def context(self, model=None, prepared: tuple = ()) -> Context:
        return Context(seed=self.train.seed, train=self.train, model=model, prepared=tuple(prepared))


def clean_data(dataset: ImageDataset) -> CleanData:
    """The defender's clean tuning set of ``dataset``."""
    return CleanData(np.asarray(dataset.x_tune), np.asarray(dataset.y_tune), dataset.n_classes)


def repair_stage(config: MethodConfig, dataset: ImageDataset, model: TrainedModel) -> TrainedModel:
    """Stage ``repair``: the method's ``repair`` of ``model`` on the clean tuning set."""
    method, params = config.method()
    repaired, metrics = method.repair(params, model.model, clean_data(dataset), config.context(model.model))
    if repaired is model.model:
        raise ValueError(f"{config.name}.repair returned the model it was given: return a repaired copy")
    return TrainedModel(model=repaired, keep=model.keep, metrics=dict(metrics))


@dataclass(frozen=True, eq=False)
class Inspection:
    """A stored :class:`~tasks.methods.Inspected` with the attack's target, for the row's ground-truth columns."""

    inspected: Inspected
    target: int

    @property
    def metrics(self) -> dict:
        flagged = np.flatnonzero(self.inspected.flagged)
        return {
            **self.inspected.metrics,
            "flagged_classes": ",".join(map(str, flagged)),
            "n_flagged_classes": len(flagged),
            "target_flagged": bool(self.inspected.flagged[self.target]),
            "target_score": float(self.inspected.scores[self.target]),
            "target_rank": 1 + int((self.inspected.scores > self.inspected.scores[self.target]).sum()),
        }

    def save(self, directory: Path) -> None:
        np.savez(directory / "inspection.npz", scores=self.inspected.scores, flagged=self.inspected.flagged,
                 **{f"array_{name}": value for name, value in self.inspected.arrays.items()})
        (directory / "inspection.json").write_text(json.dumps({"target": self.target, "metrics": self.inspected.metrics},
                                                              sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> "Inspection":
        facts = json.loads((directory / "inspection.json").read_text())
        with np.load(directory / "inspection.npz") as stored:
            arrays = {name.removeprefix("array_"): stored[name] for name in stored.files if name.startswith("array_")}
            inspected = Inspected(stored["scores"], stored["flagged"], facts["metrics"], arrays)
        return cls(inspected, facts["target"])


def inspection_stage(config: MethodConfig, dataset: ImageDataset, poisoned: PoisonedDataset,
                     model: TrainedModel, *prepared) -> Inspection:
    """Stage ``inspection``: the method's per-class scores and flags of ``model``, reading what its
    :meth:`~tasks.methods.ModelInspection.prepare` ran. The poisoned data is a parent only for the
    target class, which the row's ground-truth columns compare against; the method never sees it."""
    method, params = config.method()
    inspected = method.inspect(params, model.model, clean_data(dataset), config.context(model.model, prepared))
    shape = (dataset.n_classes,)
    if np.shape(inspected.scores) != shape or np.shape(inspected.flagged) != shape:
        raise ValueError(f"{config.name}.inspect returned scores {np.shape(inspected.scores)} and flags "
                         f"{np.shape(inspected.flagged)}; expected {shape} each (one per class)")
    checked = Inspected(np.asarray(inspected.scores, dtype=np.float64), np.asarray(inspected.flagged, dtype=bool),
                        dict(inspected.metrics), dict(inspected.arrays))
    return Inspection(checked, poisoned.target)


def inspection_repair_stage(config: MethodConfig, dataset: ImageDataset, model: TrainedModel,
                            inspection: Inspection) -> TrainedModel:
    """Stage ``inspection_repair``: the method's ``repair`` of ``model`` after its inspection."""
    method, params = config.method()
    repaired, metrics = method.repair(params, inspection.inspected, model.model, clean_data(dataset),
                                      config.context(model.model))
    if repaired is model.model:
        raise ValueError(f"{config.name}.repair returned the model it was given: return a repaired copy")
    return TrainedModel(model=repaired, keep=model.keep, metrics=dict(metrics))


@dataclass(frozen=True, eq=False)
class StoredCalibration:
    """A stored :class:`~tasks.methods.Calibration`."""

    calibration: Calibration = field(default_factory=Calibration)

    @property
    def metrics(self) -> dict:
        return dict(self.calibration.metrics)

    def save(self, directory: Path) -> None:
        np.savez(directory / "calibration.npz", **self.calibration.arrays)
        (directory / "calibration.json").write_text(json.dumps(self.calibration.metrics, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> "StoredCalibration":
        with np.load(directory / "calibration.npz") as stored:
            arrays = {name: stored[name] for name in stored.files}
        return cls(Calibration(arrays, json.loads((directory / "calibration.json").read_text())))


def calibration_stage(config: MethodConfig, dataset: ImageDataset, model: TrainedModel) -> StoredCalibration:
    """Stage ``calibration``: what an input filter learns on the clean tuning set."""
    method, params = config.method()
    return StoredCalibration(method.calibrate(params, model.model, clean_data(dataset), config.context(model.model)))


REPAIR = Stage("repair", 1, repair_stage, TrainedModel)
INSPECTION = Stage("inspection", 1, inspection_stage, Inspection)
INSPECTION_REPAIR = Stage("inspection_repair", 1, inspection_repair_stage, TrainedModel)
CALIBRATION = Stage("calibration", 1, calibration_stage, StoredCalibration)
