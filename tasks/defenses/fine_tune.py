"""Control ``fine_tune``: fine-tune the model on the clean tuning set, nothing else.

Fine-Pruning without the pruning: how much of a repair's effect does fine-tuning on clean data
alone explain? (BackdoorBench's "FT" baseline.) It is Fine-Pruning's own ``fine_tune`` stage with a
selection of no channel as its parent, so a Fine-Pruning that prunes nothing at the same epochs and
learning rate shares its artifact (both are keyed by what they train, not by who asked).
"""

from __future__ import annotations

from pydantic import Field

from tasks.config import StageConfig
from tasks.defenses.fine_pruning import FINE_TUNE, NOTHING_PRUNED, FineTuneConfig, NothingPrunedConfig
from tasks.methods import Metric, ModelRepair


class Params(StageConfig):
    """Parameters of ``fine_tune``: epochs and learning rate on the tuning set, otherwise as ``train``."""

    epochs: int = Field(2, ge=1, le=1000, description="epochs on the clean tuning set")
    learning_rate: float = Field(1e-4, gt=0, le=10)


class FineTune(ModelRepair):
    """Control: fine-tune the model on the clean tuning set only (Fine-Pruning without the pruning)."""

    name = "fine_tune"
    Params = Params
    stages = (NOTHING_PRUNED, FINE_TUNE)
    metrics = (Metric("fine_tune_key", str, "key of the fine-tuned model handed on"),)

    def repaired(self, params: Params, graph, label: str):
        nothing, _ = graph.run(f"{label}_pruning", NOTHING_PRUNED, NothingPrunedConfig())
        config = FineTuneConfig(train=graph.train_config, epochs=params.epochs, learning_rate=params.learning_rate)
        tuned, _ = graph.run(f"{label}_fine_tune", FINE_TUNE, config, graph.dataset, graph.model, nothing)
        return tuned, {"fine_tune_key": tuned.key}
