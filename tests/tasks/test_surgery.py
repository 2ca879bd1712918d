import numpy as np
import pytest

import tasks.runtime  # noqa: F401
import keras

from tasks.models import MODELS, build_model
from tasks.surgery import channel_consumers, prune_channels, zero_mask_channels


def deepid_like():
    """The DeepID shape (two branches merged by Add) at a small size, built here so the test stands alone."""
    inputs = keras.Input((31, 27, 3))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(6, 4, activation="relu", name="conv_1")(h)
    h = keras.layers.MaxPooling2D(name="pool_1")(h)
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv_2")(h)
    pool = keras.layers.MaxPooling2D(name="pool_2")(h)
    conv = keras.layers.Conv2D(10, 2, activation="relu", name="conv_3")(pool)
    fc_1 = keras.layers.Dense(16, name="fc_1")(keras.layers.Flatten(name="flat_1")(pool))
    fc_2 = keras.layers.Dense(16, name="fc_2")(keras.layers.Flatten(name="flat_2")(conv))
    h = keras.layers.ReLU(name="merge_relu")(keras.layers.Add(name="merge")([fc_1, fc_2]))
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="predictions")(h))


def randomised(model, seed=0):
    """Random non-zero biases too, so that a forgotten bias slice would show."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    return model


CASES = [
    ("gtsrb_cnn", lambda: build_model("gtsrb_cnn", (32, 32, 3), 7), "conv_6"),
    ("gtsrb_cnn", lambda: build_model("gtsrb_cnn", (32, 32, 3), 7), "conv_5"),
    ("deepid-like", deepid_like, "conv_3"),
    ("deepid-like", deepid_like, "conv_2"),
]
if "deepid" in MODELS:
    CASES += [
        ("deepid", lambda: build_model("deepid", (55, 47, 3), 9), "conv_4"),
        ("deepid", lambda: build_model("deepid", (55, 47, 3), 9), "conv_3"),
    ]


@pytest.mark.parametrize("name, build, layer", CASES, ids=[f"{n}-{l}" for n, _, l in CASES])
def test_pruned_model_equals_zero_masked_model(name, build, layer):
    model = randomised(build())
    width = model.get_layer(layer).filters
    x = np.random.default_rng(2).integers(0, 256, size=(6, *model.input_shape[1:]), dtype=np.uint8)
    # The most active third of the channels, so that removing them changes the output.
    outputs = keras.Model(model.input, model.get_layer(layer).output).predict(x, verbose=0)
    channels = np.argsort(outputs.mean(axis=(0, 1, 2)))[-(width // 3):]
    pruned = prune_channels(model, layer, channels)
    masked = zero_mask_channels(model, layer, channels)
    assert pruned.get_layer(layer).filters == width - len(channels)
    assert pruned.count_params() < model.count_params()
    np.testing.assert_allclose(pruned.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)
    # And the masking matters: the original differs.
    assert not np.allclose(model.predict(x, verbose=0), masked.predict(x, verbose=0), atol=1e-5)


def test_consumers_of_the_deepid_branch_point():
    convs, denses = channel_consumers(deepid_like(), "conv_2")
    assert convs == ["conv_3"] and denses == [("fc_1", (6, 5, 8))]


def test_unsupported_graphs_are_refused():
    model = build_model("gtsrb_cnn", (32, 32, 3), 3)
    with pytest.raises(ValueError, match="not a Conv2D"):
        prune_channels(model, "fc_1", [0])
    with pytest.raises(ValueError, match="all 128 channels"):
        prune_channels(model, "conv_6", range(128))


@pytest.mark.parametrize("name, build, layer", CASES, ids=[f"{n}-{l}" for n, _, l in CASES])
def test_tail_model_on_cached_activations_equals_the_whole_model(name, build, layer):
    from tasks.surgery import tail_model

    model = randomised(build())
    x = np.random.default_rng(3).integers(0, 256, size=(5, *model.input_shape[1:]), dtype=np.uint8)
    tail, extra = tail_model(model, layer)
    cached = keras.Model(model.input, [model.get_layer(n).output for n in (layer, *extra)]).predict(x, verbose=0)
    cached = cached if isinstance(cached, list) else [cached]
    np.testing.assert_allclose(tail.predict(cached, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    if name == "deepid-like" and layer == "conv_3":
        assert extra == ["fc_1"]  # the other branch, cached where it joins


def test_conv_layer_names():
    from tasks.surgery import conv_layer

    model = build_model("gtsrb_cnn", (32, 32, 3), 3)
    assert (conv_layer(model, "last_conv"), conv_layer(model, "second_to_last_conv")) == ("conv_6", "conv_5")
    with pytest.raises(ValueError, match="not a Conv2D"):
        conv_layer(model, "fc_1")
