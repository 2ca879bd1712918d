"""Data Provenance defense (Baracaldo et al. 2017), implemented here: ART's ``ProvenanceDefense``
matches points by pixel value, scores probabilities with ``accuracy_score``, cannot deepcopy a
``KerasClassifier`` and fine-tunes copies instead of retraining (SPEC §2).

Provenance is a camera id per training sample: the attacker's (poisoned) images come from camera
3, clean ones are spread over cameras 0-2 by a seeded draw. Each camera's segment is judged by
training with and without it: if leaving it out raises accuracy by more than ``eps``, it is
removed.

- ``trusted``: accuracy is measured on the clean tuning set the defender trusts.
- ``untrusted``: no trusted data; a seeded ``holdout`` share of the *other* segments is held out
  for the comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.defenses.filtering import defense_data
from tasks.methods import Context, DefenseData, Detected, FilterParams, Metric, TrainingSetFilter
from tasks.poison import PoisonedDataset
from tasks.stage import Stage
from tasks.evaluate import predict_labels
from tasks.train import TrainConfig, train_from_scratch

ATTACKER_CAMERA = 3


class Params(FilterParams):
    """Parameters of ``dp``: trusted (a clean tuning set judges) or untrusted (held-out data judges)."""

    mode: Literal["trusted", "untrusted"] = "trusted"
    eps: float = Field(0.01, ge=0, le=1, description="accuracy gain (fraction) that condemns a segment")
    detection_epochs: int | None = Field(None, ge=1, description="epochs of each judging model; None = train.epochs")
    holdout: float = Field(0.2, gt=0, lt=1, description="untrusted mode: share of the other segments held out")


def camera_ids(is_poison: np.ndarray, seed: int) -> np.ndarray:
    """Provenance of each sample (int (n,)): the attacker's (``is_poison``: poisons and covers) from
    camera 3, the others uniformly from 0-2."""
    cameras = np.random.default_rng(seed).integers(0, ATTACKER_CAMERA, size=len(is_poison))
    cameras[np.asarray(is_poison, bool)] = ATTACKER_CAMERA
    return cameras


def _accuracy(train: TrainConfig, x, y, x_eval, y_eval, n_classes: int) -> float:
    model = train_from_scratch(train, x, y, n_classes)
    return float(np.mean(predict_labels(model, x_eval) == y_eval))


class GainsConfig(StageConfig):
    """Stage ``provenance_gains``: the judging models' settings; ``eps`` only thresholds their gains."""

    mode: Literal["trusted", "untrusted"]
    detection_epochs: int | None
    holdout: float
    train: TrainConfig


def segment_gains(params: Params | GainsConfig, data: DefenseData, cameras: np.ndarray, train: TrainConfig) -> dict[int, float]:
    """Accuracy gained by leaving each camera's segment out (``{camera: gain}``, gain a fraction)."""
    judge = train if params.detection_epochs is None else train.model_copy(update={"epochs": params.detection_epochs})
    gains = {}
    if params.mode == "trusted":
        everything = _accuracy(judge, data.x, data.y, data.x_tune, data.y_tune, data.n_classes)
    rng = np.random.default_rng(train.seed)
    for camera in np.unique(cameras):
        inside = cameras == camera
        if params.mode == "trusted":
            without = _accuracy(judge, data.x[~inside], data.y[~inside], data.x_tune, data.y_tune, data.n_classes)
            gains[int(camera)] = without - everything
            continue
        others = np.flatnonzero(~inside)
        held = np.zeros(len(cameras), dtype=bool)
        held[rng.choice(others, size=int(round(params.holdout * len(others))), replace=False)] = True
        x_eval, y_eval = data.x[held], data.y[held]
        with_segment = _accuracy(judge, data.x[~held], data.y[~held], x_eval, y_eval, data.n_classes)
        rest = ~held & ~inside
        without = _accuracy(judge, data.x[rest], data.y[rest], x_eval, y_eval, data.n_classes)
        gains[int(camera)] = without - with_segment
    return gains


@dataclass(frozen=True, eq=False)
class SegmentGains:
    """What each camera's segment costs: ``gains[camera]``, the accuracy gained by leaving it out (fraction)."""

    gains: dict[int, float]

    @property
    def metrics(self) -> dict:
        return {f"gain_camera_{camera}": gain for camera, gain in self.gains.items()}

    def save(self, directory: Path) -> None:
        (directory / "gains.json").write_text(json.dumps(sorted(self.gains.items())))

    @classmethod
    def load(cls, directory: Path) -> "SegmentGains":
        return cls({int(camera): gain for camera, gain in json.loads((directory / "gains.json").read_text())})


def provenance_gains(config: GainsConfig, dataset: ImageDataset, poisoned: PoisonedDataset, kept) -> SegmentGains:
    """Stage ``provenance_gains``: train the judging models on the samples ``kept.keep`` and measure each segment's gain."""
    data = defense_data(dataset, poisoned, kept.keep)
    return SegmentGains(segment_gains(config, data, camera_ids(data.from_attacker, config.train.seed), config.train))


GAINS = Stage("provenance_gains", 1, provenance_gains, SegmentGains)


class DataProvenance(TrainingSetFilter):
    """Data Provenance (Baracaldo et al. 2018): drop every camera segment whose removal gains accuracy."""

    name = "dp"
    Params = Params
    stages = (GAINS,)
    metrics = (
        *(Metric(f"gain_camera_{camera}", float, f"accuracy gained by leaving camera {camera}'s segment out")
          for camera in range(ATTACKER_CAMERA + 1)),
        Metric("removed_cameras", str, "the condemned cameras, comma-separated"),
    )

    def prepare(self, params: Params, graph, label: str) -> tuple:
        """The judging models, one stage per (model, data, mode, detection settings), shared across ``eps``."""
        config = GainsConfig(mode=params.mode, detection_epochs=params.detection_epochs, holdout=params.holdout,
                             train=graph.train_config)
        ref, _ = graph.run(f"{label}_provenance_gains", GAINS, config, graph.dataset, graph.poison, graph.kept)
        return (ref,)

    def detect(self, params: Params, data: DefenseData, context: Context) -> Detected:
        """Flag every camera segment whose removal gains more than ``eps`` accuracy; the scores are each
        sample's segment gain."""
        (gains,) = context.prepared
        cameras = camera_ids(data.from_attacker, context.seed)
        condemned = [camera for camera, gain in gains.gains.items() if gain > params.eps]
        metrics = {**gains.metrics, "removed_cameras": ",".join(map(str, condemned))}
        scores = np.array([gains.gains[int(camera)] for camera in cameras], dtype=np.float64)
        return Detected(np.isin(cameras, condemned), metrics, scores)
