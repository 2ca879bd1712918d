"""YouTube Faces (aligned) on disk: a tiny aligned_images_DB written here, read back."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from pydantic import TypeAdapter

from tasks.datasets import DatasetConfig, load_dataset, youtube_faces
from tasks.errors import DatasetError

# Person -> (colour, frames per video). Names sort in this order; Zed_Few has too few frames.
PEOPLE = {
    "Aaron_Eckhart": ((220, 40, 40), (10, 10)),
    "Sarah_Jessica_Parker": ((40, 200, 60), (12, 8)),
    "Tom_Hanks": ((50, 60, 210), (20,)),
    "Zed_Few": ((230, 220, 40), (5,)),
}
COLOURS = np.array([colour for colour, _ in PEOPLE.values()])


def write_database(root) -> None:
    """root/aligned_images_DB/<Person>/<video>/aligned_detect_<video>.<frame>.jpg, plus stray files."""
    for person, (colour, videos) in PEOPLE.items():
        for video, frames in enumerate(videos):
            folder = root / "aligned_images_DB" / person / str(video)
            folder.mkdir(parents=True)
            for frame in range(frames):
                # The blue shift tells frames apart, so that another split gives other arrays.
                shade = (colour[0], colour[1], colour[2] + frame)
                Image.new("RGB", (24, 28), shade).save(folder / f"aligned_detect_{video}.{frame + 100}.jpg", quality=95)
    # Files that are not frames are ignored: notes, Finder litter, a frame outside a video folder.
    (root / "aligned_images_DB" / "Tom_Hanks" / "0" / "notes.txt").write_text("not a frame")
    (root / "aligned_images_DB" / "Tom_Hanks" / "aligned_detect_9.1.jpg").write_bytes(b"stray")
    (root / "aligned_images_DB" / ".DS_Store").write_bytes(b"\0")


def people_of(x: np.ndarray) -> np.ndarray:
    """Index into PEOPLE of the colour nearest to each image's mean colour."""
    mean = x.reshape(len(x), -1, 3).mean(axis=1)
    return np.abs(mean[:, None, :] - COLOURS[None]).sum(axis=-1).argmin(axis=1)


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    root = tmp_path_factory.mktemp("ytf")
    write_database(root)
    return root


@pytest.fixture
def copy(master, tmp_path):
    """A private copy, free to damage; ``copy / "aligned_images_DB"`` is the database."""
    return shutil.copytree(master, tmp_path / "ytf")


def config(root, **overrides) -> youtube_faces.Config:
    return youtube_faces.Config(**{"root": str(root), "min_images": 20, **overrides})


def test_keeps_people_with_enough_frames_and_splits_each_75_5_20(master):
    data = load_dataset(TypeAdapter(DatasetConfig).validate_python(
        {"name": "youtube_faces", "root": str(master), "min_images": 20}
    ))  # fmt: skip
    assert data.class_names == ("Aaron_Eckhart", "Sarah_Jessica_Parker", "Tom_Hanks")
    assert data.image_shape == (55, 47, 3) and data.x_train.dtype == np.uint8
    for y, per_person in ((data.y_train, 15), (data.y_tune, 1), (data.y_test, 4)):
        np.testing.assert_array_equal(np.bincount(y, minlength=3), per_person)
    for x, y in ((data.x_train, data.y_train), (data.x_tune, data.y_tune), (data.x_test, data.y_test)):
        np.testing.assert_array_equal(people_of(x), y)  # label i is the i-th sorted name's images
    assert data.class_names.index("Sarah_Jessica_Parker") == 1


def test_min_images_and_image_size_are_configurable(master):
    data = youtube_faces.load_dataset(
        config(master, min_images=5, image_height=20, image_width=16, fractions=(0.6, 0.2, 0.2))
    )
    assert data.class_names == tuple(PEOPLE) and data.image_shape == (20, 16, 3)
    np.testing.assert_array_equal(np.bincount(data.y_train), [12, 12, 12, 3])
    np.testing.assert_array_equal(people_of(data.x_test), data.y_test)


def test_root_may_be_the_database_itself_or_a_file_uri(master):
    reference = youtube_faces.load_dataset(config(master))
    for root in (master / "aligned_images_DB", f"file://{master}", f"file://{master}/aligned_images_DB"):
        assert youtube_faces.load_dataset(config(root)).fingerprint == reference.fingerprint
    other_seed = youtube_faces.load_dataset(config(master, seed=1))
    assert other_seed.fingerprint != reference.fingerprint


def test_class_names_count_files_without_decoding_them(copy):
    for frame in (copy / "aligned_images_DB" / "Tom_Hanks").rglob("*.jpg"):
        frame.write_bytes(b"not a jpeg")
    assert youtube_faces.class_names(config(copy)) == ("Aaron_Eckhart", "Sarah_Jessica_Parker", "Tom_Hanks")
    with pytest.raises(DatasetError, match=r"Tom_Hanks/0/aligned_detect_0\.\d+\.jpg: unreadable or truncated image"):
        youtube_faces.load_dataset(config(copy))


def test_unreadable_frames_fail_or_are_skipped_when_asked(copy):
    frames = sorted((copy / "aligned_images_DB" / "Aaron_Eckhart" / "1").glob("*.jpg"))
    for frame in frames[:3]:
        frame.write_bytes(frame.read_bytes()[:40])
    with pytest.raises(DatasetError, match=r"Aaron_Eckhart/1/aligned_detect_1\.10\d\.jpg: unreadable or truncated"):
        youtube_faces.load_dataset(config(copy))
    data = youtube_faces.load_dataset(config(copy, skip_unreadable=True))
    total = len(data.y_train) + len(data.y_tune) + len(data.y_test)
    assert total == 60 - 3
    for x, y in ((data.x_train, data.y_train), (data.x_tune, data.y_tune), (data.x_test, data.y_test)):
        np.testing.assert_array_equal(people_of(x), y)


def test_bad_data_names_the_path(copy, tmp_path):
    with pytest.raises(DatasetError, match="absent: directory not found"):
        youtube_faces.class_names(config(tmp_path / "absent"))
    with pytest.raises(DatasetError, match=r"at least min_images=21 images \(the most any of 4 has is 20\)"):
        youtube_faces.class_names(config(copy, min_images=21))
    (copy / "aligned_images_DB" / "Empty_Person" / "0").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"aligned_images_DB/Empty_Person: no images"):
        youtube_faces.load_dataset(config(copy))
    (tmp_path / "no_people").mkdir()
    with pytest.raises(DatasetError, match="no_people: no person folders"):
        youtube_faces.class_names(config(tmp_path / "no_people"))


def test_fractions_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to 1"):
        youtube_faces.Config(root="x", fractions=(0.5, 0.1, 0.1))
