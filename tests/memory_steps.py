"""Walk stages in memory, without an artifact store: for tests of stages and of the graph's decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.store import ArtifactStore, StageRecord


@dataclass(eq=False)
class MemoryRef:
    """A computed artifact held in memory, keyed (and identified) as the store would key it."""

    stage: Any  # a tasks.stage.Stage, or a stage name for a stand-in
    key: str
    identity: str
    value: Any

    def load(self) -> Any:
        return self.value

    def read(self) -> Any:
        """What a child keyed by ``identity`` is handed: the stage's view when keyed by content."""
        return self.stage.view(self.value) if self.identity != self.key else self.value


class MemorySteps:
    """A ``step`` function for :func:`tasks.plan.walk_trial` that computes each distinct key once.

    ``computed`` lists the labels it computed, ``refs`` every label's reference, in order.
    """

    def __init__(self):
        self.by_key: dict[str, MemoryRef] = {}
        self.refs: dict[str, MemoryRef] = {}
        self.computed: list[str] = []
        self.parent_identities: dict[str, list[str]] = {}  # what each label's key was made from

    def __call__(self, label: str, stage, config, *parents):
        self.parent_identities[label] = [parent.identity for parent in parents]
        key = ArtifactStore.key(stage, config, self.parent_identities[label])
        ref = self.by_key.get(key)
        computed = ref is None
        if computed:
            value = stage.run(config, *(parent.read() for parent in parents))
            metrics = dict(getattr(value, "metrics", {}) or {})
            identity = f"{stage.name}:{metrics[stage.identity]}" if stage.identity else key
            ref = self.by_key[key] = MemoryRef(stage, key, identity, value)
            self.computed.append(label)
        self.refs[label] = ref
        return ref, StageRecord(stage.name, key, computed, 0.0, dict(getattr(ref.value, "metrics", {}) or {}))


def value_ref(stage: str, value: Any, key: str | None = None) -> MemoryRef:
    """A stand-in for a stored artifact ``value`` (a model trained in the test, say)."""
    key = key or f"{stage}-{id(value)}"
    return MemoryRef(stage, key, key, value)


def walk_defense(spec, dataset, poisoned, train_config, trained, steps: MemorySteps | None = None, label: str = "d1"):
    """Run defense ``spec`` (a :class:`~tasks.registry.DefenseSpec`) on the in-memory ``trained``
    model (a :class:`~tasks.train.TrainedModel`) of ``dataset`` poisoned as ``poisoned``.

    Returns ``(graph handed on, the position's row metrics, steps)``; ``steps.refs`` holds every
    label's artifact, and the graph's ``model`` and ``kept`` what the defense handed on.
    """
    from tasks.plan import WALKS, TrialGraph

    steps = steps or MemorySteps()
    trained_ref = value_ref("train", trained)
    graph = TrialGraph(steps, train_config, value_ref("dataset", dataset), poison=value_ref("poison", poisoned),
                       train=trained_ref, model=trained_ref, kept=trained_ref)
    method = spec.method()
    metrics = WALKS[method.kind](method, spec.validated(), graph, label)
    return graph, metrics, steps
