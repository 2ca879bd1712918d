import numpy as np

import tasks.runtime  # noqa: F401
import keras

from tasks.evaluate import evaluate_model, predict_labels
from tasks.poison import AttackConfig, poison_dataset


def constant_model(image_shape, n_classes, label):
    """A real Keras model that predicts ``label`` for every input."""
    inputs = keras.Input(image_shape)
    dense = keras.layers.Dense(n_classes, activation="softmax")
    outputs = dense(keras.layers.Flatten()(inputs))
    dense.set_weights([np.zeros(dense.get_weights()[0].shape), np.eye(n_classes)[label] * 10])
    return keras.Model(inputs, outputs)


def test_clean_acc_and_asr_follow_their_definitions(tiny_dataset):
    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=10), tiny_dataset)
    always_target = constant_model(tiny_dataset.image_shape, tiny_dataset.n_classes, label=3)
    metrics = evaluate_model(always_target, tiny_dataset, poisoned, batch_size=7)
    assert metrics["clean_acc"] == np.mean(tiny_dataset.y_test == 3)
    assert metrics["asr"] == 1.0

    always_source = constant_model(tiny_dataset.image_shape, tiny_dataset.n_classes, label=1)
    assert evaluate_model(always_source, tiny_dataset, poisoned)["asr"] == 0.0


def test_predict_labels_batches_cover_every_image(tiny_dataset):
    model = constant_model(tiny_dataset.image_shape, tiny_dataset.n_classes, label=2)
    labels = predict_labels(model, tiny_dataset.x_test, batch_size=3)
    assert labels.shape == (len(tiny_dataset.x_test),) and set(labels) == {2}
