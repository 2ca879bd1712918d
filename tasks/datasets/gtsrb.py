"""GTSRB, the German Traffic Sign Recognition Benchmark (Stallkamp et al., 2011), read from disk.

Two layouts are read; ``layout="auto"`` takes the official one if ``Final_Training/`` is there,
else the Kaggle one if ``Train.csv`` is, looking in ``root`` and then in ``root/GTSRB`` (where the
official archives extract to).

Official (``GTSRB_Final_Training_Images.zip``, ``GTSRB_Final_Test_Images.zip``,
``GTSRB_Final_Test_GT.zip``), CSV files separated by semicolons::

    Final_Training/Images/00000/00000_00000.ppm ... GT-00000.csv   (one folder per class, 43)
    Final_Test/Images/00000.ppm ...                                 (12,630 images)
    Final_Test/Images/GT-final_test.csv   (or Final_Test/GT-final_test.csv, or GT-final_test.csv)

    columns: Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId

Kaggle ("GTSRB - German Traffic Sign Recognition Benchmark"), CSV files separated by commas, the
``Path`` column relative to the dataset folder::

    Train.csv  Test.csv  Train/0/00000_00000_00000.png ... Train/42/...  Test/00000.png ...

    columns: Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path

Every image is cropped to its ROI (the sign without the ~10 % margin around it; X2 and Y2
inclusive) and resized to ``image_size`` squared. The official test set is the test set; as in the
thesis, ``tune_fraction`` of each training class becomes the clean tuning set.
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from pydantic import Field

from tasks.datasets.image_dataset import ImageDataset
from tasks.datasets.image_files import decode_images, list_dir, open_root, read_csv, require_dir
from tasks.datasets.on_disk import IMAGE_SUFFIXES, OnDiskConfig
from tasks.datasets.splits import split_stratified
from tasks.datasets.synthetic_signs import SIGN_NAMES
from tasks.errors import DatasetError

log = logging.getLogger(__name__)

N_CLASSES = len(SIGN_NAMES)
ROI_COLUMNS = ["Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
OFFICIAL_COLUMNS = ["Filename", *ROI_COLUMNS]
KAGGLE_COLUMNS = [*ROI_COLUMNS, "Path"]
TEST_CSV = "GT-final_test.csv"
# What marks each layout, and its type, in the dataset folder.
_MARKERS = {"official": ("Final_Training", pafs.FileType.Directory), "kaggle": ("Train.csv", pafs.FileType.File)}


class Config(OnDiskConfig):
    """The ``gtsrb`` dataset on disk.

    Parameters
    ----------
    root : str
        Local path or pyarrow filesystem URI (``s3://bucket/gtsrb``) of the dataset folder, or of
        the folder holding ``GTSRB/``.
    layout : {"auto", "official", "kaggle"}, default="auto"
        Which on-disk layout to read; ``auto`` prefers the official one when both are present.
    image_size : int, default=32
        Output height and width in pixels (the thesis's GTSRB CNN takes 32x32).
    tune_fraction : float in [0, 1), default=0.1
        Share of every training class held out as the clean tuning set.
    seed : int, default=0
        Seed of the tuning split.
    skip_unreadable : bool, default=False
        Drop unreadable or truncated images (counted in the log) instead of failing.
    root_listing : str or None
        Digest of the root's file names and sizes, filled in by the search-space loader; see
        :class:`~tasks.datasets.on_disk.OnDiskConfig`.
    """

    name: Literal["gtsrb"] = "gtsrb"
    root: str = Field(min_length=1)
    layout: Literal["auto", "official", "kaggle"] = "auto"
    image_size: int = Field(32, ge=8, le=512)
    tune_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0)
    skip_unreadable: bool = False


@dataclass(frozen=True)
class _Listing:
    """Image files to decode: paths (n,), ROI boxes (n, 4) as x1, y1, x2, y2 inclusive, labels (n,)."""

    paths: list[str]
    crops: np.ndarray
    y: np.ndarray

    @classmethod
    def concatenate(cls, listings: list["_Listing"]) -> "_Listing":
        return cls(
            [path for listing in listings for path in listing.paths],
            np.concatenate([listing.crops for listing in listings]),
            np.concatenate([listing.y for listing in listings]),
        )

    def decode(self, filesystem: pafs.FileSystem, indices: np.ndarray, size: int, skip_unreadable: bool):
        """x (len(indices), size, size, 3) uint8 and y (int64) of the listed images at ``indices``."""
        x, ok = decode_images(
            filesystem, [self.paths[i] for i in indices], (size, size), crops=self.crops[indices],
            skip_unreadable=skip_unreadable,
        )  # fmt: skip
        return x, self.y[indices][ok]


def _boxes_and_labels(frame: pd.DataFrame, csv_path: str) -> tuple[np.ndarray, np.ndarray]:
    """ROI boxes (n, 4) int64, clipped to the image, and labels (n,) int64 of a GTSRB CSV; validated."""
    numbers = frame[ROI_COLUMNS].apply(pd.to_numeric, errors="coerce")
    for column in ROI_COLUMNS:
        bad = np.flatnonzero(numbers[column].isna().to_numpy() | (numbers[column] % 1 != 0).to_numpy())
        if len(bad):
            value = frame[column].iloc[bad[0]]
            raise DatasetError(csv_path, column, f"line {bad[0] + 2}: not an integer ({value!r})")
    values = numbers.to_numpy(dtype=np.int64)
    width, height, x1, y1, x2, y2, y = values.T
    outside = np.flatnonzero((y < 0) | (y >= N_CLASSES))
    if len(outside):
        raise DatasetError(csv_path, "ClassId", f"line {outside[0] + 2}: {y[outside[0]]} is not in [0, {N_CLASSES})")
    # Boxes are clipped to the image so that a box one pixel over the edge is not padded with black.
    boxes = np.stack(
        [np.clip(x1, 0, width - 1), np.clip(y1, 0, height - 1), np.clip(x2, 0, width - 1), np.clip(y2, 0, height - 1)],
        axis=1,
    )
    empty = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]) | (width < 1) | (height < 1))
    if len(empty):
        box = values[empty[0], :6].tolist()
        raise DatasetError(csv_path, "Roi", f"line {empty[0] + 2}: empty region of interest (Width..Roi.Y2 = {box})")
    return boxes, y


def _find_layout(filesystem: pafs.FileSystem, path: str, layout: str) -> tuple[str, str]:
    """The layout to read and the dataset folder: ``path`` or ``path/GTSRB``."""
    kinds = list(_MARKERS) if layout == "auto" else [layout]
    for base in (path, posixpath.join(path, "GTSRB")):
        for kind in kinds:
            marker, file_type = _MARKERS[kind]
            if filesystem.get_file_info(posixpath.join(base, marker)).type == file_type:
                return kind, base
    if layout != "auto":
        return layout, path  # reading it names the first missing piece
    raise DatasetError(
        path, None, "neither the official GTSRB layout (Final_Training/) nor the Kaggle layout (Train.csv) is here"
    )


def _no_images(class_dir: str, label: int, detail: str = "") -> DatasetError:
    return DatasetError(class_dir, None, f"no images of class {label} ({SIGN_NAMES[label]}){detail}")


def _require_images(filesystem: pafs.FileSystem, class_dir: str, label: int) -> None:
    """DatasetError naming ``class_dir`` unless it holds an image file (an emptied or half-copied class)."""
    files = list_dir(filesystem, class_dir, pafs.FileType.File)
    if not any(name.lower().endswith(IMAGE_SUFFIXES) for name in files):
        raise _no_images(class_dir, label)


def _official_train(filesystem: pafs.FileSystem, base: str) -> _Listing:
    images_dir = require_dir(filesystem, base, "Final_Training", "Images")
    listings = []
    for label in range(N_CLASSES):
        class_dir = require_dir(filesystem, images_dir, f"{label:05d}")
        # Images first: an emptied class folder is reported as such, not as a missing CSV.
        _require_images(filesystem, class_dir, label)
        csv_path = posixpath.join(class_dir, f"GT-{label:05d}.csv")
        frame = read_csv(filesystem, csv_path, OFFICIAL_COLUMNS, sep=";")
        if frame.empty:
            raise _no_images(class_dir, label, f" listed in {posixpath.basename(csv_path)}")
        boxes, y = _boxes_and_labels(frame, csv_path)
        wrong = np.flatnonzero(y != label)
        if len(wrong):
            message = f"line {wrong[0] + 2}: {y[wrong[0]]} in the folder of class {label}"
            raise DatasetError(csv_path, "ClassId", message)
        paths = [posixpath.join(class_dir, name) for name in frame["Filename"].astype(str)]
        listings.append(_Listing(paths, boxes, y))
    return _Listing.concatenate(listings)


def _official_test(filesystem: pafs.FileSystem, base: str) -> _Listing:
    images_dir = require_dir(filesystem, base, "Final_Test", "Images")
    # The labelled CSV comes in its own archive (GTSRB_Final_Test_GT.zip); users put it beside
    # the images (where the unlabelled GT-final_test.test.csv is), next to Final_Test or at the top.
    candidates = [posixpath.join(folder, TEST_CSV) for folder in (images_dir, posixpath.dirname(images_dir), base)]
    csv_path = next((c for c in candidates if filesystem.get_file_info(c).type == pafs.FileType.File), None)
    if csv_path is None:
        raise DatasetError(
            candidates[0], None,
            f"file not found, nor at {candidates[1]} or {candidates[2]} (it comes in GTSRB_Final_Test_GT.zip)",
        )
    frame = read_csv(filesystem, csv_path, OFFICIAL_COLUMNS, sep=";")
    boxes, y = _boxes_and_labels(frame, csv_path)
    return _Listing([posixpath.join(images_dir, name) for name in frame["Filename"].astype(str)], boxes, y)


def _kaggle(filesystem: pafs.FileSystem, base: str, split: str) -> _Listing:
    """``split`` is ``Train`` or ``Test``: ``<split>.csv``, its paths relative to ``base``."""
    csv_path = posixpath.join(base, f"{split}.csv")
    frame = read_csv(filesystem, csv_path, KAGGLE_COLUMNS)
    boxes, y = _boxes_and_labels(frame, csv_path)
    if split == "Train":
        counts = np.bincount(y, minlength=N_CLASSES)
        for label in range(N_CLASSES):
            class_dir = require_dir(filesystem, base, "Train", str(label))
            _require_images(filesystem, class_dir, label)
            if counts[label] == 0:
                raise _no_images(class_dir, label, " listed in Train.csv")
    return _Listing([posixpath.join(base, path) for path in frame["Path"].astype(str)], boxes, y)


def class_names(config: Config) -> tuple[str, ...]:
    """The 43 GTSRB class names (index = ClassId), whatever the config; reads nothing."""
    return SIGN_NAMES


def load_dataset(config: Config) -> ImageDataset:
    """Stage ``dataset`` for ``gtsrb``: read the CSVs, split train into train and tune, decode.

    Returns
    -------
    ImageDataset
        x of uint8, shape (n, image_size, image_size, 3), each image its ROI resized; y in [0, 43)
        is GTSRB's ClassId, naming ``SIGN_NAMES[y]``. Train and tune keep the class-by-class
        order of the training CSVs, test the order of the test CSV.

    Raises
    ------
    DatasetError
        Naming the path: a missing folder or CSV, a class folder without images, a CSV without the
        expected columns or with bad values, an unreadable image (unless ``skip_unreadable``).
    """
    filesystem, path = open_root(config.root)
    layout, base = _find_layout(filesystem, path, config.layout)
    if layout == "official":
        train, test = _official_train(filesystem, base), _official_test(filesystem, base)
    else:
        train, test = _kaggle(filesystem, base, "Train"), _kaggle(filesystem, base, "Test")
    kept, tune = split_stratified(train.y, config.tune_fraction, seed=config.seed)
    size, skip = config.image_size, config.skip_unreadable
    # Each split is decoded into its own array: no array of the whole training set is built and
    # then indexed (copied) into train and tune.
    x_train, y_train = train.decode(filesystem, kept, size, skip)
    x_tune, y_tune = train.decode(filesystem, tune, size, skip)
    x_test, y_test = test.decode(filesystem, np.arange(len(test.y)), size, skip)
    log.info("gtsrb (%s layout at %s): %d train / %d tune / %d test images", layout, base, len(y_train), len(y_tune),
             len(y_test))
    return ImageDataset(x_train, y_train, x_tune, y_tune, x_test, y_test, class_names=SIGN_NAMES)
