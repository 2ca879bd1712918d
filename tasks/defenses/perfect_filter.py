"""Control ``perfect_filter``: removes exactly the poisoned samples, the best any filter could do."""

from __future__ import annotations

from typing import Literal

from tasks.config import StageConfig
from tasks.defenses.filtering import filtering_metrics, retrain


class Params(StageConfig):
    retrain: Literal["full", "finetune", "none"] = "full"


def defend(params: Params, model, x, y, is_poison, train, n_classes, activations):
    """Keep exactly the clean samples and retrain (see :mod:`tasks.defenses`)."""
    kept = ~is_poison
    new_model, retrained = retrain(params.retrain, train, model, x[kept], y[kept], n_classes)
    return new_model, kept, {**filtering_metrics(is_poison, is_poison), "retrained": retrained}
