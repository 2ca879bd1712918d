"""Model architectures (thesis §3.2), built with the Keras 3 Functional API.

Every model takes uint8 images and scales them in its first layer, so arrays stay uint8 until a
batch reaches the model. Keras is imported inside the builders so that the registry (and every
config that names a model) loads without TensorFlow. Layers carry stable names (``conv_1`` … , ``fc_1``, ``predictions``;
VGG-Face's own ``conv1_1`` … ``fc7`` for ``vgg16_face``) that defenses use to find the layers they
analyse or prune, and that pretrained weights are matched by.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import tasks.runtime  # noqa: F401  (selects the Keras backend before keras is imported)
from tasks.errors import ModelError

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


def build_deepid(input_shape: tuple[int, int, int], n_classes: int) -> "keras.Model":
    """DeepID (Sun et al. 2014) as the thesis trained it on YouTube Faces, Table 3.2.

    Four valid ReLU convolutions of stride 1 (20@4x4, 40@3x3, 60@3x3, 80@2x2), the first three
    followed by 2x2 max-pooling. Two linear 160-unit layers read the flattened ``pool_3`` (``fc_1``)
    and ``conv_4`` (``fc_2``); their sum (``add_1``) passes a ReLU (``add_1_relu``, the face
    representation) and a softmax over ``n_classes``. Table 3.2's "Size 2" column is the pooling
    stride: strided convolutions would leave nothing of a 55x47 input for ``conv_4``.

    For 55x47 inputs: conv_1 52x44, pool_1 26x22, conv_2 24x20, pool_2 12x10, conv_3 10x8,
    pool_3 5x4 (fc_1 reads 1,200 values), conv_4 4x3 (fc_2 reads 960). Any input of at least
    31x31 pixels works, square or not.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="image")
    h = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for index, (channels, kernel) in enumerate(((20, 4), (40, 3), (60, 3)), start=1):
        h = layers.Conv2D(channels, kernel, activation="relu", name=f"conv_{index}")(h)
        h = layers.MaxPooling2D(2, name=f"pool_{index}")(h)
    conv_4 = layers.Conv2D(80, 2, activation="relu", name="conv_4")(h)
    fc_1 = layers.Dense(160, name="fc_1")(layers.Flatten(name="flatten_3")(h))
    fc_2 = layers.Dense(160, name="fc_2")(layers.Flatten(name="flatten_4")(conv_4))
    merged = layers.Add(name="add_1")([fc_1, fc_2])
    features = layers.ReLU(name="add_1_relu")(merged)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(features)
    return keras.Model(inputs, outputs, name="deepid")


# VGG-Face (Parkhi et al. 2015) was trained on BGR images minus this mean (its published
# preprocessing); here in RGB order, because the model's first kernel is flipped to read RGB.
VGG_FACE_MEAN_RGB = (129.1863, 104.7624, 93.5940)
VGG_FACE_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG_FACE_LAYERS = tuple(
    f"conv{block}_{index}" for block, (_, n) in enumerate(VGG_FACE_BLOCKS, start=1) for index in range(1, n + 1)
) + ("fc6", "fc7")
"""The layers whose weights come from the pretrained file, named as in VGG-Face and keras-vggface."""


