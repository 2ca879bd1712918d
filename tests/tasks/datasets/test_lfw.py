"""LFW on disk: tiny <Person>/<Person>_NNNN.jpg folders written here, read back."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from pydantic import TypeAdapter

from tasks.datasets import DatasetConfig, class_names, lfw, load_dataset
from tasks.errors import DatasetError

# Person -> (colour, images). Names sort in this order; Zico has too few images at min_images=10.
PEOPLE = {
    "Arnold_Schwarzenegger": ((210, 50, 50), 10),
    "Donald_Rumsfeld": ((50, 190, 70), 10),
    "George_W_Bush": ((40, 60, 200), 12),
    "Zico": ((220, 210, 40), 3),
}
COLOURS = np.array([colour for colour, _ in PEOPLE.values()])
SELECTED = ("Arnold_Schwarzenegger", "Donald_Rumsfeld", "George_W_Bush")


def write_people(folder) -> None:
    """folder/<Person>/<Person>_NNNN.jpg, plus the text files LFW ships beside the person folders."""
    for person, (colour, count) in PEOPLE.items():
        (folder / person).mkdir(parents=True)
        for number in range(1, count + 1):
            # The blue shift tells images apart, so that another split gives other arrays.
            shade = (colour[0], colour[1], colour[2] + number)
            Image.new("RGB", (25, 25), shade).save(folder / person / f"{person}_{number:04d}.jpg", quality=95)
    (folder / "lfw-names.txt").write_text("\n".join(f"{p}\t{n}" for p, (_, n) in PEOPLE.items()))
    (folder / "George_W_Bush" / "Thumbs.db").write_bytes(b"\0")


def people_of(x: np.ndarray) -> np.ndarray:
    """Index into PEOPLE of the colour nearest to each image's mean colour."""
    mean = x.reshape(len(x), -1, 3).mean(axis=1)
    return np.abs(mean[:, None, :] - COLOURS[None]).sum(axis=-1).argmin(axis=1)


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """A folder holding the person folders directly."""
    folder = tmp_path_factory.mktemp("lfw")
    write_people(folder)
    return folder


def config(root, **overrides) -> lfw.Config:
    return lfw.Config(**{"root": str(root), "min_images": 10, "image_size": 16, **overrides})


def test_keeps_people_with_enough_images_and_splits_each_70_10_20(people):
    data = load_dataset(TypeAdapter(DatasetConfig).validate_python(
        {"name": "lfw", "root": str(people), "min_images": 10, "image_size": 16}
    ))  # fmt: skip
    assert data.class_names == SELECTED and data.image_shape == (16, 16, 3) and data.x_train.dtype == np.uint8
    # 10 images: 7/1/2; 12 images: cuts at rint(8.4), rint(9.6) -> 8/2/2.
    np.testing.assert_array_equal(np.bincount(data.y_train), [7, 7, 8])
    np.testing.assert_array_equal(np.bincount(data.y_tune), [1, 1, 2])
    np.testing.assert_array_equal(np.bincount(data.y_test), [2, 2, 2])
    for x, y in ((data.x_train, data.y_train), (data.x_tune, data.y_tune), (data.x_test, data.y_test)):
        np.testing.assert_array_equal(people_of(x), y)  # label i is the i-th sorted name's images
    assert class_names(config(people)) == SELECTED


def test_min_images_filters_people(people):
    assert lfw.class_names(config(people, min_images=11)) == ("George_W_Bush",)
    assert lfw.class_names(config(people, min_images=1)) == tuple(PEOPLE)
    data = lfw.load_dataset(config(people, min_images=3, fractions=(1.0, 0.0, 0.0)))
    np.testing.assert_array_equal(np.bincount(data.y_train), [10, 10, 12, 3])
    assert len(data.y_tune) == len(data.y_test) == 0


@pytest.mark.parametrize("nesting", ["lfw", "lfw_funneled", "lfw-deepfunneled", "lfw-deepfunneled/lfw-deepfunneled"])
def test_root_may_be_the_folder_an_archive_was_extracted_into(people, tmp_path, nesting):
    shutil.copytree(people, tmp_path / nesting)
    assert lfw.load_dataset(config(tmp_path)).fingerprint == lfw.load_dataset(config(people)).fingerprint


def test_file_uri_and_seed(people):
    reference = lfw.load_dataset(config(people))
    assert lfw.load_dataset(config(f"file://{people}")).fingerprint == reference.fingerprint
    assert lfw.load_dataset(config(people, seed=3)).fingerprint != reference.fingerprint


def test_unreadable_images_fail_or_are_skipped_when_asked(people, tmp_path):
    folder = shutil.copytree(people, tmp_path / "lfw")
    bad = folder / "Donald_Rumsfeld" / "Donald_Rumsfeld_0004.jpg"
    bad.write_bytes(bad.read_bytes()[:50])
    with pytest.raises(DatasetError, match=r"Donald_Rumsfeld/Donald_Rumsfeld_0004.jpg: unreadable or truncated"):
        lfw.load_dataset(config(tmp_path))
    data = lfw.load_dataset(config(tmp_path, skip_unreadable=True))
    assert len(data.y_train) + len(data.y_tune) + len(data.y_test) == 31
    assert (np.concatenate([data.y_train, data.y_tune, data.y_test]) == 1).sum() == 9


def test_bad_data_names_the_path(people, tmp_path):
    with pytest.raises(DatasetError, match="absent: directory not found"):
        lfw.load_dataset(config(tmp_path / "absent"))
    with pytest.raises(DatasetError, match=r"at least min_images=13 images \(the most any of 4 has is 12\)"):
        lfw.class_names(config(people, min_images=13))
    shutil.copytree(people, tmp_path / "lfw")
    shutil.copytree(people, tmp_path / "lfw-deepfunneled")
    with pytest.raises(DatasetError, match="holds lfw and lfw-deepfunneled: set root to the one to use"):
        lfw.class_names(config(tmp_path))
    (tmp_path / "lfw" / "Empty_Person").mkdir()
    with pytest.raises(DatasetError, match="lfw/Empty_Person: no images"):
        lfw.class_names(config(tmp_path / "lfw"))
