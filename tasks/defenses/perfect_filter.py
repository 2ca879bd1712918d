"""Control ``perfect_filter``: removes exactly the poisoned samples, the best any filter could do."""

from __future__ import annotations

from typing import Literal

from tasks.config import StageConfig
from tasks.defenses.filtering import DefenseData


class Params(StageConfig):
    retrain: Literal["full", "finetune", "none"] = "full"


def detect(params: Params, data: DefenseData, train):
    """Flag exactly the poisoned samples (see :mod:`tasks.defenses`)."""
    return data.is_poison, {}, None