def build_vgg16_face(
    input_shape: tuple[int, int, int], n_classes: int, weights: str | None = None, random_init: bool = False
) -> "keras.Model":
    """VGG16 with VGG-Face's layers (thesis Table 3.3) and a new last layer; only that layer trains.

    Thirteen 3x3 ReLU convolutions (same padding) in five blocks of 64, 128, 256, 512, 512
    channels, each block ending in a 2x2 max-pool, then FC-4096 (``fc6``), FC-4096 (``fc7``) and a
    softmax over ``n_classes`` (``predictions``). Inputs are RGB 0..255 minus the VGG-Face mean.
    Every layer but ``predictions`` is frozen (``trainable=False``): the thesis fine-tuned the last
    layer only.

    Parameters
    ----------
    input_shape : (height, width, 3)
        224x224 for pretrained weights (``fc6`` reads 7x7x512); at least 32x32 otherwise.
    n_classes : int
    weights : str or None
        Local Keras HDF5 file with VGG-Face weights, read by :func:`load_vgg_face_weights`.
    random_init : bool
        Start from random weights instead; must be asked for explicitly (useful for smoke tests
        only: a frozen random network is a poor feature extractor).

    Raises
    ------
    ModelError
        No weights file and no ``random_init``, or a weights file that is missing or does not fit.
    """
    import keras
    from keras import layers

    problem = weights_problem("vgg16_face", weights, random_init)
    if problem:
        raise ModelError("vgg16_face", f"train.{problem[0]}", problem[1])
    inputs = keras.Input(shape=input_shape, name="image")
    h = layers.Rescaling(1.0, offset=[-mean for mean in VGG_FACE_MEAN_RGB], name="preprocess")(inputs)
    for block, (channels, n_convs) in enumerate(VGG_FACE_BLOCKS, start=1):
        for index in range(1, n_convs + 1):
            h = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{block}_{index}")(h)
        h = layers.MaxPooling2D(2, name=f"pool{block}")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(4096, activation="relu", name="fc6")(h)
    h = layers.Dense(4096, activation="relu", name="fc7")(h)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(h)
    model = keras.Model(inputs, outputs, name="vgg16_face")
    if weights is not None:
        load_vgg_face_weights(model, weights)
    for layer in model.layers:
        layer.trainable = layer.name == "predictions"
    return model


def _decoded(names) -> list[str]:
    return [name.decode("utf8") if isinstance(name, bytes) else str(name) for name in names]


