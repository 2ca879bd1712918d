"""scikit-learn's digits as a 32x32 RGB dataset: shapes, upscaling, stratified splits."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from tasks.datasets import class_names, load_dataset
from tasks.datasets.digits import Config, upscale_digits


def test_upscaling_keeps_the_grey_levels_and_copies_them_to_rgb():
    images = np.zeros((2, 8, 8))
    images[0] = 16  # full ink everywhere
    images[1, 3:5, 3:5] = 16  # a 2x2 blob in the middle
    x = upscale_digits(images, 32)
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.uint8
    assert (x[0] == 255).all()
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    blob = x[1, ..., 0]
    assert blob[15, 15] == 255 and blob[0, 0] == 0 and blob[31, 31] == 0
    # Bilinear: the blob's edge is a ramp, not a 4x4 block step.
    assert 0 < blob[15, 10] < 255


def test_dataset_is_stratified_70_10_20_and_deterministic():
    config = Config()
    dataset = load_dataset(config)
    total = load_digits().target
    assert dataset.class_names == class_names(config) == tuple("0123456789")
    assert len(dataset.y_train) + len(dataset.y_tune) + len(dataset.y_test) == len(total) == 1797
    assert dataset.image_shape == (32, 32, 3)
    for y, share in ((dataset.y_train, 0.7), (dataset.y_tune, 0.1), (dataset.y_test, 0.2)):
        per_class = np.bincount(y, minlength=10) / np.bincount(total, minlength=10)
        assert np.allclose(per_class, share, atol=0.02), per_class
    assert load_dataset(config).fingerprint == dataset.fingerprint
    assert load_dataset(Config(seed=1)).fingerprint != dataset.fingerprint


def test_images_and_labels_are_the_source_digits():
    digits = load_digits()
    dataset = load_dataset(Config(image_size=8, fractions=(1.0, 0.0, 0.0)))
    # At 8x8 nothing is interpolated: the images are the source grey levels scaled to 0..255.
    source = np.rint(digits.images * 255 / 16).astype(np.uint8)

    def pairs(images, labels):
        return sorted(zip((image.tobytes() for image in images), labels.tolist()))

    assert pairs(dataset.x_train[..., 0], dataset.y_train) == pairs(source, digits.target)


def test_a_class_subset_keeps_those_digits_in_their_order_and_leaves_the_full_keys_alone():
    digits = load_digits()
    subset = Config(classes=(5, 0, 3), fractions=(1.0, 0.0, 0.0))
    dataset = load_dataset(subset)
    assert dataset.class_names == class_names(subset) == ("5", "0", "3")
    counts = np.bincount(digits.target, minlength=10)
    np.testing.assert_array_equal(np.bincount(dataset.y_train, minlength=3), counts[[5, 0, 3]])
    # Class 1 of the subset holds exactly the source images of the digit 0.
    zeros = np.rint(digits.images[digits.target == 0] * 255 / 16).astype(np.uint8)
    eight = load_dataset(Config(classes=(5, 0, 3), image_size=8, fractions=(1.0, 0.0, 0.0)))
    assert sorted(image.tobytes() for image in eight.x_train[eight.y_train == 1][..., 0]) == sorted(
        image.tobytes() for image in zeros
    )
    # Unused, the option is not part of the config's JSON, so older artifact keys stay valid.
    assert "classes" not in Config().model_dump() and Config(classes=(1, "2")).model_dump()["classes"] == ("1", "2")


def test_a_class_subset_names_a_bad_digit():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown digit '10'; the classes are 0, 1"):
        Config(classes=(0, 10))
    with pytest.raises(ValidationError, match="digit '3' is listed more than once"):
        Config(classes=(3, 1, 3))
