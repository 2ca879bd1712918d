"""YouTube Faces (aligned), read from disk: one class per person with enough frames.

Layout (``aligned_images_DB.tar.gz`` of Wolf et al., 2011: 1,595 people, 3,425 videos)::

    aligned_images_DB/Aaron_Eckhart/0/aligned_detect_0.555.jpg
    aligned_images_DB/<Person>/<video>/aligned_detect_<video>.<frame>.jpg

``root`` is either ``aligned_images_DB`` itself or the folder holding it. As in the thesis (§3.1),
only people with at least ``min_images`` frames (all videos together) are kept: 1,283 people at
the default 100. Each person's frames are split 75:5:20 into train, tune and test. The split is by
frame, not by video, so frames of one video can land in both train and test: test accuracy
measures recognition of new frames of known videos, not of new videos.
"""

from __future__ import annotations

import posixpath
from typing import Literal

import pyarrow.fs as pafs
from pydantic import Field

from tasks.datasets.identity_folders import Fractions, find_person_images, load_people, select_people
from tasks.datasets.image_dataset import ImageDataset
from tasks.datasets.image_files import open_root
from tasks.datasets.on_disk import OnDiskConfig

FOLDER = "aligned_images_DB"
LAYOUT = f"{FOLDER}/<Person>/<video>/aligned_detect_*.jpg"


# Aligned face crops: the sunglasses triggers are meant for them (tasks.triggers.triggers_for).
FACES = True

class Config(OnDiskConfig):
    """The ``youtube_faces`` dataset on disk.

    Parameters
    ----------
    root : str
        Local path or pyarrow filesystem URI (``s3://bucket/ytf``) of ``aligned_images_DB`` or of
        the folder holding it.
    min_images : int, default=100
        Keep people with at least this many frames.
    image_height, image_width : int, default=55, 47
        Output size in pixels; the default is DeepID's input.
    fractions : (float, float, float), default=(0.75, 0.05, 0.20)
        Train, tune and test shares of every person's frames.
    seed : int, default=0
        Seed of the split.
    skip_unreadable : bool, default=False
        Drop unreadable or truncated frames (counted in the log) instead of failing.
    root_listing : str or None
        Digest of the root's file names and sizes, filled in by the search-space loader; see
        :class:`~tasks.datasets.on_disk.OnDiskConfig`.
    """

    name: Literal["youtube_faces"] = "youtube_faces"
    root: str = Field(min_length=1)
    min_images: int = Field(100, ge=1)
    image_height: int = Field(55, ge=8, le=512)
    image_width: int = Field(47, ge=8, le=512)
    fractions: Fractions = (0.75, 0.05, 0.20)
    seed: int = Field(0, ge=0)
    skip_unreadable: bool = False


def _is_frame(name: str) -> bool:
    return name.startswith("aligned_detect_") and name.lower().endswith(".jpg")


def _people(config: Config):
    filesystem, path = open_root(config.root)
    nested = posixpath.join(path, FOLDER)
    if filesystem.get_file_info(nested).type == pafs.FileType.Directory:
        path = nested
    people = find_person_images(filesystem, path, depth=2, is_image=_is_frame, layout=LAYOUT)
    return filesystem, select_people(people, config.min_images, path)


def class_names(config: Config) -> tuple[str, ...]:
    """Sorted names of the people with at least ``min_images`` frames; lists folders, decodes nothing."""
    return tuple(_people(config)[1])


def load_dataset(config: Config) -> ImageDataset:
    """Stage ``dataset`` for ``youtube_faces``: decode the selected people's frames, split per person.

    Returns
    -------
    ImageDataset
        x of uint8, shape (n, image_height, image_width, 3); y indexes :func:`class_names`.

    Raises
    ------
    DatasetError
        Naming the path: a missing folder, a person folder without frames, an unreadable frame
        (unless ``skip_unreadable``), or nobody with ``min_images`` frames.
    """
    filesystem, people = _people(config)
    size = (config.image_height, config.image_width)
    return load_people(filesystem, people, size, config.fractions, config.seed, config.skip_unreadable)
