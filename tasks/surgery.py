"""Channel surgery for Keras 3 Functional models: remove conv channels physically.

kerassurgeon cannot run on Keras 3 (SPEC §2), so this is bdsweep's own. Supported graphs are the
ones the thesis prunes: a Conv2D whose output reaches, through channel-preserving layers
(pooling, activation, dropout), either Conv2D layers or a Flatten followed by Dense layers. The
pruned model computes exactly what the original computes with those channels' kernels and biases
set to zero (the zero-masked model), because a ReLU conv channel with zero weights outputs 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

# Layers that pass channels through unchanged (same count, same order).
_CHANNEL_PRESERVING = {"MaxPooling2D", "AveragePooling2D", "Activation", "ReLU", "Dropout", "SpatialDropout2D"}


def layer_parents(model: "keras.Model") -> dict[str, list[str]]:
    """``{layer name: names of the layers feeding it}`` from the model's (public) config."""

    def history(value, found):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                found.append(value["config"]["keras_history"][0])
            else:
                for item in value.values():
                    history(item, found)
        elif isinstance(value, (list, tuple)):
            for item in value:
                history(item, found)
        return found

    parents = {}
    for layer in model.get_config()["layers"]:
        if len(layer["inbound_nodes"]) > 1:
            raise ValueError(f"layer {layer['name']!r} is shared (called more than once); surgery does not support that")
        parents[layer["name"]] = history(layer["inbound_nodes"], [])
    return parents


