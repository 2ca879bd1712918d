import numpy as np
import pytest
from pydantic import ValidationError

from tasks.errors import ModelError
from tasks.models import (
    VGG_FACE_LAYERS,
    build_model,
    last_hidden_layer,
    load_vgg_face_weights,
    read_named_weights,
    save_vgg_face_weights,
)
from tasks.train import TrainConfig


def test_gtsrb_cnn_matches_thesis_table_3_1():
    model = build_model("gtsrb_cnn", (32, 32, 3), 43)
    convs = [layer for layer in model.layers if layer.name.startswith("conv_")]
    assert [layer.filters for layer in convs] == [32, 32, 64, 64, 128, 128]
    assert all(layer.kernel_size == (3, 3) for layer in convs)
    assert model.get_layer("fc_1").units == 512
    assert model.output_shape == (None, 43)
    assert last_hidden_layer(model) == "fc_1"


def test_models_take_uint8_images():
    model = build_model("gtsrb_cnn", (32, 32, 3), 5)
    probabilities = model.predict(np.full((2, 32, 32, 3), 255, dtype=np.uint8), verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_model_is_rejected():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet", (32, 32, 3), 5)


# --- DeepID -------------------------------------------------------------------------------------


def test_deepid_matches_thesis_table_3_2_on_55x47_faces():
    model = build_model("deepid", (55, 47, 3), 1283)
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers}
    assert shapes["conv_1"] == (52, 44, 20) and model.get_layer("conv_1").kernel_size == (4, 4)
    assert shapes["pool_1"] == (26, 22, 20)
    assert shapes["conv_2"] == (24, 20, 40) and shapes["pool_2"] == (12, 10, 40)
    assert shapes["conv_3"] == (10, 8, 60) and shapes["pool_3"] == (5, 4, 60)
    assert shapes["conv_4"] == (4, 3, 80) and model.get_layer("conv_4").kernel_size == (2, 2)
    # fc_1 reads pool_3, fc_2 reads conv_4; both are linear and 160 wide.
    assert model.get_layer("fc_1").kernel.shape == (5 * 4 * 60, 160)
    assert model.get_layer("fc_2").kernel.shape == (4 * 3 * 80, 160)
    assert model.get_layer("fc_1").get_config()["activation"] == "linear"
    add = model.get_layer("add_1")
    assert type(add).__name__ == "Add"
    assert {tensor._keras_history[0].name for tensor in add.input} == {"fc_1", "fc_2"}
    assert last_hidden_layer(model) == "add_1_relu"
    assert model.output_shape == (None, 1283)


def test_deepid_adds_the_two_branches_then_applies_relu():
    import keras

    model = build_model("deepid", (55, 47, 3), 4)
    x = np.random.default_rng(0).integers(0, 256, (3, 55, 47, 3), dtype=np.uint8)
    probe = keras.Model(model.input, [model.get_layer(name).output for name in ("fc_1", "fc_2", "add_1_relu")])
    fc_1, fc_2, features = (np.asarray(value) for value in probe.predict(x, verbose=0))
    np.testing.assert_allclose(features, np.maximum(fc_1 + fc_2, 0), rtol=1e-5, atol=1e-5)


def test_deepid_accepts_other_input_sizes():
    model = build_model("deepid", (64, 40, 3), 3)
    assert model.get_layer("conv_4").output.shape[1:3] == (5, 2)
    probabilities = model.predict(np.zeros((1, 64, 40, 3), dtype=np.uint8), verbose=0)
    assert probabilities.shape == (1, 3)


# --- VGG16-Face ---------------------------------------------------------------------------------

