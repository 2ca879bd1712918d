"""Reading image datasets from a local path or any pyarrow filesystem URI (``s3://``, ``gs://``, ``hdfs://``).

Images are decoded in parallel straight into one preallocated uint8 array, so peak memory stays
close to the size of that array however many files there are. Every problem with the data on disk
is a :class:`~tasks.errors.DatasetError` naming the path.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
from PIL import Image, UnidentifiedImageError

from tasks.errors import DatasetError
from tasks.runtime import cpu_budget

log = logging.getLogger(__name__)

_CHUNK = 64  # images per decoding task, and rows per move when compacting


def open_root(root: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of a dataset root: a local path or a URI pyarrow understands.

    Raises
    ------
    DatasetError
        If the root does not exist or is not a directory.
    """
    try:
        if "://" in root:
            filesystem, path = pafs.FileSystem.from_uri(root)
        else:
            filesystem, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(root))
        info = filesystem.get_file_info(path)
    except (OSError, ValueError) as error:
        raise DatasetError(root, None, f"cannot open: {error}") from None
    if info.type != pafs.FileType.Directory:
        raise DatasetError(root, None, "directory not found")
    return filesystem, path


def list_dir(filesystem: pafs.FileSystem, path: str, kind: pafs.FileType | None = None) -> list[str]:
    """Sorted base names in directory ``path`` (of one ``kind`` if given); DatasetError if it is missing."""
    infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    if not infos and filesystem.get_file_info(path).type != pafs.FileType.Directory:
        raise DatasetError(path, None, "directory not found")
    return sorted(info.base_name for info in infos if kind is None or info.type == kind)


def require_dir(filesystem: pafs.FileSystem, *parts: str) -> str:
    """``parts`` joined into a path that must be a directory, else DatasetError naming it."""
    path = posixpath.join(*parts)
    if filesystem.get_file_info(path).type != pafs.FileType.Directory:
        raise DatasetError(path, None, "directory not found")
    return path


def read_csv(filesystem: pafs.FileSystem, path: str, columns: list[str], sep: str = ",") -> pd.DataFrame:
    """A CSV file that must exist and have ``columns``; DatasetError naming the file otherwise."""
    if filesystem.get_file_info(path).type != pafs.FileType.File:
        raise DatasetError(path, None, "file not found")
    try:
        with filesystem.open_input_file(path) as handle:
            frame = pd.read_csv(io.BytesIO(handle.read()), sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(path, None, f"not a readable CSV file: {error}") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DatasetError(path, None, f"missing column(s) {', '.join(missing)}; has {', '.join(frame.columns)}")
    return frame


def decode_images(
    filesystem: pafs.FileSystem,
    paths: list[str],
    size: tuple[int, int],
    crops: np.ndarray | None = None,
    skip_unreadable: bool = False,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode, crop and resize image files into one uint8 array, in parallel.

    Parameters
    ----------
    filesystem : pyarrow FileSystem
    paths : list of str, length n
    size : (height, width) in pixels of the output images
    crops : ndarray of int, shape (n, 4), optional
        Per image ``(x1, y1, x2, y2)`` box to keep (pixels, x2/y2 inclusive as in GTSRB's ROI columns).
    skip_unreadable : bool
        If True, unreadable or truncated files are dropped and counted in the log; if False
        (default) the first one raises DatasetError.
    workers : int, optional
        Decoding threads; default the trial's CPU budget (:func:`tasks.runtime.cpu_budget`).

    Returns
    -------
    x : ndarray of uint8, shape (n_ok, height, width, 3)
    ok : ndarray of bool, shape (n,), which paths were decoded (all True unless skipping)
    """
    height, width = size
    x = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    ok = np.ones(len(paths), dtype=bool)

    def decode(index: int) -> None:
        path = paths[index]
        try:
            with filesystem.open_input_file(path) as handle:
                image = Image.open(io.BytesIO(handle.read()))
                image.load()
        # PIL raises ValueError ("not enough image data"), not OSError, for some truncated PPM files.
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            if not skip_unreadable:
                raise DatasetError(path, None, f"unreadable or truncated image ({error})") from None
            ok[index] = False
            return
        if crops is not None:
            x1, y1, x2, y2 = (int(v) for v in crops[index])
            image = image.crop((x1, y1, x2 + 1, y2 + 1))
        x[index] = np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))

    def decode_chunk(start: int) -> None:
        for index in range(start, min(start + _CHUNK, len(paths))):
            decode(index)

    # PIL releases the GIL while decoding and resizing, so threads use several cores. One task per
    # chunk, not per image: a pending future costs about 2 KB, as much as a 26x26 RGB image.
    with ThreadPoolExecutor(max_workers=workers or cpu_budget()) as pool:
        list(pool.map(decode_chunk, range(0, len(paths), _CHUNK)))
    if not ok.all():
        log.warning("skipped %d unreadable image(s) of %d", int((~ok).sum()), len(paths))
        x = _compact(x, ok)
    return x, ok


def _compact(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``x[ok]`` without a second array: rows move forward in place, ``_CHUNK`` at a time.

    ``x[:kept] = x[ok]`` would materialise all kept rows first, doubling the peak memory. Row
    ``keep[i]`` moves to row ``i <= keep[i]``, so a chunk overwrites only rows already moved or
    just copied out by ``x[rows]``; the temporary copy is at most ``_CHUNK`` rows.
    """
    keep = np.flatnonzero(ok)
    for start in range(0, len(keep), _CHUNK):
        rows = keep[start : start + _CHUNK]
        x[start : start + len(rows)] = x[rows]
    return x[: len(keep)]
