"""Control ``random_filter``: removes a random ``fraction`` of the samples, ignoring the poison.

Set ``fraction`` to a defense's removed share to see how much of that defense's effect removal
alone explains.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.defenses.filtering import DefenseData, filter_and_retrain


class Params(StageConfig):
    fraction: float = Field(0.3, ge=0, le=1, description="share of the seen samples removed")
    retrain: Literal["full", "finetune", "none"] = "full"


def defend(params: Params, model, data: DefenseData, train, prepared):
    """Remove ``round(fraction * n)`` samples chosen with ``train.seed`` and retrain."""
    n = len(data.y)
    flagged = np.zeros(n, dtype=bool)
    flagged[np.random.default_rng(train.seed).choice(n, size=int(round(params.fraction * n)), replace=False)] = True
    return filter_and_retrain(params.retrain, train, model, data, flagged)
