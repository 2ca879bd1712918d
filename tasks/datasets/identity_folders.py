"""Face datasets stored as one folder per person (YouTube Faces, LFW): listing, filtering, splitting.

A person is a class. People are found by one recursive listing of the dataset folder (one request
per page on object stores, where a listing per folder would be thousands), counted without
decoding anything, filtered by a minimum image count and sorted by name, so that class index i is
always the i-th name in sorted order. Only the images of the selected people are decoded, and
each split straight into its own uint8 array, so that peak memory stays near the size of the
final arrays.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from typing import Annotated

import numpy as np
import pyarrow.fs as pafs
from pydantic import AfterValidator

from tasks.datasets.image_dataset import ImageDataset
from tasks.datasets.image_files import decode_images
from tasks.datasets.splits import split_by_fractions
from tasks.errors import DatasetError

log = logging.getLogger(__name__)


def _check_fractions(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    if min(fractions) < 0 or not np.isclose(sum(fractions), 1.0) or fractions[0] == 0:
        raise ValueError(f"train, tune and test fractions must be >= 0, sum to 1 and train > 0, got {fractions}")
    return fractions


Fractions = Annotated[tuple[float, float, float], AfterValidator(_check_fractions)]
"""Shares of each person's images in (train, tune, test); non-negative, summing to 1."""


def find_person_images(
    filesystem: pafs.FileSystem, path: str, depth: int, is_image: Callable[[str], bool], layout: str
) -> dict[str, list[str]]:
    """Image paths of every person folder directly under ``path``, without reading any image.

    Parameters
    ----------
    filesystem : pyarrow FileSystem
    path : str
        Folder holding one sub-folder per person.
    depth : int
        Folder levels from a person folder down to its images: 1 for ``<Person>/<image>`` (LFW),
        2 for ``<Person>/<video>/<image>`` (YouTube Faces). Files at other depths are ignored.
    is_image : callable, str -> bool
        Whether a file's base name is one of the dataset's images.
    layout : str
        The expected layout, quoted in errors (for example ``"<Person>/<Person>_NNNN.jpg"``).

    Returns
    -------
    dict of str -> list of str
        Person name -> sorted image paths; keys in sorted order. Hidden folders (``.name``) are
        skipped.

    Raises
    ------
    DatasetError
        If ``path`` is not a directory, holds no person folder, or a person folder holds no image
        (an interrupted copy or extraction).
    """
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        raise DatasetError(path, None, "directory not found")
    prefix = path.rstrip("/") + "/"
    images: dict[str, list[str]] = {}
    for info in filesystem.get_file_info(pafs.FileSelector(path, recursive=True)):
        parts = info.path[len(prefix) :].split("/")
        if parts[0].startswith("."):
            continue
        if info.type == pafs.FileType.Directory and len(parts) == 1:
            images.setdefault(parts[0], [])
        elif info.type == pafs.FileType.File and len(parts) == depth + 1 and is_image(parts[-1]):
            images.setdefault(parts[0], []).append(info.path)
    if not images:
        raise DatasetError(path, None, f"no person folders (expected {layout})")
    for person, paths in images.items():
        if not paths:
            raise DatasetError(posixpath.join(path, person), None, f"no images (expected {layout})")
        paths.sort()
    return {person: images[person] for person in sorted(images)}


def select_people(images: dict[str, list[str]], min_images: int, path: str) -> dict[str, list[str]]:
    """The people of ``images`` with at least ``min_images`` images, in sorted order.

    Raises
    ------
    DatasetError
        Naming ``path``, if nobody has that many images.
    """
    selected = {person: paths for person, paths in sorted(images.items()) if len(paths) >= min_images}
    if not selected:
        most = max(len(paths) for paths in images.values())
        message = f"no person has at least min_images={min_images} images (the most any of {len(images)} has is {most})"
        raise DatasetError(path, None, message)
    return selected


def load_people(
    filesystem: pafs.FileSystem,
    people: dict[str, list[str]],
    size: tuple[int, int],
    fractions: tuple[float, float, float],
    seed: int,
    skip_unreadable: bool,
) -> ImageDataset:
    """Split every person's images by ``fractions`` and decode each split into its own array.

    Parameters
    ----------
    filesystem : pyarrow FileSystem
    people : dict of str -> list of str
        Person name -> image paths, in the order that defines class indices (sorted names).
    size : (height, width)
        Output image size in pixels; images are resized to it whatever their aspect ratio.
    fractions : (train, tune, test)
        Shares of each person's images (stratified, see :func:`tasks.datasets.splits.split_by_fractions`).
    seed : int
        Seed of the split.
    skip_unreadable : bool
        Drop unreadable or truncated files (counted in the log) instead of raising DatasetError.

    Returns
    -------
    ImageDataset
        uint8 images of shape (n, height, width, 3); labels index ``tuple(people)``.
    """
    names = tuple(people)
    y = np.repeat(np.arange(len(names), dtype=np.int64), [len(paths) for paths in people.values()])
    paths = [path for person_paths in people.values() for path in person_paths]
    arrays = {}
    for split, indices in zip(("train", "tune", "test"), split_by_fractions(y, fractions, seed)):
        # One array per split, filled in place: no array of every image exists to be indexed
        # (and so copied) into the splits, which would double the peak memory.
        x, ok = decode_images(filesystem, [paths[i] for i in indices], size, skip_unreadable=skip_unreadable)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y[indices][ok]
    log.info(
        "%d people, %d train / %d tune / %d test images of %dx%d",
        len(names), len(arrays["y_train"]), len(arrays["y_tune"]), len(arrays["y_test"]), *size,
    )  # fmt: skip
    return ImageDataset(class_names=names, **arrays)
