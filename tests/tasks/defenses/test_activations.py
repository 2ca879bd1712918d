import numpy as np

import tasks.runtime  # noqa: F401
import keras

from tasks.defenses.activations import Activations, layer_activations
from tasks.models import build_model
from tests.conftest import make_dataset


def test_layer_activations_are_the_named_layers_output_in_batches():
    dataset = make_dataset(n_classes=3, per_class=10, size=32, seed=1)
    model = build_model("gtsrb_cnn", dataset.image_shape, dataset.n_classes)
    x = np.asarray(dataset.x_train[:10])
    ours = layer_activations(model, x, "conv_6", batch_size=4)
    expected = keras.Model(model.input, model.get_layer("conv_6").output)(x.astype("float32")).numpy()
    assert ours.shape == (10, 4 * 4 * 128) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected.reshape(10, -1), rtol=1e-5, atol=1e-5)


def test_activations_roundtrip(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    Activations(values, "fc_1").save(tmp_path)
    loaded = Activations.load(tmp_path)
    assert loaded.layer == "fc_1" and loaded.metrics == {"layer": "fc_1", "n": 3, "features": 4}
    np.testing.assert_array_equal(loaded.values, values)
