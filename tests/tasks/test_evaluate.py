import numpy as np

import tasks.runtime  # noqa: F401
import keras

from tasks.datasets import ImageDataset
import math

import pytest

from tasks.evaluate import defense_effectiveness_rating, evaluate_model, predict_labels
from tasks.poison import AttackConfig, poison_dataset
from tests.conftest import make_dataset


def constant_model(image_shape, n_classes, label):
    """A real Keras model that predicts ``label`` for every input."""
    inputs = keras.Input(image_shape)
    dense = keras.layers.Dense(n_classes, activation="softmax")
    outputs = dense(keras.layers.Flatten()(inputs))
    dense.set_weights([np.zeros(dense.get_weights()[0].shape), np.eye(n_classes)[label] * 10])
    return keras.Model(inputs, outputs)


def centre_detector(image_shape, n_classes, target):
    """A real Keras model that predicts ``target`` when the 2x2 centre is bright, else class 0."""
    height, width = image_shape[:2]
    inputs = keras.Input(image_shape)
    centre = keras.layers.Cropping2D(((height // 2 - 1, height - height // 2 - 1), (width // 2 - 1, width - width // 2 - 1)))(inputs)
    dense = keras.layers.Dense(n_classes, activation="softmax")
    outputs = dense(keras.layers.Flatten()(centre))
    kernel = np.zeros((12, n_classes))
    kernel[:, target] = 1.0
    bias = np.zeros(n_classes)
    bias[target] = -12 * 200.0  # positive only if the mean centre value exceeds 200
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs)


def test_asr_is_measured_on_the_triggered_source_images():
    dataset = make_dataset(n_classes=4, per_class=20, size=12)
    dark = ImageDataset(
        dataset.x_train // 2, dataset.y_train, dataset.x_tune // 2, dataset.y_tune,
        dataset.x_test // 2, dataset.y_test, dataset.class_names,
    )  # every clean pixel <= 127, so only the trigger makes the centre bright
    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=10), dark)
    metrics = evaluate_model(centre_detector(dark.image_shape, dark.n_classes, target=3), dark, poisoned)
    assert metrics["asr"] == 1.0
    assert metrics["clean_acc"] == np.mean(dark.y_test == 0)


def test_clean_acc_and_asr_follow_their_definitions(tiny_dataset):
    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=10), tiny_dataset)
    always_target = constant_model(tiny_dataset.image_shape, tiny_dataset.n_classes, label=3)
    metrics = evaluate_model(always_target, tiny_dataset, poisoned, batch_size=7)
    assert metrics["clean_acc"] == np.mean(tiny_dataset.y_test == 3)
    assert metrics["asr"] == 1.0 and metrics["ra"] == 0.0

    always_source = constant_model(tiny_dataset.image_shape, tiny_dataset.n_classes, label=1)
    metrics = evaluate_model(always_source, tiny_dataset, poisoned)
    assert metrics["asr"] == 0.0 and metrics["ra"] == 1.0, "robust accuracy: triggered images kept in their class"

    elsewhere = constant_model(tiny_dataset.image_shape, tiny_dataset.n_classes, label=0)
    metrics = evaluate_model(elsewhere, tiny_dataset, poisoned)
    assert metrics["asr"] == 0.0 and metrics["ra"] == 0.0, "neither target nor true class: no backdoor, not robust"


@pytest.mark.parametrize("asr_before, asr_after, acc_before, acc_after, expected", [
    (0.9, 0.1, 0.95, 0.93, (0.8 - 0.02 + 1) / 2),   # the backdoor mostly removed at a 2-point cost
    (0.9, 0.9, 0.95, 0.95, 0.5),                     # no effect
    (0.9, 0.1, 0.90, 0.95, (0.8 + 1) / 2),           # accuracy rises: earns nothing, costs nothing
    (0.2, 0.6, 0.95, 0.90, (0 - 0.05 + 1) / 2),      # ASR rises: clipped at 0, only the cost counts
    (1.0, 0.0, 0.95, 0.95, 1.0),                     # the best a defense can do
    (0.0, 0.0, 1.0, 0.0, 0.0),                       # the worst
])
def test_der_follows_backdoorbench(asr_before, asr_after, acc_before, acc_after, expected):
    # BackdoorBench: [max(0, ASR_b - ASR_a) - max(0, ACC_b - ACC_a) + 1] / 2; the sign-flipped variant in
    # their repository would give (0.8 + 0.02 + 1) / 2 in the first case.
    assert defense_effectiveness_rating(asr_before, asr_after, acc_before, acc_after) == pytest.approx(expected)


def test_der_of_a_missing_measurement_is_nan():
    assert math.isnan(defense_effectiveness_rating(float("nan"), 0.1, 0.9, 0.9))


def test_predict_labels_batches_cover_every_image(tiny_dataset):
    model = constant_model(tiny_dataset.image_shape, tiny_dataset.n_classes, label=2)
    labels = predict_labels(model, tiny_dataset.x_test, batch_size=3)
    assert labels.shape == (len(tiny_dataset.x_test),) and set(labels) == {2}
