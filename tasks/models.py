"""Model architectures (thesis §3.2), built with the Keras 3 Functional API.

Every model takes uint8 images and scales them in its first layer, so arrays stay uint8 until a
batch reaches the model. Keras is imported inside the builders so that the registry (and every
config that names a model) loads without TensorFlow. Layers carry stable names (``conv_1`` … , ``fc_1``, ``predictions``)
that defenses use to find the layers they analyse or prune.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tasks.runtime  # noqa: F401  (selects the Keras backend before keras is imported)

if TYPE_CHECKING:
    import keras


def build_gtsrb_cnn(input_shape: tuple[int, int, int], n_classes: int) -> "keras.Model":
    """The GTSRB network of Wang et al. (Neural Cleanse), thesis Table 3.1.

    Three blocks of two 3x3 ReLU convolutions (32, 64, 128 channels; the first of each block keeps
    the size, the second does not) and a 2x2 max-pool, then FC-512 ReLU and a softmax over
    ``n_classes``.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    h = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    conv = 0
    for block, channels in enumerate((32, 64, 128), start=1):
        for padding in ("same", "valid"):
            conv += 1
            h = layers.Conv2D(channels, 3, padding=padding, activation="relu", name=f"conv_{conv}")(h)
        h = layers.MaxPooling2D(2, name=f"pool_{block}")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(512, activation="relu", name="fc_1")(h)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(h)
    return keras.Model(inputs, outputs, name="gtsrb_cnn")


MODELS = {
    "gtsrb_cnn": build_gtsrb_cnn,
}


def build_model(name: str, input_shape: tuple[int, int, int], n_classes: int) -> "keras.Model":
    """A fresh, uncompiled model of architecture ``name`` for images of ``input_shape`` (h, w, c)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](input_shape, n_classes)


def last_hidden_layer(model: "keras.Model") -> str:
    """Name of the layer that feeds the output layer: the default layer for activation defenses."""
    output_input = model.layers[-1].input
    return next(layer.name for layer in model.layers if layer.output is output_input)
