"""Walk stages in memory, without an artifact store: for tests of stages and of the graph's decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.store import ArtifactStore, StageRecord
from tasks.plan import STAGES


@dataclass(eq=False)
class MemoryRef:
    """A computed artifact held in memory, keyed (and identified) as the store would key it."""

    stage: str
    key: str
    identity: str
    value: Any

    def load(self) -> Any:
        return self.value


class MemorySteps:
    """A ``step`` function for :func:`tasks.plan.walk_trial` that computes each distinct key once.

    ``computed`` lists the labels it computed, ``refs`` every label's reference, in order.
    """

    def __init__(self):
        self.by_key: dict[str, MemoryRef] = {}
        self.refs: dict[str, MemoryRef] = {}
        self.computed: list[str] = []

    def __call__(self, label: str, stage: str, config, *parents: MemoryRef):
        declared = STAGES[stage]
        key = ArtifactStore.key(declared, config, [parent.identity for parent in parents])
        ref = self.by_key.get(key)
        computed = ref is None
        if computed:
            value = declared.run(config, *(parent.value for parent in parents))
            metrics = dict(getattr(value, "metrics", {}) or {})
            identity = f"{stage}:{metrics[declared.identity]}" if declared.identity else key
            ref = self.by_key[key] = MemoryRef(stage, key, identity, value)
            self.computed.append(label)
        self.refs[label] = ref
        return ref, StageRecord(stage, key, computed, 0.0, dict(getattr(ref.value, "metrics", {}) or {}))


def value_ref(stage: str, value: Any, key: str | None = None) -> MemoryRef:
    """A stand-in for a stored artifact ``value`` (a model trained in the test, say)."""
    key = key or f"{stage}-{id(value)}"
    return MemoryRef(stage, key, key, value)


def walk_defense(spec, dataset, poisoned, train_config, trained, steps: MemorySteps | None = None, label: str = "d1"):
    """Run defense ``spec`` (a :class:`~tasks.defenses.DefenseSpec`) on the in-memory ``trained``
    model (a :class:`~tasks.train.TrainedModel`) of ``dataset`` poisoned as ``poisoned``.

    Returns ``(state handed on, the position's row metrics, steps)``; ``steps.refs`` holds every label's artifact.
    """
    from tasks.defenses import defense_walk
    from tasks.defenses.filtering import State

    steps = steps or MemorySteps()
    trained_ref = value_ref("train", trained)
    state = State(dataset=value_ref("dataset", dataset), poison=value_ref("poison", poisoned), train=trained_ref,
                  train_config=train_config, model=trained_ref, kept=trained_ref)
    state, metrics = defense_walk(label, spec, state, steps)
    return state, metrics, steps