def _children(parents: dict[str, list[str]]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {name: [] for name in parents}
    for name, sources in parents.items():
        for source in sources:
            children[source].append(name)
    return children


def channel_consumers(model: "keras.Model", layer: str) -> tuple[list[str], list[tuple[str, tuple[int, ...]]]]:
    """Layers whose weights index the channels of ``layer``.

    Returns
    -------
    convs : names of Conv2D layers reading the channels as input channels
    denses : ``(name, flattened shape (h, w, c))`` of Dense layers reading them after a Flatten
    """
    parents = layer_parents(model)
    children = _children(parents)
    convs, denses = [], []
    frontier = list(children[layer])
    while frontier:
        name = frontier.pop()
        kind = type(model.get_layer(name)).__name__
        if kind == "Conv2D":
            convs.append(name)
        elif kind in _CHANNEL_PRESERVING:
            frontier.extend(children[name])
        elif kind == "Flatten":
            shape = tuple(model.get_layer(name).input.shape[1:])
            for child in children[name]:
                if type(model.get_layer(child)).__name__ != "Dense":
                    raise ValueError(f"{child!r} after Flatten {name!r} is not Dense; cannot prune {layer!r}")
                denses.append((child, shape))
        else:
            raise ValueError(f"cannot prune {layer!r}: its channels reach {kind} layer {name!r}")
    return convs, denses


def _sliced_weights(model, layer: str, keep: np.ndarray) -> dict[str, list[np.ndarray]]:
    """New weights of every layer the surgery touches, with only the channels in ``keep``."""
    kernel, bias = model.get_layer(layer).get_weights()
    weights = {layer: [kernel[..., keep], bias[keep]]}
    convs, denses = channel_consumers(model, layer)
    for name in convs:
        kernel, *rest = model.get_layer(name).get_weights()
        weights[name] = [kernel[:, :, keep, :], *rest]
    for name, (height, width, channels) in denses:
        kernel, *rest = model.get_layer(name).get_weights()
        # Flatten is row-major over (h, w, c): row (i * w + j) * c + ch.
        rows = kernel.reshape(height, width, channels, -1)[:, :, keep, :].reshape(-1, kernel.shape[-1])
        weights[name] = [rows, *rest]
    return weights


def prune_channels(model: "keras.Model", layer: str, channels) -> "keras.Model":
    """A new model without the output ``channels`` (indices) of Conv2D ``layer``.

    Every other weight is copied; the result is uncompiled. Raises ``ValueError`` for layers or
    graphs outside the supported shapes, or when every channel would go.
    """
    import keras

    if type(model.get_layer(layer)).__name__ != "Conv2D":
        raise ValueError(f"{layer!r} is not a Conv2D layer")
    width = model.get_layer(layer).filters
    keep = np.setdiff1d(np.arange(width), np.asarray(channels, dtype=int))
    if len(keep) == 0:
        raise ValueError(f"cannot remove all {width} channels of {layer!r}")
    new_weights = _sliced_weights(model, layer, keep)

    parents = layer_parents(model)
    tensors = {}
    for config in model.get_config()["layers"]:
        name = config["name"]
        original = model.get_layer(name)
        if config["class_name"] == "InputLayer":
            tensors[name] = keras.Input(batch_shape=original.batch_shape, dtype=original.dtype, name=name)
            continue
        layer_config = original.get_config()
        if name == layer:
            layer_config["filters"] = len(keep)
        inputs = [tensors[parent] for parent in parents[name]]
        tensors[name] = type(original).from_config(layer_config)(inputs[0] if len(inputs) == 1 else inputs)
    input_names = _endpoint_names(model.get_config()["input_layers"])
    output_names = _endpoint_names(model.get_config()["output_layers"])
    pruned = keras.Model(
        [tensors[n] for n in input_names] if len(input_names) > 1 else tensors[input_names[0]],
        [tensors[n] for n in output_names] if len(output_names) > 1 else tensors[output_names[0]],
        name=model.name,
    )
    for original in model.layers:
        target = pruned.get_layer(original.name)
        target.set_weights(new_weights.get(original.name, original.get_weights()))
    return pruned


def _endpoint_names(entries: list) -> list[str]:
    # A Functional config lists one endpoint as [name, 0, 0] and several as [[name, 0, 0], ...].
    return [entries[0]] if isinstance(entries[0], str) else [entry[0] for entry in entries]


def zero_mask_channels(model: "keras.Model", layer: str, channels) -> "keras.Model":
    """A copy of ``model`` with the kernels and biases of ``layer``'s ``channels`` set to zero."""
    from tasks.train import copy_model

    masked = copy_model(model)
    kernel, bias = masked.get_layer(layer).get_weights()
    channels = np.asarray(channels, dtype=int)
    kernel[..., channels] = 0
    bias[channels] = 0
    masked.get_layer(layer).set_weights([kernel, bias])
    return masked


def conv_layer(model: "keras.Model", which: str) -> str:
    """Name of ``"last_conv"``, ``"second_to_last_conv"`` (in layer order), or ``which`` itself if it names a Conv2D."""
    convs = [layer.name for layer in model.layers if type(layer).__name__ == "Conv2D"]
    position = {"last_conv": -1, "second_to_last_conv": -2}.get(which)
    if position is not None:
        if len(convs) < -position:
            raise ValueError(f"model {model.name!r} has {len(convs)} Conv2D layer(s), no {which}")
        return convs[position]
    if which not in convs:
        raise ValueError(f"{which!r} is not a Conv2D layer of {model.name!r}; Conv2D layers: {', '.join(convs)}")
    return which


def tail_model(model: "keras.Model", layer: str) -> tuple["keras.Model", list[str]]:
    """The part of ``model`` after ``layer``, as a model of its own with copied weights.

    Returns
    -------
    tail : keras.Model
        Inputs: the output of ``layer``, then the outputs of ``extra``; outputs: the model's.
    extra : list of str
        Layers upstream of ``layer`` whose outputs the tail also reads (DeepID's pool_3 feeds fc_1
        beside conv_4). Their values do not depend on ``layer``'s channels, so they can be cached.
    """
    import keras

    parents = layer_parents(model)
    children = _children(parents)
    downstream: set[str] = set()
    frontier = [layer]
    while frontier:
        for child in children[frontier.pop()]:
            if child not in downstream:
                downstream.add(child)
                frontier.append(child)
    order = [config["name"] for config in model.get_config()["layers"]]
    extra = list(dict.fromkeys(
        parent for name in order if name in downstream for parent in parents[name]
        if parent != layer and parent not in downstream
    ))  # fmt: skip
    tensors = {name: keras.Input(shape=model.get_layer(name).output.shape[1:], name=f"tail_{name}")
               for name in (layer, *extra)}  # fmt: skip
    copies = []
    for name in order:
        if name not in downstream:
            continue
        original = model.get_layer(name)
        copy = type(original).from_config(original.get_config())
        inputs = [tensors[parent] for parent in parents[name]]
        tensors[name] = copy(inputs[0] if len(inputs) == 1 else inputs)
        copies.append((copy, original))
    outputs = [tensors[name] for name in _endpoint_names(model.get_config()["output_layers"])]
    tail = keras.Model([tensors[layer], *(tensors[name] for name in extra)], outputs[0] if len(outputs) == 1 else outputs)
    for copy, original in copies:
        copy.set_weights(original.get_weights())
    return tail, extra
