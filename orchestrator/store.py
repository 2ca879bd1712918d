"""The content-addressed artifact store.

An artifact's key is the hash of its stage's name and version, its canonical config and its
parents' keys, so "is it done?" is a directory lookup. Each artifact is computed at most once per
storage root: a per-key file lock makes concurrent trials wait for the one computing it, and the
result is written to a temporary directory then renamed into place, so a reader sees a whole
artifact or none.
"""

from __future__ import annotations

import fcntl
import json
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
    """A stored artifact, loaded from disk only when a later stage needs its value."""

    stage: Stage
    key: str
    path: Path
    _value: Any = field(default=None, repr=False)

    def load(self) -> Any:
        if self._value is None:
            self._value = self.stage.artifact.load(self.path)
        return self._value


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
        return (self.path(stage, key) / MANIFEST).is_file()

    def manifest(self, stage: Stage, key: str) -> dict:
        return json.loads((self.path(stage, key) / MANIFEST).read_text())

    def resolve(self, stage: Stage, config, parents: list[ArtifactRef]) -> tuple[ArtifactRef, StageRecord]:
        """Return the artifact of ``stage`` for ``config`` and ``parents``, computing it if no one has.

        Waits on the key's lock while another process computes the same artifact, then reuses it.
        """
        key = self.key(stage, config, [parent.key for parent in parents])
        ref = ArtifactRef(stage, key, self.path(stage, key))
        if not self.contains(stage, key):
            with self._lock(stage, key):
                if not self.contains(stage, key):
                    return self._compute(stage, config, parents, ref)
        manifest = self.manifest(stage, key)
        return ref, StageRecord(stage.name, key, False, manifest["seconds"], manifest["metrics"])

    def _compute(self, stage, config, parents, ref) -> tuple[ArtifactRef, StageRecord]:
        start = time.perf_counter()
        value = stage.run(config, *(parent.load() for parent in parents))
        seconds = time.perf_counter() - start
        metrics = dict(getattr(value, "metrics", {}) or {})
        manifest = {
            **self.recipe(stage, config, [parent.key for parent in parents]),
            "key": ref.key,
            "seconds": seconds,
            "metrics": metrics,
            "host": socket.gethostname(),
            "created": time.time(),
        }
        temporary = ref.path.parent / f".tmp-{ref.key}-{uuid.uuid4().hex}"
        temporary.mkdir(parents=True)
        try:
            value.save(temporary)
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
