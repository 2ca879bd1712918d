"""Control ``random_filter``: removes a random ``fraction`` of the samples, ignoring the poison.

Set ``fraction`` to a defense's removed share to see how much of that defense's effect removal
alone explains.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.defenses.filtering import filtering_metrics, retrain


class Params(StageConfig):
    fraction: float = Field(0.3, ge=0, le=1, description="share of the seen samples removed")
    retrain: Literal["full", "finetune", "none"] = "full"


def defend(params: Params, model, x, y, is_poison, train, n_classes, activations):
    """Remove ``round(fraction * n)`` samples chosen with ``train.seed`` and retrain."""
    rng = np.random.default_rng(train.seed)
    flagged = np.zeros(len(y), dtype=bool)
    flagged[rng.choice(len(y), size=int(round(params.fraction * len(y))), replace=False)] = True
    kept = ~flagged
    new_model, retrained = retrain(params.retrain, train, model, x[kept], y[kept], n_classes)
    return new_model, kept, {**filtering_metrics(is_poison, flagged), "retrained": retrained}
