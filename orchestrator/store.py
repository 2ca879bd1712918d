"""The content-addressed artifact store.

An artifact's key is the hash of its stage's name and version, its canonical config and its
parents' keys, so "is it done?" is a directory lookup. Each artifact is computed at most once per
storage root: a per-key file lock makes concurrent trials wait for the one computing it, and the
result is written to a temporary directory then renamed into place, so a reader sees a whole
artifact or none.

Every file of an artifact has its size and SHA-256 in the manifest. Sizes are checked whenever an
artifact is looked up, checksums whenever it is read; a damaged artifact (truncated, a byte flipped,
a file missing) is moved aside and computed again, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orchestrator.hashing import content_hash

MANIFEST = "manifest.json"
_CHUNK = 1 << 20

log = logging.getLogger("bdsweep.store")


@dataclass(frozen=True)
class Stage:
    """A kind of pipeline step.

    Attributes
    ----------
    name : str
        Directory name under ``cache/`` and prefix of the stage's result columns.
    version : int
        Bump it when the stage's code changes its output; old artifacts are then not reused.
    run : callable ``(config, *parent_artifacts) -> artifact``
    artifact : type with ``save(directory)`` and classmethod ``load(directory)``; an optional
        ``metrics`` dict attribute is copied into the manifest.
    """

    name: str
    version: int
    run: Callable[..., Any]
    artifact: type


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
    path: Path
    store: "ArtifactStore" = field(repr=False)
    config: Any = field(repr=False)
    parents: list["ArtifactRef"] = field(repr=False)
    rebuilt: StageRecord | None = None  # set when loading found it damaged and computed it again
    _value: Any = field(default=None, repr=False)

    def load(self) -> Any:
        if self._value is None:
            self._value = self.store.load_verified(self)
        return self._value


def file_digests(directory: Path) -> dict[str, dict]:
    """``{relative path: {"size": bytes, "sha256": hex}}`` for every file under ``directory`` but the manifest."""
    return {
        path.relative_to(directory).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_damage(directory: Path, manifest: dict, *, checksums: bool) -> str | None:
    """What is wrong with the artifact in ``directory``, or None if it is whole.

    Compares the files on disk with the manifest's list: names and sizes always, SHA-256 only with
    ``checksums`` (it reads every byte). Artifacts stored before manifests listed their files are
    taken as they are. Raises FileNotFoundError when the directory goes away meanwhile.
    """
    expected = manifest.get("files")
    if expected is None:
        return None
    present = {
        path.relative_to(directory).as_posix(): path
        for path in directory.rglob("*") if path.is_file() and path.name != MANIFEST
    }
    if missing := sorted(set(expected) - set(present)):
        return f"missing {missing[0]}"
    if extra := sorted(set(present) - set(expected)):
        return f"unexpected file {extra[0]}"
    for name, facts in expected.items():
        if (size := present[name].stat().st_size) != facts["size"]:
            return f"{name} has {size} bytes, the manifest says {facts['size']}"
    if checksums:
        for name, facts in expected.items():
            if _sha256(present[name]) != facts["sha256"]:
                return f"{name} does not match its SHA-256"
    return None


class ArtifactStore:
    """Artifacts under ``root/<stage>/<key>/``, each with a ``manifest.json`` that states its recipe."""

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

    def manifest(self, stage: Stage, key: str) -> dict:
        return json.loads((self.path(stage, key) / MANIFEST).read_text())

    def resolve(self, stage: Stage, config, parents: list[ArtifactRef]) -> tuple[ArtifactRef, StageRecord]:
        """Return the artifact of ``stage`` for ``config`` and ``parents``, computing it if no one has.

        Waits on the key's lock while another process computes the same artifact, then reuses it.
        A stored artifact whose files do not have the sizes its manifest states is computed again.
        """
        key = self.key(stage, config, [parent.key for parent in parents])
        ref = ArtifactRef(stage, key, self.path(stage, key), self, config, list(parents))
        manifest = self._whole_manifest(ref, checksums=False)
        if manifest is None:
            with self._lock(stage, key):
                manifest = self._whole_manifest(ref, checksums=False, discard=True)
                if manifest is None:
                    return self._compute(ref)
        return ref, StageRecord(stage.name, key, False, manifest["seconds"], manifest["metrics"])

    def load_verified(self, ref: ArtifactRef) -> Any:
        """``ref``'s value read from disk after checking every file's SHA-256.

        A damaged artifact is rebuilt; ``ref.rebuilt`` then holds the record of that computation.
        """
        if self._whole_manifest(ref, checksums=True) is None:
            with self._lock(ref.stage, ref.key):
                if self._whole_manifest(ref, checksums=True, discard=True) is None:
                    _, ref.rebuilt = self._compute(ref)
                    return ref._value
        return ref.stage.artifact.load(ref.path)

    def _whole_manifest(self, ref: ArtifactRef, *, checksums: bool, discard: bool = False) -> dict | None:
        """The manifest of a whole stored artifact, else None.

        Only a caller holding the key's lock may ``discard`` a damaged artifact (move it aside):
        without the lock, the damage seen may be a rival's repair in progress.
        """
        try:
            manifest = json.loads((ref.path / MANIFEST).read_text())
            damage = artifact_damage(ref.path, manifest, checksums=checksums)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            damage = f"unreadable manifest ({error})"
        if damage is None:
            return manifest
        if discard:
            log.warning("artifact %s/%s is damaged (%s); computing it again", ref.stage.name, ref.key, damage)
            self._discard(ref.path)
        return None

    @staticmethod
    def _discard(path: Path) -> None:
        # Renamed first so no reader ever sees a half-deleted artifact; a rival may have done it already.
        aside = path.parent / f".damaged-{path.name}-{uuid.uuid4().hex}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        shutil.rmtree(aside, ignore_errors=True)

    def _compute(self, ref: ArtifactRef) -> tuple[ArtifactRef, StageRecord]:
        stage, parents = ref.stage, ref.parents
        # Under the key's lock, any temporary directory of this key is a dead process's half-written try.
        for leftover in ref.path.parent.glob(f".tmp-{ref.key}-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        start = time.perf_counter()
        value = stage.run(ref.config, *(parent.load() for parent in parents))
        seconds = time.perf_counter() - start
        metrics = dict(getattr(value, "metrics", {}) or {})
        temporary = ref.path.parent / f".tmp-{ref.key}-{uuid.uuid4().hex}"
        temporary.mkdir(parents=True)
        try:
            value.save(temporary)
            manifest = {
                **self.recipe(stage, ref.config, [parent.key for parent in parents]),
                "key": ref.key,
                "seconds": seconds,
                "metrics": metrics,
                "files": file_digests(temporary),
                "host": socket.gethostname(),
                "created": time.time(),
            }
            # The manifest goes last and reaches the disk before the rename: a directory that has
            # one is complete, even after a power cut.
            with open(temporary / MANIFEST, "w") as handle:
                handle.write(json.dumps(manifest, indent=1, sort_keys=True))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.rename(temporary, ref.path)
            except OSError:
                # Another process got there first (possible where the lock is not shared): use theirs.
                if not self.contains(stage, ref.key):
                    raise
                shutil.rmtree(temporary, ignore_errors=True)
                ref._value = value
                return ref, StageRecord(stage.name, ref.key, False, seconds, metrics)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        ref._value = value
        return ref, StageRecord(stage.name, ref.key, True, seconds, metrics)

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
