"""Storage roots: a local directory (or NFS/EFS mount) or any location pyarrow opens (``s3://``, ``gs://``).

Everything a sweep keeps (artifacts, Tune's experiment, result rows, the records ``resume`` and
``status`` read) lives under one root. This module gives the few file operations bdsweep needs,
the same on every filesystem: whole-file reads, writes that a reader sees whole or not at all
(a temporary file then a rename on a local disk; a single PUT, atomic by itself, on an object
store), listings and deletes. Paths are given as parts relative to the root.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.fs as pafs

from orchestrator.errors import StorageError

log = logging.getLogger("bdsweep.storage")


@dataclass(frozen=True, eq=False)
class StorageRoot:
    """A storage root: ``filesystem`` and the ``base`` path in it.

    Attributes
    ----------
    uri : str
        What the user gave, kept so that another process (a Ray worker) opens the same root.
    filesystem : pyarrow.fs.FileSystem
    base : str
        The root inside ``filesystem``: an absolute path on a local disk, ``bucket/prefix`` on S3.
    """

    uri: str
    filesystem: pafs.FileSystem
    base: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` under the root."""
        return "/".join([self.base.rstrip("/"), *parts])

    def local_path(self, *parts: str) -> Path:
        """``parts`` as a local :class:`~pathlib.Path`; only for a root on a local disk or mount."""
        if not self.is_local:
            raise ValueError(f"{self} is not a local directory")
        return Path(self.path(*parts))

    def display(self, *parts: str) -> str:
        """Where ``parts`` are, for messages: a local path, or ``scheme://bucket/prefix/...``."""
        if self.is_local:
            return self.path(*parts)
        return f"{self.filesystem.type_name}://{self.path(*parts)}"

    def __str__(self) -> str:
        return self.display()

    def __repr__(self) -> str:
        return f"StorageRoot({self.display()!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StorageRoot) and (self.uri, self.base) == (other.uri, other.base)

    def __hash__(self) -> int:
        return hash((self.uri, self.base))

    def __reduce__(self):
        # Reopened from the URI where it is unpickled, so each node resolves its own credentials.
        return open_storage, (self.uri,)

    # -- whole files ------------------------------------------------------------------------------

    def exists(self, *parts: str) -> bool:
        return self.filesystem.get_file_info(self.path(*parts)).type == pafs.FileType.File

    def read_bytes(self, *parts: str) -> bytes:
        """Raises FileNotFoundError when there is no such file."""
        with self.filesystem.open_input_stream(self.path(*parts)) as stream:
            return stream.read()

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode()

    def write_bytes(self, *parts: str, data: bytes) -> None:
        """Write a file that readers see whole or not at all."""
        path = self.path(*parts)
        if self.is_local:
            directory, name = os.path.split(path)
            os.makedirs(directory, exist_ok=True)
            temporary = os.path.join(directory, f".{name}.{uuid.uuid4().hex}{_TEMPORARY_SUFFIX}")
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.replace(temporary, path)
            return
        with self.filesystem.open_output_stream(path) as stream:
            stream.write(data)

    def write_text(self, *parts: str, text: str) -> None:
        self.write_bytes(*parts, data=text.encode())

    def download(self, *parts: str, to: Path) -> None:
        """Copy the file ``parts`` to the local file ``to``, in chunks; FileNotFoundError if there is none."""
        to.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(self.path(*parts), str(to), source_filesystem=self.filesystem,
                        destination_filesystem=pafs.LocalFileSystem())

    def upload(self, directory: Path, *parts: str) -> None:
        """Copy every file under the local ``directory`` to directory ``parts``, in chunks, several at once."""
        pafs.copy_files(str(directory), self.path(*parts), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.filesystem)

    def delete(self, *parts: str) -> None:
        """Delete a file; one that is already gone is fine."""
        try:
            self.filesystem.delete_file(self.path(*parts))
        except FileNotFoundError:
            pass

    def delete_tree(self, *parts: str) -> None:
        """Delete a directory (an object-store prefix) and all under it; a missing one is fine."""
        path = self.path(*parts)
        if self.filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            return
        try:
            self.filesystem.delete_dir(path)
        except FileNotFoundError:
            pass

    def files(self, *parts: str, suffix: str = "", recursive: bool = False) -> list[pafs.FileInfo]:
        """The files under directory ``parts`` whose names end with ``suffix``; none if it does not exist.

        Temporary files of :meth:`write_bytes` on a local disk (``.<name>.<32 hex>.tmp``) are never listed.
        """
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True, recursive=recursive)
        return [
            info for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.endswith(suffix)
            and not (self.is_local and _TEMPORARY.fullmatch(info.base_name))
        ]

    def directories(self, *parts: str) -> list[str]:
        """Names of the directories (object-store prefixes) right under ``parts``."""
        selector = pafs.FileSelector(self.path(*parts), allow_not_found=True)
        return [info.base_name for info in self.filesystem.get_file_info(selector) if info.type == pafs.FileType.Directory]

    def relative(self, info: pafs.FileInfo, *parts: str) -> str:
        """The path of a listed file relative to directory ``parts``."""
        return info.path[len(self.path(*parts)) + 1:]

    def mtime(self, *parts: str) -> float:
        """Seconds since the epoch of the file's last write; FileNotFoundError if it has gone."""
        info = self.filesystem.get_file_info(self.path(*parts))
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(info.path)
        return info.mtime.timestamp()


