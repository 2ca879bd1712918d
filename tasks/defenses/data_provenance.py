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

from typing import Literal

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.defenses.filtering import DefenseData, filter_and_retrain
from tasks.evaluate import predict_labels
from tasks.train import TrainConfig, train_from_scratch

ATTACKER_CAMERA = 3


class Params(StageConfig):
    mode: Literal["trusted", "untrusted"] = "trusted"
    eps: float = Field(0.01, ge=0, le=1, description="accuracy gain (fraction) that condemns a segment")
    detection_epochs: int | None = Field(None, ge=1, description="epochs of each judging model; None = train.epochs")
    holdout: float = Field(0.2, gt=0, lt=1, description="untrusted mode: share of the other segments held out")
    retrain: Literal["full", "finetune", "none"] = "full"


def camera_ids(is_poison: np.ndarray, seed: int) -> np.ndarray:
    """Provenance of each sample (int (n,)): poisoned ones from camera 3, clean ones uniformly from 0-2."""
    cameras = np.random.default_rng(seed).integers(0, ATTACKER_CAMERA, size=len(is_poison))
    cameras[np.asarray(is_poison, bool)] = ATTACKER_CAMERA
    return cameras


def _accuracy(train: TrainConfig, x, y, x_eval, y_eval, n_classes: int) -> float:
    model = train_from_scratch(train, x, y, n_classes)
    return float(np.mean(predict_labels(model, x_eval) == y_eval))


def segment_gains(params: Params, data: DefenseData, cameras: np.ndarray, train: TrainConfig) -> dict[int, float]:
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


def defend(params: Params, model, data: DefenseData, train: TrainConfig, prepared):
    """Remove every camera segment whose removal gains more than ``eps`` accuracy, then retrain."""
    cameras = camera_ids(data.is_poison, train.seed)
    gains = segment_gains(params, data, cameras, train)
    condemned = [camera for camera, gain in gains.items() if gain > params.eps]
    model, kept, metrics = filter_and_retrain(params.retrain, train, model, data, np.isin(cameras, condemned))
    metrics.update({f"gain_camera_{camera}": gain for camera, gain in gains.items()})
    metrics["removed_cameras"] = ",".join(map(str, condemned))
    return model, kept, metrics
