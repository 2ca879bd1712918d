"""Datasets read from a root on disk: the root's listing, and the config field that carries its digest.

A dataset stage over files is keyed by its config, and the config by the root's path. The path alone
would reuse an artifact after the files under it changed, so the search-space loader lists the root
once, on the driver, and puts the digest of the sorted ``(relative name, size)`` pairs into the
config (``root_listing``); workers read it from the config and never list again.

What the listing sees: a file added, removed or renamed, and an edit that changes a file's size.
What it does not see: an edit that keeps every size (a PPM's size is fixed by its width and
height, so repainting one is invisible; a re-saved JPEG or PNG almost always changes size). Times
are left out on purpose: a copy, an extraction or an upload with the same names and sizes keeps
its keys. The dataset's children are keyed by the decoded arrays' fingerprint
(:attr:`ImageDataset.fingerprint`), so re-encoding images to the same pixels recomputes the dataset
stage and nothing after it.
"""

from __future__ import annotations

import posixpath

import pyarrow.fs as pafs
from pydantic import Field, model_serializer

from tasks.config import StageConfig
from tasks.datasets.image_files import open_root
from tasks.errors import DatasetError
from tasks.file_identity import listing_digest

IMAGE_SUFFIXES = (".ppm", ".png", ".jpg", ".jpeg", ".bmp")


class OnDiskConfig(StageConfig):
    """Base of the configs of datasets read from a ``root`` folder (a local path or a pyarrow URI).

    ``root_listing`` is filled in by the search-space loader (:func:`root_listing`), never written
    by hand; a config built without the loader has None and is keyed by its path alone, as every
    config was before the field existed (it is then left out of the canonical JSON, so such
    configs keep their keys).
    """

    root_listing: str | None = Field(
        None, pattern=r"^[0-9a-f]{16}$",
        description="digest of the root's file names and sizes, computed when the search space is loaded",
        json_schema_extra={"filled_by_loader": True},
    )

    @model_serializer(mode="wrap")
    def _omit_unset_listing(self, handler):
        dumped = handler(self)
        if self.root_listing is None:
            dumped.pop("root_listing", None)
        return dumped


def list_root(root: str) -> list[tuple[str, int]]:
    """``(name relative to root, size in bytes)`` of every file under ``root``, sorted; one recursive listing.

    Hidden files and folders (a name starting with ``.``, such as ``.DS_Store`` or a copy tool's
    partial files) are left out: no loader reads them.

    Raises
    ------
    DatasetError
        Naming ``root`` when it is not a directory or holds no file.
    """
    filesystem, path = open_root(root)
    prefix = path.rstrip("/") + "/"
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
    except OSError as error:
        raise DatasetError(root, None, f"cannot be listed: {error}") from None
    entries = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        name = info.path[len(prefix) :] if info.path.startswith(prefix) else posixpath.relpath(info.path, path)
        if any(part.startswith(".") for part in name.split("/")):
            continue
        entries.append((name, int(info.size)))
    if not entries:
        raise DatasetError(root, None, "holds no files")
    return sorted(entries)


def root_listing(root: str, skip_unreadable: bool = False) -> str:
    """The digest (16 hex characters) of :func:`list_root` ``(root)``: what ``OnDiskConfig.root_listing`` holds.

    Raises
    ------
    DatasetError
        Naming the root when it is missing, unlistable or empty, or naming the first empty image file
        (an interrupted copy or download) unless ``skip_unreadable`` lets the loader drop it.
    """
    entries = list_root(root)
    if not skip_unreadable:
        for name, size in entries:
            if size == 0 and name.lower().endswith(IMAGE_SUFFIXES):
                path = root.rstrip("/") + "/" + name
                raise DatasetError(path, None, "empty image file (0 bytes): an interrupted copy? "
                                   "(skip_unreadable: true drops unreadable images)")
    return listing_digest(entries)
