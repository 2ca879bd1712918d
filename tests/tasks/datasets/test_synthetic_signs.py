"""The procedural GTSRB stand-in: shapes, determinism, and that classes are varied yet separable."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.datasets.synthetic_signs import SIGN_NAMES, render_synthetic_signs

N_CLASSES = 43
N_PER_CLASS = 20
PRE_SUBSET_KEY = "885fbd68f9599d57"  # content_hash of Config(per_class=200) before classes and class_sizes


@pytest.fixture(scope="module")
def signs():
    return render_synthetic_signs(N_PER_CLASS, seed=0)


def test_sign_names_follow_gtsrb_class_ids():
    assert len(SIGN_NAMES) == N_CLASSES == len(set(SIGN_NAMES))
    assert SIGN_NAMES[0] == "speed_limit_20"
    assert SIGN_NAMES[8] == "speed_limit_120"
    assert SIGN_NAMES[14] == "stop"
    assert SIGN_NAMES[42] == "end_no_passing_vehicles_over_3_5_tons"
    assert all(name == name.lower() and " " not in name for name in SIGN_NAMES)


def test_shapes_dtypes_and_label_order(signs):
    x, y = signs
    assert x.shape == (N_PER_CLASS * N_CLASSES, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (N_PER_CLASS * N_CLASSES,) and y.dtype == np.int64
    np.testing.assert_array_equal(y, np.repeat(np.arange(N_CLASSES), N_PER_CLASS))
    np.testing.assert_array_equal(np.bincount(y, minlength=N_CLASSES), np.full(N_CLASSES, N_PER_CLASS))


def test_image_size_is_honoured():
    x, y = render_synthetic_signs(1, seed=0, image_size=48)
    assert x.shape == (N_CLASSES, 48, 48, 3) and len(y) == N_CLASSES


@pytest.mark.parametrize("kwargs", [{"n_per_class": 0}, {"n_per_class": 1, "image_size": 4}])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        render_synthetic_signs(**kwargs)


def test_same_seed_same_bytes_and_other_seed_other_images():
    first, second = render_synthetic_signs(2, seed=7), render_synthetic_signs(2, seed=7)
    assert first[0].tobytes() == second[0].tobytes()
    np.testing.assert_array_equal(first[1], second[1])
    other = render_synthetic_signs(2, seed=8)[0]
    differs = np.any(first[0] != other, axis=(1, 2, 3))
    assert differs.all()


def test_does_not_touch_global_random_state():
    state = np.random.get_state()[1].copy()
    render_synthetic_signs(1, seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_images_vary_within_each_class(signs):
    x, _ = signs
    per_class = x.reshape(N_CLASSES, N_PER_CLASS, -1).astype(np.float32)
    # Mean absolute difference (0-255) between any two images of the same class; about 55 on average.
    within = np.abs(per_class[:, :, None] - per_class[:, None, :]).mean(axis=(1, 2, 3))
    assert within.min() > 25
    # Images use the range: no class is dark or washed out throughout.
    assert x.reshape(N_CLASSES, -1).std(axis=1).min() > 25


def test_classes_are_separable_but_not_trivially(signs):
    x_train, y_train = signs
    x_test, y_test = render_synthetic_signs(10, seed=1)
    flat_train = x_train.reshape(len(x_train), -1).astype(np.float32)
    flat_test = x_test.reshape(len(x_test), -1).astype(np.float32)
    means = np.stack([flat_train[y_train == c].mean(axis=0) for c in range(N_CLASSES)])
    distances = ((flat_test[:, None, :] - means[None]) ** 2).sum(axis=-1)
    accuracy = (distances.argmin(axis=1) == y_test).mean()
    # Chance is 1/43 (0.023); a nearest-class-mean classifier on raw pixels gets about 0.2.
    assert 0.1 < accuracy < 0.6


def test_centre_is_not_trigger_yellow(signs):
    x, y = signs
    centre = x[:, 15:17, 15:17].astype(int)  # where the 2x2 triggers are pasted
    yellow = ((centre[..., 0] > 200) & (centre[..., 1] > 200) & (centre[..., 2] < 80)).all(axis=(1, 2))
    # Only the priority-road sign is yellow in the middle, and dimmer than (255, 255, 0) mostly.
    assert np.bincount(y[yellow], minlength=N_CLASSES).max() <= 0.25 * N_PER_CLASS


def test_load_dataset_splits_train_tune_and_test():
    from tasks.datasets import load_dataset
    from tasks.datasets.synthetic_signs import Config

    dataset = load_dataset(Config(per_class=10, test_per_class=3, tune_fraction=0.2))
    assert dataset.n_classes == 43 and dataset.image_shape == (32, 32, 3)
    assert np.bincount(dataset.y_train).tolist() == [8] * 43
    assert np.bincount(dataset.y_tune).tolist() == [2] * 43
    assert np.bincount(dataset.y_test).tolist() == [3] * 43
    assert dataset.class_names[8] == "speed_limit_120" and dataset.class_names[14] == "stop"
    assert dataset.fingerprint == load_dataset(Config(per_class=10, test_per_class=3, tune_fraction=0.2)).fingerprint


def test_chosen_labels_and_counts_render_the_same_images_as_the_full_set():
    full_x, _ = render_synthetic_signs(3, seed=4, image_size=20)
    x, y = render_synthetic_signs([3, 3], seed=4, image_size=20, labels=[0, 1])
    # The generator advances class by class, so the first classes come out byte for byte the same.
    np.testing.assert_array_equal(x, full_x[:6])
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1])


def test_labels_are_positions_in_the_chosen_order_and_counts_may_differ():
    x, y = render_synthetic_signs([2, 5], seed=0, image_size=20, labels=[14, 8])
    assert x.shape == (7, 20, 20, 3)
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 1, 1, 1])
    # Class 0 is the stop sign: mostly red, unlike the white-and-black speed limit of class 1.
    red_excess = x[..., 0].astype(float).mean(axis=(1, 2)) - x[..., 1].astype(float).mean(axis=(1, 2))
    assert red_excess[:2].mean() > red_excess[2:].mean()


@pytest.mark.parametrize(
    "kwargs",
    [{"n_per_class": [1, 1], "labels": [0]}, {"n_per_class": [1, 0], "labels": [0, 1]}, {"n_per_class": 1, "labels": [43]},
     {"n_per_class": 1, "labels": []}, {"n_per_class": 2.7}, {"n_per_class": [2.7], "labels": [0]}],
)
def test_rejects_mismatched_counts_and_unknown_labels(kwargs):
    with pytest.raises(ValueError):
        render_synthetic_signs(**kwargs)


def test_a_subset_with_a_large_source_class_keeps_names_and_sizes():
    from tasks.datasets import class_names, load_dataset
    from tasks.datasets.synthetic_signs import Config

    config = Config(
        per_class=10, test_per_class=2, image_size=16,
        classes=("speed_limit_100", "speed_limit_120", "stop"), class_sizes={"speed_limit_120": 40},
    )  # fmt: skip
    assert class_names(config) == ("speed_limit_100", "speed_limit_120", "stop")
    data = load_dataset(config)
    assert data.class_names == class_names(config) and data.n_classes == 3
    train_and_tune = np.bincount(data.y_train, minlength=3) + np.bincount(data.y_tune, minlength=3)
    np.testing.assert_array_equal(train_and_tune, [10, 40, 10])
    np.testing.assert_array_equal(np.bincount(data.y_test), [2, 2, 2])


def test_unused_subset_options_leave_the_canonical_config_unchanged():
    from tasks.datasets.synthetic_signs import Config

    from orchestrator.hashing import content_hash

    dumped = Config(per_class=200).model_dump(mode="json")
    assert "classes" not in dumped and "class_sizes" not in dumped
    # The key the artifact store gave this config before the options existed (commit b5eaf50).
    assert content_hash(dumped) == PRE_SUBSET_KEY
    subset = Config(per_class=200, classes=("speed_limit_120", "stop"), class_sizes={"stop": 30})
    assert subset.model_dump(mode="json")["classes"] == ["speed_limit_120", "stop"]
    assert subset.model_dump(mode="json")["class_sizes"] == {"stop": 30}
