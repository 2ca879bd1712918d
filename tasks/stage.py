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
    """

    name: str
    version: int
    run: Callable[..., Any]
    artifact: type
    identity: str | None = None
