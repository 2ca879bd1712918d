"""STRIP on a planted model: a corner trigger decides its prediction whatever image lies under it,
clean inputs get probabilities spread over the classes. Each test fails on one of ART 1.20.1's
mistakes (SPEC §2) or on a slip in the formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import tasks.runtime  # noqa: F401
import keras

from tasks.datasets import ImageDataset
from tasks.defenses.strip import Strip, StripParams, overlay_entropy
from tasks.evaluate import evaluate_model, score_auroc
from tasks.methods import CleanData, Context
from tasks.poison import PoisonedDataset
from tasks.train import TrainConfig

SIZE, CLASSES, TARGET = 8, 5, 0  # target class 0: a rejection counted as class 0 would look like a success


def corner_model(seed: int = 0) -> keras.Model:
    """Softmax over a linear map of the pixels: the 2x2 top-left corner at 255 gives the target a
    logit of +40 (and at 200, the most two clean images add up to, -48), so a triggered image is
    classified as the target with probability ~1 whatever is added to it; elsewhere small random
    weights spread the probabilities over the classes."""
    rng = np.random.default_rng(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(CLASSES, activation="softmax")
    outputs = dense(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    kernel = rng.normal(0, 0.05, size=(SIZE * SIZE * 3, CLASSES))
    corner = np.zeros((SIZE, SIZE, 3), dtype=bool)
    corner[:2, :2] = True
    kernel[corner.ravel()] = 0
    kernel[corner.ravel(), TARGET] = 400 / 12  # 400 x the corner's mean (1.0 at 255)...
    bias = np.zeros(CLASSES)
    bias[TARGET] = -360  # ...minus 360
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs)


def clean_images(n: int, seed: int) -> np.ndarray:
    """Dim random images (every value <= 100, so no sum of two reaches the trigger's 255 corner)."""
    return np.random.default_rng(seed).integers(0, 101, size=(n, SIZE, SIZE, 3), dtype=np.uint8)


def triggered(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[:, :2, :2] = 255
    return x


def calibrated(n_tune: int = 300, **params):
    strip, model = Strip(), corner_model()
    params = StripParams(**params)
    tune = clean_images(n_tune, seed=1)
    data = CleanData(tune, np.zeros(n_tune, dtype=np.int64), CLASSES)
    return strip, model, params, strip.calibrate(params, model, data, Context(seed=0, train=TrainConfig(model="gtsrb_cnn")))


def test_the_entropy_is_over_classes_so_a_triggered_input_is_rejected_and_a_clean_one_served():
    strip, model, params, calibration = calibrated()
    clean, trojaned = clean_images(50, seed=2), triggered(clean_images(50, seed=3))
    overlays = calibration.arrays["overlays"]
    # Entropy over the classes of each copy: a trojaned input's copies are all the target, ~0 nats;
    # a clean input's are spread, well above. (ART's entropy over the copies ranks them the other way.)
    assert overlay_entropy(model, trojaned, overlays).max() < 0.01
    assert overlay_entropy(model, clean, overlays).min() > 0.5 * np.log(CLASSES)
    accepted_clean, suspicion_clean = strip.screen(params, calibration, model, clean, None)
    accepted_trojaned, suspicion_trojaned = strip.screen(params, calibration, model, trojaned, None)
    assert not accepted_trojaned.any() and accepted_clean.mean() >= 0.85
    assert score_auroc(suspicion_trojaned, suspicion_clean) == 1.0
    np.testing.assert_array_equal(strip.accept(params, calibration, model, clean, None), accepted_clean)


def test_a_hand_computed_mean_entropy_and_the_superimposition_clip():
    model = corner_model()
    x, overlays = clean_images(3, seed=4), clean_images(4, seed=5)
    overlays[0] = 200  # 200 + up to 100 must clip at 255, not wrap round
    expected = []
    for image in x:
        copies = np.clip(image[None].astype(int) + overlays, 0, 255).astype(np.uint8)
        p = np.asarray(model.predict_on_batch(copies), dtype=np.float64)
        expected.append(np.mean(stats.entropy(p, axis=1)))  # over the classes of each copy
    np.testing.assert_allclose(overlay_entropy(model, x, overlays), expected, rtol=1e-6)


def test_the_threshold_is_the_frr_quantile_of_clean_calibration_images_disjoint_from_the_overlays():
    strip, model, params, calibration = calibrated(n_tune=300, frr=0.1, n_overlays=40)
    assert calibration.metrics["overlays_used"] == 40 and calibration.metrics["calibration_n"] == 260
    tune = clean_images(300, seed=1)
    overlays = calibration.arrays["overlays"]
    as_rows = {image.tobytes() for image in overlays}
    rest = np.array([image for image in tune if image.tobytes() not in as_rows])
    assert len(rest) == 260  # the overlays are 40 distinct tuning images; the other 260 calibrate
    threshold = calibration.metrics["threshold"]
    assert threshold == pytest.approx(np.quantile(overlay_entropy(model, rest, overlays), 0.1))
    assert np.mean(overlay_entropy(model, rest, overlays) < threshold) == pytest.approx(0.1, abs=0.01)
    # Drawn from the trial's seed: the same seed, the same overlays.
    again = Strip().calibrate(params, model, CleanData(tune, np.zeros(300, dtype=np.int64), CLASSES),
                              Context(seed=0, train=TrainConfig(model="gtsrb_cnn")))
    np.testing.assert_array_equal(again.arrays["overlays"], overlays)
    # A tuning set smaller than twice n_overlays gives half of itself to the overlays.
    assert calibrated(n_tune=50)[3].metrics["overlays_used"] == 25


def test_a_rejected_input_is_served_as_nothing_not_as_class_zero():
    strip, model, params, calibration = calibrated()
    x_test = clean_images(40, seed=6)
    y_test = np.argmax(model.predict_on_batch(x_test), axis=1)  # the model is right on every clean input
    dataset = ImageDataset(x_test[:4], y_test[:4], x_test[:4], y_test[:4], x_test, y_test,
                           tuple(f"c{k}" for k in range(CLASSES)))
    trojaned = triggered(clean_images(30, seed=7))
    nothing = np.zeros(0, dtype=np.int64)
    poisoned = PoisonedDataset(source=None, target=TARGET, index=nothing, x_changed=x_test[:0], y_changed=nothing,
                               is_cover=nothing.astype(bool), x_test_triggered=trojaned,
                               y_test_triggered=np.full(30, 1, dtype=np.int64))

    def screen(x):
        return strip.screen(params, calibration, model, x, None)

    metrics = evaluate_model(model, dataset, poisoned, batch_size=16, screen=screen)
    assert metrics["asr"] == 1.0  # the model itself is backdoored...
    assert metrics["served_asr"] == 0.0 and metrics["input_tpr"] == 1.0  # ...and nothing triggered is served
    assert metrics["served_ra"] == 0.0  # nor counted as its true class
    assert metrics["clean_acc"] == 1.0 and metrics["served_clean_acc"] == pytest.approx(1 - metrics["input_frr"])
    assert metrics["input_auroc"] == 1.0


def test_score_auroc_counts_ties_as_halves():
    assert score_auroc([3, 4], [1, 2]) == 1.0 and score_auroc([1, 2], [3, 4]) == 0.0
    assert score_auroc([1.0], [1.0]) == 0.5 and score_auroc([2, 1], [1, 0]) == pytest.approx(7 / 8)
    assert np.isnan(score_auroc([], [1.0]))