_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Filesystems pyarrow.fs.FileSystem.from_uri opens (besides file://).
REMOTE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def storage_location(value: str | os.PathLike) -> tuple[str | None, str]:
    """Check a storage root's syntax without touching it: ``(scheme, path)``, scheme None for a local path.

    Raises
    ------
    StorageError
        A ``file://`` URI with a host, an unknown scheme, no bucket, or credentials in the URI.
    """
    text = os.fspath(value)
    scheme = _SCHEME.match(text)
    if scheme is None:
        return None, text
    name = scheme.group(1).lower()
    parts = urllib.parse.urlparse(text)
    if name == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise StorageError(text, None, "a file:// storage root is file:///absolute/path")
        return None, urllib.request.url2pathname(parts.path)
    if name not in REMOTE_SCHEMES:
        raise StorageError(text, None, f"{name}:// is not a filesystem pyarrow opens (use a path, file://, "
                                       f"{', '.join(s + '://' for s in REMOTE_SCHEMES)})")
    if parts.password or {"access_key", "secret_key", "session_token"} & set(urllib.parse.parse_qs(parts.query)):
        raise StorageError(text, None, "credentials do not belong in the storage URI; set them in the environment")
    if not parts.netloc:
        raise StorageError(text, None, f"name a bucket (and a prefix): {name}://BUCKET/PREFIX")
    return name, parts.netloc + parts.path


def open_storage(value: str | os.PathLike | StorageRoot) -> StorageRoot:
    """The storage root ``value`` names: a path, a ``file://`` URI without a host, or a pyarrow URI.

    Object stores take pyarrow's URI options, e.g.
    ``s3://bucket/runs?region=eu-west-1`` or, for an S3-compatible server,
    ``s3://bucket/runs?endpoint_override=10.0.0.5:9000&scheme=http``. Credentials come from the
    environment (``AWS_ACCESS_KEY_ID`` ..., an instance profile), never from the URI.

    Raises
    ------
    StorageError
        See :func:`storage_location`; or pyarrow cannot open it.
    """
    if isinstance(value, StorageRoot):
        return value
    text = os.fspath(value)
    scheme, path = storage_location(text)
    if scheme is None:
        # Absolute, so a process with another working directory (a Tune trial) opens the same root.
        directory = str(Path(path).resolve())
        return StorageRoot(directory, pafs.LocalFileSystem(), directory)
    filesystem, base = _remote_filesystem(text)
    return StorageRoot(text, filesystem, base.rstrip("/"))


@functools.lru_cache(maxsize=8)
def _remote_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path of ``uri``, once its bucket was seen to exist.

    Cached: opening S3 without a region asks AWS for the bucket's, and every trial opens the root.
    """
    try:
        filesystem, base = pafs.FileSystem.from_uri(uri)
        bucket = filesystem.get_file_info(base.split("/")[0])
    except (OSError, ValueError, TypeError) as error:
        raise StorageError(uri, None, f"pyarrow cannot open it: {error}") from None
    if bucket.type == pafs.FileType.NotFound:
        raise StorageError(uri, None, f"bucket {bucket.path!r} does not exist (or these credentials cannot see it)")
    return filesystem, base


@contextmanager
def heartbeat(every: float, beat: Callable[[int], None], name: str):
    """Call ``beat(count)`` every ``every`` seconds in a thread while the ``with`` body runs.

    A beat that fails (a throttled or timed-out write) is logged and the next one tried: a missed
    beat must not make a live process look dead.
    """
    stop = threading.Event()

    def run():
        count = 0
        while not stop.wait(every):
            count += 1
            try:
                beat(count)
            except OSError as error:
                log.warning("%s: a heartbeat failed (%s); trying again in %.0f s", name, error, every)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