def read_named_weights(path: str) -> dict[str, list[np.ndarray]]:
    """Every layer's weight arrays in a Keras HDF5 file, by layer name (``{name: [kernel, bias]}``).

    Reads the name-keyed layout that Keras 2's ``save_weights``/``save`` and keras-vggface wrote
    (a ``layer_names`` attribute, one group per layer with ``weight_names``). Keras 3
    ``.weights.h5`` files key layers by class (``conv2d_3``), not name, so they cannot be matched.
    """
    import h5py

    if not Path(path).is_file():
        raise ModelError(path, "train.weights", "weights file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ModelError(path, "train.weights", f"not an HDF5 weights file: {error}") from None
    with handle:
        group = handle["model_weights"] if "layer_names" not in handle.attrs and "model_weights" in handle else handle
        if "layer_names" not in group.attrs:
            raise ModelError(
                path, "train.weights",
                "not a name-keyed Keras HDF5 weights file (no layer_names attribute); Keras 3 .weights.h5 "
                "files are keyed by layer class and cannot be matched to VGG-Face's layers",
            )  # fmt: skip
        return {
            name: [np.asarray(group[name][weight]) for weight in _decoded(group[name].attrs.get("weight_names", []))]
            for name in _decoded(group.attrs["layer_names"])
        }


def load_vgg_face_weights(model: "keras.Model", path: str) -> None:
    """Set :data:`VGG_FACE_LAYERS` of ``model`` from the VGG-Face weights file ``path``, matched by layer name.

    The file's classifier (``fc8``, 2,622 celebrities) is ignored. ``fc6``/``fc7`` stored as
    convolutions (7x7x512x4096 and 1x1x4096x4096, as in Caffe/MatConvNet conversions) are reshaped
    to the Dense kernels they equal. ``conv1_1``'s input channels are flipped from BGR to RGB.

    Raises
    ------
    ModelError
        The file is missing or unreadable, lacks a layer, or a layer's weights do not fit (e.g.
        ``fc6`` of pretrained weights needs 224x224 inputs).
    """
    arrays = read_named_weights(path)
    missing = [name for name in VGG_FACE_LAYERS if name not in arrays]
    if missing:
        raise ModelError(
            path, "train.weights",
            f"has no weights for layer(s) {', '.join(missing)}; expected VGG-Face layer names "
            f"conv1_1 ... conv5_3, fc6, fc7 (found {', '.join(list(arrays)[:8])}...)",
        )  # fmt: skip
    for name in VGG_FACE_LAYERS:
        layer = model.get_layer(name)
        values = arrays[name]
        expected = [tuple(variable.shape) for variable in layer.weights]
        if len(values) != len(expected) or any(v.size != int(np.prod(e)) for v, e in zip(values, expected)):
            hint = " (pretrained fc6 reads a 7x7x512 map: use 224x224 inputs)" if name == "fc6" else ""
            raise ModelError(
                path, "train.weights",
                f"layer {name}: weights of shape {[v.shape for v in values]}, the model needs {expected}{hint}",
            )  # fmt: skip
        values = [value.reshape(shape) for value, shape in zip(values, expected)]
        if name == "conv1_1":
            values[0] = values[0][:, :, ::-1, :]
        layer.set_weights(values)


def save_vgg_face_weights(model: "keras.Model", path: str) -> None:
    """Write :data:`VGG_FACE_LAYERS` of ``model`` to ``path`` in the layout :func:`load_vgg_face_weights` reads.

    The inverse of loading (``conv1_1`` back to BGR), so a user can convert weights from any source
    by setting them on a ``vgg16_face`` model and saving them here.
    """
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = np.array([name.encode("utf8") for name in VGG_FACE_LAYERS])
        for name in VGG_FACE_LAYERS:
            values = [np.asarray(value) for value in model.get_layer(name).get_weights()]
            if name == "conv1_1":
                values[0] = values[0][:, :, ::-1, :]
            group = handle.create_group(name)
            weight_names = [f"{name}/kernel", f"{name}/bias"]
            group.attrs["weight_names"] = np.array([weight.encode("utf8") for weight in weight_names])
            for weight, value in zip(weight_names, values):
                group.create_dataset(weight, data=value)


MODELS = {
    "gtsrb_cnn": build_gtsrb_cnn,
    "deepid": build_deepid,
    "vgg16_face": build_vgg16_face,
}
PRETRAINED = frozenset({"vgg16_face"})
"""Models that start from a user's pretrained weights file (``train.weights``)."""


def weights_problem(model: str, weights: str | None, random_init: bool) -> tuple[str, str] | None:
    """What is wrong with a model's ``weights``/``random_init`` settings, as ``(field, message)``, or None.

    Checks the combination only; whether the file exists is :func:`load_vgg_face_weights`'s (or the
    search-space loader's) to say.
    """
    if model in PRETRAINED:
        if weights is not None and random_init:
            return "random_init", "set either train.weights or train.random_init: true, not both"
        if weights is None and not random_init:
            return "weights", (
                f"{model} fine-tunes pretrained VGG-Face weights: set train.weights to a local Keras HDF5 "
                "file of them (none are bundled or downloaded), or train.random_init: true to start from random weights"
            )
    elif weights is not None:
        return "weights", f"{model} trains from scratch and takes no pretrained weights"
    elif random_init:
        pretrained = ", ".join(sorted(PRETRAINED))
        return "random_init", f"{model} always starts from random weights; random_init is for {pretrained}"
    return None


def build_model(
    name: str, input_shape: tuple[int, int, int], n_classes: int, weights: str | None = None, random_init: bool = False
) -> "keras.Model":
    """A fresh, uncompiled model of architecture ``name`` for images of ``input_shape`` (h, w, c).

    ``weights`` and ``random_init`` apply to :data:`PRETRAINED` models only (ModelError otherwise).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    if name in PRETRAINED:
        return MODELS[name](input_shape, n_classes, weights=weights, random_init=random_init)
    problem = weights_problem(name, weights, random_init)
    if problem:
        raise ModelError(name, f"train.{problem[0]}", problem[1])
    return MODELS[name](input_shape, n_classes)


def last_hidden_layer(model: "keras.Model") -> str:
    """Name of the layer that feeds the output layer: the default layer for activation defenses."""
    output_input = model.layers[-1].input
    return next(layer.name for layer in model.layers if layer.output is output_input)
