"""The procedural face stand-in: shapes, determinism, alignment, per-person splits."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.datasets import class_names, load_dataset
from tasks.datasets.synthetic_faces import ALIGNED_EYES, Config, render_synthetic_faces


@pytest.fixture(scope="module")
def faces():
    return render_synthetic_faces(6, 8, seed=0)


def test_shapes_dtypes_and_label_order(faces):
    x, y = faces
    assert x.shape == (48, 55, 47, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, np.repeat(np.arange(6), 8))


def test_same_seed_same_bytes_other_seed_other_faces(faces):
    again = render_synthetic_faces(6, 8, seed=0)
    assert faces[0].tobytes() == again[0].tobytes()
    other = render_synthetic_faces(6, 8, seed=1)
    assert np.abs(faces[0].astype(int) - other[0]).mean() > 10


def test_adding_people_keeps_the_others_images(faces):
    x, _ = faces
    more_people, _ = render_synthetic_faces(7, 8, seed=0)
    np.testing.assert_array_equal(more_people[:48], x)


def test_renders_of_one_person_vary_but_resemble_each_other(faces):
    x, y = faces
    assert len({image.tobytes() for image in x}) == len(x), "every render is jittered"
    # RMS pixel distance between face regions (backgrounds are random per image, so left out).
    face = x[:, 12:50, 8:39].reshape(len(x), -1).astype(np.float64)
    distance = np.sqrt(((face[:, None] - face[None]) ** 2).mean(axis=-1))
    same = (y[:, None] == y[None]) & ~np.eye(len(y), dtype=bool)
    assert distance[same].mean() < 0.75 * distance[y[:, None] != y[None]].mean()


def test_eyes_are_dark_pupils_at_the_aligned_positions(faces):
    x, _ = faces
    grey = x.astype(np.float64).mean(axis=-1).mean(axis=0)  # average face over every person and render
    height, width = grey.shape
    for ex, ey in ALIGNED_EYES:
        row, col = round(ey * height - 0.5), round(ex * width - 0.5)
        around = grey[max(0, row - 6) : row + 7, max(0, col - 6) : col + 7]
        # Pupil and iris darken the mean image at the eye compared with the skin around it.
        assert grey[row, col] < around.mean() - 15, (ex, ey, grey[row, col], around.mean())


def test_other_sizes_are_honoured():
    x, y = render_synthetic_faces(2, 3, seed=0, image_height=64, image_width=64)
    assert x.shape == (6, 64, 64, 3) and len(y) == 6


@pytest.mark.parametrize("kwargs", [{"n_identities": 0, "per_identity": 1}, {"n_identities": 1, "per_identity": 0},
                                    {"n_identities": 1, "per_identity": 1, "image_height": 8}])  # fmt: skip
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        render_synthetic_faces(**kwargs)


def test_dataset_splits_every_person_70_10_20():
    config = Config(n_identities=4, per_identity=20, seed=3)
    dataset = load_dataset(config)
    assert dataset.class_names == class_names(config) == ("person_00", "person_01", "person_02", "person_03")
    for y, share in ((dataset.y_train, 14), (dataset.y_tune, 2), (dataset.y_test, 4)):
        np.testing.assert_array_equal(np.bincount(y, minlength=4), np.full(4, share))
    assert dataset.image_shape == (55, 47, 3)
    assert load_dataset(config).fingerprint == dataset.fingerprint


def test_class_names_widen_with_many_people():
    assert class_names(Config(n_identities=150, per_identity=3))[-1] == "person_149"
    assert class_names(Config(n_identities=150, per_identity=3))[0] == "person_000"


def test_config_rejects_fractions_that_do_not_sum_to_one():
    with pytest.raises(ValidationError, match="sum to 1"):
        Config(fractions=(0.5, 0.1, 0.1))
