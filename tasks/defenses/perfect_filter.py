"""Control ``perfect_filter``: removes exactly the poisoned samples, the best any filter could do."""

from __future__ import annotations

from typing import Literal

from tasks.config import StageConfig
from tasks.defenses.filtering import DefenseData, filter_and_retrain


class Params(StageConfig):
    retrain: Literal["full", "finetune", "none"] = "full"


def defend(params: Params, model, data: DefenseData, train, prepared):
    """Keep exactly the clean samples and retrain (see :mod:`tasks.defenses`)."""
    return filter_and_retrain(params.retrain, train, model, data, flagged=data.is_poison)
