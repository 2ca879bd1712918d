import numpy as np
import pytest

from tasks.models import build_model, last_hidden_layer


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
