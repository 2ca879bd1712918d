"""Labeled Faces in the Wild (LFW, or its funneled / deep-funneled alignments), read from disk.

Layout (``lfw.tgz``, ``lfw-funneled.tgz``, ``lfw-deepfunneled.tgz`` of Huang et al., 2007)::

    <people>/Aaron_Eckhart/Aaron_Eckhart_0001.jpg
    <people>/<Person>/<Person>_NNNN.jpg

``root`` is the folder holding the person folders, or a folder above it: while ``root`` holds a
folder named ``lfw``, ``lfw_funneled`` or ``lfw-deepfunneled``, that folder is taken instead (so
the folder an archive was extracted into works, as does Kaggle's doubled
``lfw-deepfunneled/lfw-deepfunneled``). Two of them side by side are ambiguous and an error. As
in the thesis (§3.1), only people with at least ``min_images`` images are kept (the thesis reports
57 people and 2,923 images at the default 20), split 70:10:20 into train, tune and test per person.
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
from tasks.errors import DatasetError

FOLDERS = ("lfw", "lfw_funneled", "lfw-deepfunneled")
LAYOUT = "<Person>/<Person>_NNNN.jpg"
_MAX_NESTING = 3


# Aligned face crops: the sunglasses triggers are meant for them (tasks.triggers.triggers_for).
FACES = True

class Config(OnDiskConfig):
    """The ``lfw`` dataset on disk (any of LFW's alignments: same layout).

    Parameters
    ----------
    root : str
        Local path or pyarrow filesystem URI of the folder holding the person folders, or of a
        folder holding ``lfw/``, ``lfw_funneled/`` or ``lfw-deepfunneled/``.
    min_images : int, default=20
        Keep people with at least this many images.
    image_size : int, default=224
        Output height and width in pixels (LFW images are 250x250); the default is VGG16's input.
    fractions : (float, float, float), default=(0.70, 0.10, 0.20)
        Train, tune and test shares of every person's images.
    seed : int, default=0
        Seed of the split.
    skip_unreadable : bool, default=False
        Drop unreadable or truncated images (counted in the log) instead of failing.
    root_listing : str or None
        Digest of the root's file names and sizes, filled in by the search-space loader; see
        :class:`~tasks.datasets.on_disk.OnDiskConfig`.
    """

    name: Literal["lfw"] = "lfw"
    root: str = Field(min_length=1)
    min_images: int = Field(20, ge=1)
    image_size: int = Field(224, ge=8, le=512)
    fractions: Fractions = (0.70, 0.10, 0.20)
    seed: int = Field(0, ge=0)
    skip_unreadable: bool = False


def _is_image(name: str) -> bool:
    return name.lower().endswith((".jpg", ".jpeg"))


def _people_folder(filesystem: pafs.FileSystem, path: str) -> str:
    """``path``, or the ``lfw*`` folder below it (repeatedly), that holds the person folders."""
    for _ in range(_MAX_NESTING):
        found = [
            name
            for name in FOLDERS
            if filesystem.get_file_info(posixpath.join(path, name)).type == pafs.FileType.Directory
        ]
        if len(found) > 1:
            raise DatasetError(path, None, f"holds {' and '.join(found)}: set root to the one to use")
        if not found:
            return path
        path = posixpath.join(path, found[0])
    return path


def _people(config: Config):
    filesystem, path = open_root(config.root)
    path = _people_folder(filesystem, path)
    people = find_person_images(filesystem, path, depth=1, is_image=_is_image, layout=LAYOUT)
    return filesystem, select_people(people, config.min_images, path)


def class_names(config: Config) -> tuple[str, ...]:
    """Sorted names of the people with at least ``min_images`` images; lists folders, decodes nothing."""
    return tuple(_people(config)[1])


def load_dataset(config: Config) -> ImageDataset:
    """Stage ``dataset`` for ``lfw``: decode the selected people's images, split per person.

    Returns
    -------
    ImageDataset
        x of uint8, shape (n, image_size, image_size, 3); y indexes :func:`class_names`.

    Raises
    ------
    DatasetError
        Naming the path: a missing folder, a person folder without images, an unreadable image
        (unless ``skip_unreadable``), or nobody with ``min_images`` images.
    """
    filesystem, people = _people(config)
    size = (config.image_size, config.image_size)
    return load_people(filesystem, people, size, config.fractions, config.seed, config.skip_unreadable)