# 32x32 keeps these tests small (fc6 reads 1x1x512); pretrained weights need 224x224.
VGG_INPUT = (32, 32, 3)


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A random-init vgg16_face and its weights saved in the VGG-Face file layout."""
    import keras

    keras.utils.set_random_seed(1)
    model = build_model("vgg16_face", VGG_INPUT, 5, random_init=True)
    path = tmp_path_factory.mktemp("vgg") / "vgg_face_weights.h5"
    save_vgg_face_weights(model, str(path))
    return model, path


def test_vgg16_face_matches_thesis_table_3_3_and_trains_only_the_last_layer(vgg_weights):
    model, _ = vgg_weights
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [layer.name for layer in convs] == list(VGG_FACE_LAYERS[:-2])
    assert [layer.filters for layer in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert all(layer.kernel_size == (3, 3) for layer in convs)
    assert model.get_layer("fc6").units == model.get_layer("fc7").units == 4096
    assert model.get_layer("pool5").output.shape[1:] == (1, 1, 512)
    assert model.output_shape == (None, 5)
    assert [layer.name for layer in model.layers if layer.trainable] == ["predictions"]
    assert len(model.trainable_weights) == 2  # the new layer's kernel and bias
    assert last_hidden_layer(model) == "fc7"


def test_vgg16_face_loads_every_pretrained_layer_by_name(vgg_weights):
    import keras

    original, path = vgg_weights
    keras.utils.set_random_seed(2)
    loaded = build_model("vgg16_face", VGG_INPUT, 3, weights=str(path))
    for name in VGG_FACE_LAYERS:
        for ours, theirs in zip(loaded.get_layer(name).get_weights(), original.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)
    assert loaded.get_layer("predictions").kernel.shape == (4096, 3)
    # The file holds VGG-Face's BGR first kernel; the model reads RGB.
    stored = read_named_weights(str(path))["conv1_1"][0]
    np.testing.assert_array_equal(stored[:, :, ::-1, :], np.asarray(loaded.get_layer("conv1_1").kernel))


def test_fully_connected_layers_stored_as_convolutions_are_reshaped(vgg_weights, tmp_path):
    import h5py

    original, path = vgg_weights
    as_conv = tmp_path / "conv_fc.h5"
    with h5py.File(path, "r") as source, h5py.File(as_conv, "w") as target:
        for key, value in source.attrs.items():
            target.attrs[key] = value
        for name in source:
            source.copy(source[name], target, name=name)
        kernel = np.asarray(target["fc6/fc6/kernel"])
        del target["fc6/fc6/kernel"]
        target.create_dataset("fc6/fc6/kernel", data=kernel.reshape(1, 1, 512, 4096))  # Caffe's 7x7 conv at 224
    model = build_model("vgg16_face", VGG_INPUT, 3, weights=str(as_conv))
    np.testing.assert_array_equal(np.asarray(model.get_layer("fc6").kernel), np.asarray(original.get_layer("fc6").kernel))


def test_vgg16_face_preprocessing_survives_saving(vgg_weights, tmp_path):
    import keras

    model, _ = vgg_weights
    model.save(tmp_path / "model.keras")
    again = keras.models.load_model(tmp_path / "model.keras", compile=False)
    x = np.random.default_rng(0).integers(0, 256, (2, *VGG_INPUT), dtype=np.uint8)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)
    preprocess = keras.Model(model.input, model.get_layer("preprocess").output).predict(x, verbose=0)
    np.testing.assert_allclose(preprocess, x - np.array([129.1863, 104.7624, 93.5940]), atol=1e-4)


def test_vgg16_face_without_weights_is_a_clear_error():
    with pytest.raises(ModelError, match="train.random_init: true") as error:
        build_model("vgg16_face", VGG_INPUT, 3)
    assert error.value.field == "train.weights"
    with pytest.raises(ValidationError, match="set train.weights"):
        TrainConfig(model="vgg16_face")
    with pytest.raises(ValidationError, match="not both"):
        TrainConfig(model="vgg16_face", weights="/w.h5", random_init=True)
    assert TrainConfig(model="vgg16_face", random_init=True).weights is None


def test_pretrained_weights_are_refused_for_models_trained_from_scratch():
    with pytest.raises(ValidationError, match="trains from scratch"):
        TrainConfig(model="deepid", weights="/w.h5")
    with pytest.raises(ModelError, match="trains from scratch"):
        build_model("gtsrb_cnn", (32, 32, 3), 3, weights="/w.h5")


def test_weights_file_errors_name_the_file(vgg_weights, tmp_path):
    import h5py

    with pytest.raises(ModelError, match="weights file not found") as error:
        build_model("vgg16_face", VGG_INPUT, 3, weights=str(tmp_path / "missing.h5"))
    assert error.value.source == str(tmp_path / "missing.h5") and error.value.field == "train.weights"

    not_hdf5 = tmp_path / "weights.h5"
    not_hdf5.write_text("not HDF5")
    with pytest.raises(ModelError, match="not an HDF5 weights file"):
        build_model("vgg16_face", VGG_INPUT, 3, weights=str(not_hdf5))

    _, path = vgg_weights
    partial = tmp_path / "partial.h5"
    with h5py.File(path, "r") as source, h5py.File(partial, "w") as target:
        kept = [name for name in VGG_FACE_LAYERS if name != "conv3_2"]
        target.attrs["layer_names"] = np.array([name.encode() for name in kept])
        for name in kept:
            source.copy(source[name], target, name=name)
            target[name].attrs["weight_names"] = source[name].attrs["weight_names"]
    with pytest.raises(ModelError, match="no weights for layer.s. conv3_2"):
        build_model("vgg16_face", VGG_INPUT, 3, weights=str(partial))

    # Weights saved for 32x32 inputs do not fit 64x64 ones: fc6 reads a different map.
    with pytest.raises(ModelError, match="layer fc6.*224x224"):
        build_model("vgg16_face", (64, 64, 3), 3, weights=str(path))


def test_keras_3_weights_files_are_refused_with_a_reason(vgg_weights, tmp_path):
    model, _ = vgg_weights
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    with pytest.raises(ModelError, match="keyed by layer class"):
        load_vgg_face_weights(model, str(path))
