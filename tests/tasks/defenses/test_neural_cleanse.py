"""Neural Cleanse on a planted model (a 2x2 checkerboard in a corner decides class 0): its masks are h x w, the
planted class has the smallest trigger and is flagged, the anomaly index is the hand formula, and
unlearning stamps other classes' images, keeping their labels (ART 1.20.1's mistakes, SPEC §2)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.defenses import neural_cleanse
from tasks.defenses.neural_cleanse import NeuralCleanse, Params, ReverseConfig, anomaly_index, reverse_triggers
from tasks.methods import CleanData, Context, Inspected
from tasks.train import TrainConfig
from tests.tasks.defenses.test_strip import CLASSES, SIZE, TARGET, corner_model

PALETTE = np.array([[0.1, 0.1, 0.7], [0.7, 0.1, 0.1], [0.1, 0.7, 0.1], [0.7, 0.7, 0.1], [0.1, 0.7, 0.7]])  # class colours


def palette_model():
    """Nearest class colour, written as a linear layer (logit_j = 4 x the sum over pixels of
    2 x.c_j - |c_j|^2, x in [0, 1]), plus 40 x a 2x2 checkerboard contrast in the top-left corner on class TARGET's
    logit: about 0 on a flat-coloured image, +240 with the corner's diagonal at 255 and the other
    diagonal at 0. Linear, so the trigger's gradient never vanishes."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(CLASSES, activation="softmax")
    outputs = dense(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    kernel = np.tile(8 * PALETTE.T, (SIZE * SIZE, 1))  # (pixels * 3, classes): row p*3+ch holds 8 c_j[ch]
    checkerboard = np.zeros((SIZE, SIZE, 3))
    checkerboard[:2, :2] = [[[1] * 3, [-1] * 3], [[-1] * 3, [1] * 3]]
    kernel[:, TARGET] += 40 * checkerboard.ravel()
    dense.set_weights([kernel, -4 * SIZE * SIZE * (PALETTE ** 2).sum(axis=1)])
    return keras.Model(inputs, outputs)


def palette_images(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(CLASSES), per_class)
    x = 255 * PALETTE[y][:, None, None, :] + rng.normal(0, 4, size=(len(y), SIZE, SIZE, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def test_the_planted_class_has_the_smallest_h_by_w_mask_and_is_flagged():
    model = palette_model()
    x, y = palette_images(20, seed=8)
    assert (np.argmax(model.predict_on_batch(x), axis=1) == y).mean() > 0.95  # the planted model is right
    reversed_triggers = reverse_triggers(model, x, y, CLASSES, ReverseConfig(steps=1000, batch_size=16, seed=0))
    assert reversed_triggers.masks.shape == (CLASSES, SIZE, SIZE)  # one mask over all channels (ART: one per channel)
    assert reversed_triggers.patterns.shape == (CLASSES, SIZE, SIZE, 3) and reversed_triggers.reached[TARGET]
    l1 = reversed_triggers.l1
    assert np.argmin(l1) == TARGET and l1[TARGET] < 6  # the 4-pixel corner, or a little more
    mask = reversed_triggers.masks[TARGET].copy()
    assert mask[:2, :2].min() > 0.9  # ...where the trigger is, whole
    mask[:2, :2] = 0
    assert mask.max() < 0.1  # and next to nothing elsewhere
    index = anomaly_index(l1)
    assert index[TARGET] > 2 and (index[np.arange(CLASSES) != TARGET] < 2).all()


def test_the_anomaly_index_is_the_hand_computation():
    l1 = np.array([1.0, 10.0, 11.0, 12.0, 13.0])
    # median 11; absolute deviations 10, 1, 0, 1, 2: MAD 1; scaled 1.4826.
    np.testing.assert_allclose(anomaly_index(l1), (11 - l1) / 1.4826)
    assert anomaly_index(np.full(4, 3.0)).max() == 0  # all alike: nothing stands out


def test_unlearning_stamps_images_of_other_classes_and_keeps_their_labels(monkeypatch):
    trained_on = {}

    def fake_fit(config, model, x, y):
        trained_on.update(x=x.copy(), y=y.copy(), epochs=config.epochs)
        return model

    monkeypatch.setattr(neural_cleanse, "fit_model", fake_fit)
    x = np.zeros((100, SIZE, SIZE, 3), dtype=np.uint8)
    y = np.repeat(np.arange(CLASSES), 20)
    mask = np.zeros((CLASSES, SIZE, SIZE), np.float32)
    mask[TARGET, -2:, -2:] = 1.0
    patterns = np.full((CLASSES, SIZE, SIZE, 3), 200, np.float32)
    flagged = np.arange(CLASSES) == TARGET
    inspected = Inspected(flagged.astype(float), flagged, {}, {"masks": mask, "patterns": patterns})
    params = Params(unlearning_ratio=0.5, unlearning_epochs=3)
    context = Context(seed=0, train=TrainConfig(model="gtsrb_cnn"))
    _, metrics = NeuralCleanse().repair(params, inspected, corner_model(), CleanData(x, y, CLASSES), context)
    stamped = trained_on["x"][:, -2:, -2:].reshape(100, -1).max(axis=1) == 200
    np.testing.assert_array_equal(trained_on["y"], y)  # true labels kept
    assert not stamped[y == TARGET].any()  # never the flagged class's own images (ART's no-op)
    assert stamped.sum() == metrics["unlearned_images"] and 30 <= stamped.sum() <= 50  # half of 100, less class 0's
    assert trained_on["epochs"] == 3


def test_nothing_flagged_leaves_the_weights_alone(monkeypatch):
    monkeypatch.setattr(neural_cleanse, "fit_model", lambda *args: pytest.fail("nothing to unlearn"))
    model = corner_model()
    nothing = np.zeros(CLASSES, bool)
    x = np.zeros((10, SIZE, SIZE, 3), np.uint8)
    repaired, metrics = NeuralCleanse().repair(
        Params(), Inspected(np.zeros(CLASSES), nothing, {}, {"masks": np.zeros((CLASSES, SIZE, SIZE)),
                                                               "patterns": np.zeros((CLASSES, SIZE, SIZE, 3))}),
        model, CleanData(x, np.zeros(10, np.int64), CLASSES), Context(seed=0, train=TrainConfig(model="gtsrb_cnn")))
    assert repaired is not model and metrics["unlearned_images"] == 0
    for before, after in zip(model.get_weights(), repaired.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_an_inspection_ranks_the_target_among_the_classes_by_score():
    from tasks.defenses.kinds import Inspection

    scores = np.array([0.5, 3.0, 1.0, 3.0, 1.0])
    inspected = Inspected(scores, scores > 2)
    assert Inspection(inspected, target=2).metrics["target_rank"] == 3  # two classes score higher; a tie shares
    assert Inspection(inspected, target=4).metrics["target_rank"] == 3
    assert Inspection(inspected, target=1).metrics | {"target_flagged": True, "n_flagged_classes": 2} == \
        Inspection(inspected, target=1).metrics and Inspection(inspected, target=1).metrics["target_rank"] == 1
