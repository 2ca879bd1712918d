"""The content-addressed artifact store.

An artifact's key is the hash of its stage's name and version, its canonical config and its
parents' keys, so "is it done?" is a directory lookup. Each artifact is computed at most once per
storage root: a per-key file lock makes concurrent trials wait for the one computing it, and the
result is written to a temporary directory then renamed into place, so a reader sees a whole
artifact or none.

Every file of an artifact has its size and SHA-256 in the manifest. Sizes are checked whenever an
artifact is looked up, checksums whenever it is read; a damaged artifact (truncated, a byte flipped,
a file missing) is moved aside and computed again, never used.

On an object store (``s3://``), which has neither file locks nor renames, :class:`ObjectArtifactStore`
uploads an artifact's files and then its manifest (so a manifest still means a whole artifact),
takes a lease (:mod:`orchestrator.lease`) instead of the lock, and reads artifacts through a
node-local copy whose checksums are verified when it is downloaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from orchestrator.hashing import content_hash, record_hash
from orchestrator.lease import BEAT_SECONDS, lease
from orchestrator.storage import StorageRoot
from tasks.file_identity import file_sha256
from tasks.stage import Stage

MANIFEST = "manifest.json"
TEMPORARY_PREFIX = ".tmp-"  # of a directory an artifact is written in before it is renamed into place
CACHE = "cache"  # the artifact store's directory under a storage root
_CHUNK = 1 << 20

log = logging.getLogger("bdsweep.store")


@dataclass(frozen=True)
class StageRecord:
    """How one stage of one trial went: ``computed`` is False when the artifact was reused."""

    stage: str
    key: str
    computed: bool
    seconds: float  # time it took to compute the artifact, whichever trial did
    metrics: dict


@dataclass(eq=False)
class ArtifactRef:
    """A stored artifact, loaded (and its checksums verified) only when a later stage needs its value."""

    stage: Stage
    key: str
    path: Path | PurePosixPath  # local, or the path in an object store
    store: "ArtifactStore" = field(repr=False)
    config: Any = field(repr=False)
    parents: list["ArtifactRef"] = field(repr=False)
    rebuilt: StageRecord | None = None  # set when loading found it damaged and computed it again
    content: str | None = None  # the content digest, for stages that declare one (Stage.identity)
    _value: Any = field(default=None, repr=False)

    @property
    def identity(self) -> str:
        """What children key by: the content digest where the stage declares one, else the key."""
        return f"{self.stage.name}:{self.content}" if self.content is not None else self.key

    def load(self) -> Any:
        """The whole artifact."""
        if self._value is None:
            self._value = self.store.load_verified(self)
        return self._value

    def read(self) -> Any:
        """What a child keyed by :attr:`identity` may read: the stage's view when it is keyed by content."""
        return self.stage.view(self.load()) if self.content is not None else self.load()


def file_digests(directory: Path) -> dict[str, dict]:
    """``{relative path: {"size": bytes, "sha256": hex}}`` for every file under ``directory`` but the manifest."""
    return {
        path.relative_to(directory).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST
    }


def artifact_damage(directory: Path, manifest: dict, *, checksums: bool) -> str | None:
    """What is wrong with the artifact in local ``directory``, or None if it is whole.

    Compares the files on disk with the manifest's list: names and sizes always, SHA-256 only with
    ``checksums`` (it reads every byte). Artifacts stored before manifests listed their files are
    taken as they are. Raises FileNotFoundError when the directory goes away meanwhile.
    """
    present = {
        path.relative_to(directory).as_posix(): path.stat().st_size
        for path in directory.rglob("*") if path.is_file() and path.name != MANIFEST
    }
    return damage_of(present, manifest, (lambda name: file_sha256(directory / name)) if checksums else None)


