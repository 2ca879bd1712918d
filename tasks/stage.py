"""What a stage is: a named, versioned pure function from its config and parent artifacts to an artifact.

Stages are declared beside the code they run (``tasks/``); the artifact store (``orchestrator.store``)
caches them by key without knowing what they compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Stage:
    """A kind of pipeline step.

    Attributes
    ----------
    name : str
        Directory name under ``cache/`` and the stage's name in result columns.
    version : int
        Bump it when the stage's code changes its output; old artifacts are then not reused.
    run : callable ``(config, *parent_artifacts) -> artifact``
    artifact : type with ``save(directory)`` and classmethod ``load(directory)``; an optional
        ``metrics`` dict attribute is copied into the manifest.
    identity : str or None
        The metric that names the artifact's *content* (a digest). When set, the stages that read
        this artifact are keyed by its content rather than by its recipe (early cutoff): two
        detections that keep the same samples feed one retraining.
    view : callable ``artifact -> value`` or None
        Required with ``identity``: what the digest covers, and all a child keyed by it is handed
        (a detection's kept indices, not its scores). A child that reads more must be keyed by the
        recipe: its walk passes the parent as :class:`Whole`.
    """

    name: str
    version: int
    run: Callable[..., Any]
    artifact: type
    identity: str | None = None
    view: Callable[[Any], Any] | None = None

    def __post_init__(self):
        if (self.identity is None) != (self.view is None):
            raise ValueError(f"stage {self.name!r}: identity and view are declared together (what the digest covers)")


@dataclass(frozen=True)
class Whole:
    """A parent handed to a child whole, so the child is keyed by the parent's recipe, not its content.

    Wraps any artifact reference (``key``, ``identity``, ``load()``, ``read()``).
    """

    ref: Any

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def identity(self) -> str:
        return self.ref.key

    def load(self) -> Any:
        return self.ref.load()

    def read(self) -> Any:
        return self.ref.load()
