"""The ``activations`` stage: one layer's activations on the training data a defense sees.

Computed once per (model, kept data, layer) and shared by every Activation Clustering and Spectral
Signatures configuration that looks at that layer, so a grid over their parameters costs one
forward pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.models import last_hidden_layer
from tasks.poison import PoisonedDataset
from tasks.stage import Stage
from tasks.train import TrainedModel

if TYPE_CHECKING:
    import keras


class ActivationsConfig(StageConfig):
    """Stage ``activations``: which layer (None = the model's last hidden layer) and the batch size."""

    layer: str | None = None
    batch_size: int = Field(256, ge=1)


@dataclass(frozen=True, eq=False)
class Activations:
    """Flattened activations of ``layer``: ``values`` float32 (n_seen, features), row i for sample ``keep[i]``."""

    values: np.ndarray
    layer: str

    @property
    def metrics(self) -> dict:
        return {"layer": self.layer, "n": int(self.values.shape[0]), "features": int(self.values.shape[1])}

    def save(self, directory: Path) -> None:
        np.save(directory / "activations.npy", self.values)
        (directory / "activations.json").write_text(json.dumps({"layer": self.layer}))

    @classmethod
    def load(cls, directory: Path) -> "Activations":
        layer = json.loads((directory / "activations.json").read_text())["layer"]
        return cls(values=np.load(directory / "activations.npy"), layer=layer)


def layer_activations(model: "keras.Model", x: np.ndarray, layer: str, batch_size: int = 256) -> np.ndarray:
    """Activations of ``layer`` for uint8 images ``x`` (n, h, w, c), flattened to float32 (n, features).

    Batches are converted one at a time (ART's ``get_activations`` converts all of ``x`` at once).
    """
    import keras

    extractor = keras.Model(model.input, model.get_layer(layer).output)
    batches = [
        np.asarray(extractor.predict_on_batch(np.asarray(x[start : start + batch_size]))).reshape(
            min(batch_size, len(x) - start), -1
        )
        for start in range(0, len(x), batch_size)
    ]
    return np.concatenate(batches).astype(np.float32)


def compute_activations(
    config: ActivationsConfig, dataset: ImageDataset, poisoned: PoisonedDataset, model: TrainedModel, kept
) -> Activations:
    """Stage ``activations`` of ``model.model`` on the samples ``kept.keep`` (what the defenses so far kept)."""
    x, _, _ = poisoned.training_set(dataset, keep=kept.keep)
    layer = config.layer or last_hidden_layer(model.model)
    return Activations(layer_activations(model.model, x, layer, config.batch_size), layer)


ACTIVATIONS = Stage("activations", 2, compute_activations, Activations)


def activations_walk(label: str, layer: str | None, state, step):
    """The shared ``activations`` stage (``<label>_activations``) of ``layer`` on the state's model and kept data."""
    ref, _ = step(f"{label}_activations", ACTIVATIONS.name, ActivationsConfig(layer=layer),
                  state.dataset, state.poison, state.model, state.kept)
    return ref