def damage_of(present: dict[str, int], manifest: dict, sha256: Callable[[str], str] | None) -> str | None:
    """What is wrong with an artifact whose files have sizes ``present`` (``{relative path: bytes}``).

    ``sha256(name)`` hashes one file; without it only names and sizes are compared.
    """
    expected = manifest.get("files")
    if expected is None:
        return None
    if missing := sorted(set(expected) - set(present)):
        return f"missing {missing[0]}"
    if extra := sorted(set(present) - set(expected)):
        return f"unexpected file {extra[0]}"
    for name, facts in expected.items():
        if present[name] != facts["size"]:
            return f"{name} has {present[name]} bytes, the manifest says {facts['size']}"
    if sha256 is not None:
        for name, facts in expected.items():
            if sha256(name) != facts["sha256"]:
                return f"{name} does not match its SHA-256"
    return None


def file_stamps(directory: Path) -> dict[str, tuple[int, int, int]]:
    """``{relative path: (bytes, modification time in ns, inode)}`` of every file under local
    ``directory`` but the manifest: what changes when a file is rewritten, truncated or replaced.

    Empty when the directory is gone (or goes while it is listed).
    """
    try:
        stats = {
            path.relative_to(directory).as_posix(): path.stat()
            for path in directory.rglob("*") if path.name != MANIFEST and path.is_file()
        }
    except FileNotFoundError:
        return {}
    return {name: (stat.st_size, stat.st_mtime_ns, stat.st_ino) for name, stat in stats.items()}


NOT_LOADED = object()  # what LoadedArtifacts.get returns for a value it does not hold


@dataclass
class _Loaded:
    value: Any
    readable: Path  # the local directory the value was read from
    stamps: dict[str, tuple[int, int, int]]  # its files when they were verified (see file_stamps)


