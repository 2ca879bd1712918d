"""Control ``fine_tune``: fine-tune the model on the clean tuning set, nothing else.

Fine-Pruning without the pruning: how much of a repair's effect does fine-tuning on clean data
alone explain? (BackdoorBench's "FT" baseline.)
"""

from __future__ import annotations

from pydantic import Field

from tasks.config import StageConfig
from tasks.methods import CleanData, Context, Metric, ModelRepair
from tasks.train import copy_model, fit_model


class Params(StageConfig):
    """Parameters of ``fine_tune``: epochs and learning rate on the tuning set, otherwise as ``train``."""

    epochs: int = Field(2, ge=1, le=1000, description="epochs on the clean tuning set")
    learning_rate: float = Field(1e-4, gt=0, le=10)


class FineTune(ModelRepair):
    """Control: fine-tune the model on the clean tuning set only (Fine-Pruning without the pruning)."""

    name = "fine_tune"
    Params = Params
    metrics = (Metric("n_tune", int, "clean tuning samples it was fine-tuned on"),)

    def repair(self, params: Params, model, data: CleanData, context: Context):
        tuning = context.train.model_copy(update={"epochs": params.epochs, "learning_rate": params.learning_rate})
        return fit_model(tuning, copy_model(model), data.x_tune, data.y_tune), {"n_tune": len(data.y_tune)}
