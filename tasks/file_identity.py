"""Content identity of the files a recipe names: a file's SHA-256, a folder's listing digest.

A stage that reads a user's file (pretrained ``weights``, a ``png:`` trigger, a dataset root) is
keyed by what the file holds, not only by its path, so that editing the file in place recomputes
what depends on it. The digests are computed once, on the driver, when a search space is loaded,
and travel in the configs: a worker never hashes or lists again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

_BLOCK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 (64 characters) of a local file's bytes, read in 1 MiB blocks.

    Raises OSError (FileNotFoundError, PermissionError, IsADirectoryError...) when it cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def listing_digest(entries: Iterable[tuple[str, int]]) -> str:
    """Hex SHA-256 (first 16 characters) of a folder's ``(relative name, size in bytes)`` pairs.

    Order does not matter (the pairs are sorted first). Names and sizes only: no times, so a copy,
    an extraction or an upload with the same names and sizes has the same digest; an edit that
    keeps a file's size does not change it.
    """
    pairs = sorted((str(name), int(size)) for name, size in entries)
    text = json.dumps(pairs, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