class LoadedArtifacts:
    """The last few artifact values a worker process loaded and verified, least recently used out first.

    A worker runs trial after trial (Tune reuses its process), and the trials of a grid share their
    dataset, poisoned data and model: without this every trial would read them again and hash
    every byte. An entry is keyed by ``(store root, stage name, key, hash of the manifest)``, so an
    artifact rewritten since has another key. It is served only while the files it was read from
    still have the sizes, modification times and inodes they had when their checksums were
    verified (a ``stat`` each): a memory-mapped array reads its file again at every access, so a
    file changed in place must not be served either.

    Bounded by ``max_entries`` and by ``max_bytes``, the artifacts' size on disk; an artifact larger
    than ``max_bytes`` is not kept. Values are shared by every trial that follows, so NumPy arrays
    among a value's attributes are made read-only: a stage that writes into its input fails
    instead of changing the next trial's.
    """

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[tuple, _Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def holds(self, key: tuple) -> bool:
        """Whether an entry has ``key``'s store root, stage name and artifact key (any manifest)."""
        with self._lock:
            return any(held[:3] == key[:3] for held in self._entries)

    def get(self, key: tuple, readable: Path) -> Any:
        """The value stored under ``key`` if its files in ``readable`` are unchanged, else :data:`NOT_LOADED`."""
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry.readable != readable or file_stamps(readable) != entry.stamps:
            return NOT_LOADED
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
        return entry.value

    def put(self, key: tuple, readable: Path, stamps: dict[str, tuple[int, int, int]], value: Any) -> None:
        """Keep ``value``, read from ``readable`` whose files had ``stamps`` before it was read."""
        size = sum(size for size, _, _ in stamps.values())
        if self.max_entries < 1 or size > self.max_bytes:
            return
        _make_arrays_read_only(value)
        with self._lock:
            for held in [held for held in self._entries if held[:3] == key[:3]]:
                del self._entries[held]  # an older manifest of the same artifact
            self._entries[key] = _Loaded(value, readable, stamps)
            while len(self._entries) > self.max_entries or self._bytes() > self.max_bytes:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _bytes(self) -> int:
        return sum(size for entry in self._entries.values() for size, _, _ in entry.stamps.values())


def _make_arrays_read_only(value: Any) -> None:
    for attribute in getattr(value, "__dict__", {}).values():
        if isinstance(attribute, np.ndarray):
            attribute.flags.writeable = False


# One per worker process. BDSWEEP_LOADED_ARTIFACTS=0 turns it off; sizes on disk are in MiB.
LOADED_ARTIFACTS = LoadedArtifacts(
    max_entries=int(os.environ.get("BDSWEEP_LOADED_ARTIFACTS", "8")),
    max_bytes=int(float(os.environ.get("BDSWEEP_LOADED_ARTIFACTS_MB", "1024")) * 2**20),
)


class ArtifactStore:
    """Artifacts under ``root/<stage>/<key>/`` on a local disk or shared mount, each with a
    ``manifest.json`` that states its recipe.

    :func:`artifact_store` picks this class or :class:`ObjectArtifactStore` for a storage root.
    Subclasses change only where files go (the methods after ``load_verified``); resolving,
    verifying and rebuilding are the same everywhere.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def recipe(stage: Stage, config, parent_keys: list[str]) -> dict:
        """What an artifact is made from: stage name and version, the full config, the parents' keys."""
        return {
            "stage": stage.name,
            "version": stage.version,
            "config": config.model_dump(mode="json"),
            "parents": list(parent_keys),
        }

    @classmethod
    def key(cls, stage: Stage, config, parent_keys: list[str]) -> str:
        """The artifact's identity: the hash of its recipe."""
        return content_hash(cls.recipe(stage, config, parent_keys), length=24)

    def path(self, stage: Stage, key: str) -> Path:
        return self.root / stage.name / key

    def contains(self, stage: Stage, key: str) -> bool:
        """Whether an artifact was stored under ``key`` (whole or not: see :func:`artifact_damage`)."""
        return (self.path(stage, key) / MANIFEST).is_file()

    def stored_keys(self) -> set[tuple[str, str]]:
        """``(stage name, key)`` of every artifact stored, in one listing.

        A temporary directory (``.tmp-<key>-<uuid>``) holds its manifest for a moment before it is
        renamed into place, and keeps it if its process was killed in that moment: it is not stored.
        """
        return {(path.parent.parent.name, path.parent.name) for path in self.root.glob(f"*/*/{MANIFEST}")
                if not path.parent.name.startswith(TEMPORARY_PREFIX)}

    def manifest(self, stage: Stage, key: str) -> dict:
        return json.loads(self._manifest_text(stage.name, key))

    def resolve(self, stage: Stage, config, parents: list[ArtifactRef]) -> tuple[ArtifactRef, StageRecord]:
        """Return the artifact of ``stage`` for ``config`` and ``parents``, computing it if no one has.

        Waits on the key's lock while another process computes the same artifact, then reuses it.
        A stored artifact whose files do not have the sizes its manifest states is computed again.
        """
        key = self.key(stage, config, [parent.identity for parent in parents])
        ref = ArtifactRef(stage, key, self.path(stage, key), self, config, list(parents))
        manifest = self._whole_manifest(ref, checksums=False)
        if manifest is None:
            with self._lock(stage, key):
                manifest = self._whole_manifest(ref, checksums=False, discard=True)
                if manifest is None:
                    return _with_content(*self._compute(ref))
        return _with_content(ref, StageRecord(stage.name, key, False, manifest["seconds"], manifest["metrics"]))

    def load_verified(self, ref: ArtifactRef) -> Any:
        """``ref``'s value read from disk after checking every file's SHA-256.

        A damaged artifact is rebuilt; ``ref.rebuilt`` then holds the record of that computation.
        A value this process loaded before is served from :data:`LOADED_ARTIFACTS` while the
        artifact's manifest and files are the ones it was verified against (see
        :class:`LoadedArtifacts`); its arrays are read-only, since every later trial shares it.
        """
        if (value := self._loaded_before(ref)) is not NOT_LOADED:
            return value
        manifest = self._whole_manifest(ref, checksums=True)
        if manifest is None:
            with self._lock(ref.stage, ref.key):
                manifest = self._whole_manifest(ref, checksums=True, discard=True)
                if manifest is None:
                    _, ref.rebuilt = self._compute(ref)
                    return ref._value
        readable = self._readable(ref, manifest)
        # Stamped before reading: a file changed while it is read then differs from its stamp.
        stamps = file_stamps(readable)
        value = ref.stage.artifact.load(readable)
        LOADED_ARTIFACTS.put(self._loaded_key(ref, manifest), readable, stamps, value)
        return value

    def read_stored(self, stage: Stage, key: str) -> Any | None:
        """The stored artifact of ``stage`` under ``key``, its checksums verified, or None when it is
        missing or damaged: a reader's view (the report's), which never computes nor discards."""
        ref = ArtifactRef(stage, key, self.path(stage, key), self, None, [])
        manifest = self._whole_manifest(ref, checksums=True)
        if manifest is None:
            return None
        return stage.artifact.load(self._readable(ref, manifest))

    def _loaded_before(self, ref: ArtifactRef) -> Any:
        """The value of ``ref`` this process loaded and verified before, if the stored artifact is
        still the one it was loaded from; else :data:`NOT_LOADED`.

        Costs what :meth:`resolve`'s lookup costs (the manifest read, the files' sizes compared)
        plus a ``stat`` of each file it was read from, and nothing when nothing of ``ref`` is held.
        """
        if not LOADED_ARTIFACTS.holds(self._loaded_key(ref, None)):
            return NOT_LOADED
        manifest = self._whole_manifest(ref, checksums=False)
        if manifest is None:  # moved aside as damaged, or never whole
            return NOT_LOADED
        return LOADED_ARTIFACTS.get(self._loaded_key(ref, manifest), self._readable(ref, manifest))

    def _loaded_key(self, ref: ArtifactRef, manifest: dict | None) -> tuple[str, str, str, str | None]:
        """Names one verified artifact in :data:`LOADED_ARTIFACTS`; a rewritten artifact has another manifest."""
        return str(self.root), ref.stage.name, ref.key, None if manifest is None else record_hash(manifest)

    def _whole_manifest(self, ref: ArtifactRef, *, checksums: bool, discard: bool = False) -> dict | None:
        """The manifest of a whole stored artifact, else None.

        Only a caller holding the key's lock may ``discard`` a damaged artifact (move it aside):
        without the lock, the damage seen may be a rival's repair in progress. Errors that say
        nothing of the artifact (a timeout, a full local disk) are raised, never taken for damage.
        """
        try:
            manifest = json.loads(self._manifest_text(ref.stage.name, ref.key))
            damage = self._damage(ref, manifest, checksums)
        except FileNotFoundError:
            return None
        except ValueError as error:
            damage = f"unreadable manifest ({error})"
        if damage is None:
            return manifest
        if discard:
            log.warning("artifact %s/%s is damaged (%s); computing it again", ref.stage.name, ref.key, damage)
            self._discard(ref)
        return None

    def _compute(self, ref: ArtifactRef) -> tuple[ArtifactRef, StageRecord]:
        stage, parents = ref.stage, ref.parents
        self._clear_leftovers(ref)
        start = time.perf_counter()
        value = stage.run(ref.config, *(parent.read() for parent in parents))
        seconds = time.perf_counter() - start
        metrics = dict(getattr(value, "metrics", {}) or {})
        temporary = self._scratch(ref)
        try:
            value.save(temporary)
            manifest = {
                **self.recipe(stage, ref.config, [parent.identity for parent in parents]),
                "key": ref.key,
                "seconds": seconds,
                "metrics": metrics,
                "files": file_digests(temporary),
                "host": socket.gethostname(),
                "created": time.time(),
            }
            computed = self._publish(ref, temporary, json.dumps(manifest, indent=1, sort_keys=True))
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        ref._value = value
        return ref, StageRecord(stage.name, ref.key, computed, seconds, metrics)

    # -- where the files are: a local directory tree ------------------------------------------------

    def _manifest_text(self, stage_name: str, key: str) -> str:
        return (self.root / stage_name / key / MANIFEST).read_text()

    def _damage(self, ref: ArtifactRef, manifest: dict, checksums: bool) -> str | None:
        return artifact_damage(ref.path, manifest, checksums=checksums)

    def _readable(self, ref: ArtifactRef, manifest: dict) -> Path:
        """The local directory the artifact of ``ref`` that ``manifest`` describes is loaded from."""
        return ref.path

    def _discard(self, ref: ArtifactRef) -> None:
        _remove_directory(ref.path)

    def _clear_leftovers(self, ref: ArtifactRef) -> None:
        # Under the key's lock, any temporary directory of this key is a dead process's half-written try.
        for leftover in ref.path.parent.glob(f"{TEMPORARY_PREFIX}{ref.key}-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def _scratch(self, ref: ArtifactRef) -> Path:
        """An empty directory to save a new artifact in, on the filesystem it will be renamed on."""
        temporary = ref.path.parent / f"{TEMPORARY_PREFIX}{ref.key}-{uuid.uuid4().hex}"
        temporary.mkdir(parents=True)
        return temporary

    def _publish(self, ref: ArtifactRef, temporary: Path, manifest: str) -> bool:
        """Put the artifact saved in ``temporary`` in place; False if another process's copy was there first."""
        # The manifest goes last and reaches the disk before the rename: a directory that has
        # one is complete, even after a power cut.
        _write_synced(temporary / MANIFEST, manifest)
        try:
            os.rename(temporary, ref.path)
        except OSError:
            # Another process got there first (possible where the lock is not shared): use theirs.
            if not self.contains(ref.stage, ref.key):
                raise
            return False
        return True

    @contextmanager
    def _lock(self, stage: Stage, key: str):
        lock_dir = self.root / stage.name
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f".{key}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class ObjectArtifactStore(ArtifactStore):
    """Artifacts under ``<storage root>/cache/<stage>/<key>/`` on an object store.

    Files are uploaded, then the manifest; single flight is a lease per key
    (``cache/<stage>/.locks/<key>/``). Artifacts are read from a copy in ``node_cache`` (a local
    directory, by default ``~/.cache/bdsweep`` or ``$BDSWEEP_NODE_CACHE``), downloaded once per
    node and checked against the manifest's checksums; the trial that computes an artifact keeps
    its own copy there. A copy is never changed once in place, since other trials on the node may
    be reading it: one per manifest, at ``<stage>/<key>/<hash of the manifest>/``.
    """

    def __init__(self, storage: StorageRoot, node_cache: str | Path | None = None, *, beat: float = BEAT_SECONDS,
                 poll: float = 1.0):
        self.storage = storage
        self.root = PurePosixPath(storage.path(CACHE))
        node_cache = node_cache or os.environ.get("BDSWEEP_NODE_CACHE") or Path.home() / ".cache" / "bdsweep"
        self.node_cache = Path(node_cache) / content_hash(storage.display(), length=16)
        self.beat, self.poll = beat, poll

    def path(self, stage: Stage, key: str) -> PurePosixPath:
        return self.root / stage.name / key

    def contains(self, stage: Stage, key: str) -> bool:
        return self.storage.exists(CACHE, stage.name, key, MANIFEST)

    def stored_keys(self) -> set[tuple[str, str]]:
        keys = set()
        for info in self.storage.files(CACHE, suffix=MANIFEST, recursive=True):
            parts = self.storage.relative(info, CACHE).split("/")
            if len(parts) == 3 and parts[2] == MANIFEST:
                keys.add((parts[0], parts[1]))
        return keys

    def _manifest_text(self, stage_name: str, key: str) -> str:
        return self.storage.read_text(CACHE, stage_name, key, MANIFEST)

    def _damage(self, ref: ArtifactRef, manifest: dict, checksums: bool) -> str | None:
        if checksums:
            return self._fetch(ref, manifest)
        where = (CACHE, ref.stage.name, ref.key)
        present = {self.storage.relative(info, *where): info.size for info in self.storage.files(*where, recursive=True)}
        present.pop(MANIFEST, None)
        return damage_of(present, manifest, None)

    def _readable(self, ref: ArtifactRef, manifest: dict) -> Path:
        return self.node_cache / ref.stage.name / ref.key / record_hash(manifest, length=16)

    def _fetch(self, ref: ArtifactRef, manifest: dict) -> str | None:
        """Have this node's copy of the artifact ``manifest`` describes; returns what is wrong with the stored one, if anything."""
        local = self._readable(ref, manifest)
        if local.is_dir():
            if artifact_damage(local, manifest, checksums=True) is None:
                return None
            _remove_directory(local)  # damaged on this node's disk: whoever reads it now reads garbage anyway
        temporary = self._scratch(ref)
        try:
            for name in manifest.get("files", {}):
                try:
                    self.storage.download(CACHE, ref.stage.name, ref.key, name, to=temporary / name)
                except FileNotFoundError:
                    return f"missing {name}"
            if (damage := artifact_damage(temporary, manifest, checksums=True)) is not None:
                return damage
            _install(temporary, local)
            return None
        finally:
            shutil.rmtree(temporary, ignore_errors=True)

    def _discard(self, ref: ArtifactRef) -> None:
        # The manifest first: from then on no reader takes the rest for a whole artifact.
        self.storage.delete(CACHE, ref.stage.name, ref.key, MANIFEST)
        self.storage.delete_tree(CACHE, ref.stage.name, ref.key)

    def _clear_leftovers(self, ref: ArtifactRef) -> None:
        # Under the lease, files of this key without a manifest are a dead process's partial upload.
        self.storage.delete_tree(CACHE, ref.stage.name, ref.key)

    def _scratch(self, ref: ArtifactRef) -> Path:
        temporary = self.node_cache / ref.stage.name / f"{TEMPORARY_PREFIX}{ref.key}-{uuid.uuid4().hex}"
        temporary.mkdir(parents=True)
        return temporary

    def _publish(self, ref: ArtifactRef, temporary: Path, manifest: str) -> bool:
        self.storage.upload(temporary, CACHE, ref.stage.name, ref.key)
        self.storage.write_text(CACHE, ref.stage.name, ref.key, MANIFEST, text=manifest)
        _install(temporary, self._readable(ref, json.loads(manifest)))
        return True

    def _lock(self, stage: Stage, key: str):
        return lease(self.storage, CACHE, stage.name, ".locks", key, beat=self.beat, poll=self.poll)


def _with_content(ref: ArtifactRef, record: StageRecord) -> tuple[ArtifactRef, StageRecord]:
    if ref.stage.identity is not None:
        ref.content = str(record.metrics[ref.stage.identity])
    return ref, record


def artifact_store(storage: StorageRoot) -> ArtifactStore:
    """The artifact store under ``<storage>/cache``."""
    if storage.is_local:
        return ArtifactStore(storage.local_path(CACHE))
    return ObjectArtifactStore(storage)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _remove_directory(path: Path) -> None:
    # Renamed first so no reader ever sees a half-deleted artifact; a rival may have done it already.
    aside = path.parent / f".damaged-{path.name}-{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _install(new: Path, path: Path) -> None:
    """Rename directory ``new`` to ``path`` unless another process put its copy there first.

    The copy already there is never moved: a trial on this node may be loading it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(new, path)
    except OSError:
        pass  # both copies match one manifest
