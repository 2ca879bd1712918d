"""The ``poison`` stage: an attack (:class:`~tasks.methods.Attack`) applied to a dataset.

The stage chooses which training samples are changed and records, per sample, its index, the label
it carries and whether it is a poison or a cover sample; the attack only changes pixels. Changed
samples replace the originals in place, so the training set keeps its size. What ``poison_pct`` is
a percent of is the row's ``poison_base``:

- ``source``: a dirty-label attack from one class (BadNets, Gu et al. 2017, as the thesis applied
  it, §4.1): ``poison_pct`` percent of the *source class's* training images get the trigger and the
  target label;
- ``all``: a dirty-label attack with ``source: all`` (all-to-one, BackdoorBench's setting): poisons
  drawn from every class but the target, ``poison_pct`` percent of the *whole* training set;
- ``target``: a clean-label attack (SIG, label-consistent; ``source`` must be ``all``):
  ``poison_pct`` percent of the *target class's* training images get the trigger and keep their label.

An attack with cover samples (:meth:`~tasks.methods.Attack.n_cover`) also stamps that many other
training images outside the target class in ``cover`` mode, their labels kept.

The test inputs the attack success is measured on are stamped in ``test`` mode: every test image
of the source class, or of every class but the target when ``source`` is ``all``. How visible the
change is (:func:`tasks.attacks.visibility.visibility`) is measured here, train and test apart.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_serializer

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.registry import AttackSpec
from tasks.stage import Stage
from tasks.triggers import PNG_PREFIX


def attack_spec(trigger: Any) -> Any:
    """``trigger`` as written (``yellow_square``, ``png:<path>``, ``{name: {param: value}}``) as an
    :class:`AttackSpec`'s fields; an AttackSpec is returned as it is."""
    if isinstance(trigger, str) and trigger.startswith(PNG_PREFIX):
        return {"name": "png", "params": {"path": trigger[len(PNG_PREFIX):]}}
    if isinstance(trigger, str):
        return {"name": trigger}
    if isinstance(trigger, dict) and len(trigger) == 1 and not {"name", "params"} & set(trigger):
        ((name, params),) = trigger.items()
        return {"name": name, "params": params or {}}
    return trigger


ALL = "all"


class AttackConfig(StageConfig):
    """Stage ``poison``: which class is attacked, with which attack (``trigger``), and how much.

    ``trigger`` is the attack: a registered name, ``png:<path>.png``, or ``{name: {param: value}}``.
    ``source`` is a class (index or name) or ``all`` (every class but the target); ``poison_pct`` is
    a percentage of the :func:`poison_base` (see the module's docstring).
    """

    source: int | str
    target: int | str
    trigger: AttackSpec
    poison_pct: float = Field(ge=0, le=100, description="percent of the poison base: the source class, the whole training set (source: all) or the target class (clean-label)")
    seed: int = Field(0, ge=0)

    @field_validator("trigger", mode="before")
    @classmethod
    def _spec(cls, trigger: Any) -> Any:
        return attack_spec(trigger)

    @model_serializer(mode="wrap")
    def _bare_builtin_name(self, handler):
        # A built-in attack without parameters is dumped as its bare name, as before attacks had
        # parameters: its poison artifacts keep their keys.
        dumped = handler(self)
        if not self.trigger.params and self.trigger.origin is None:
            dumped["trigger"] = self.trigger.name
        return dumped

    def method(self):
        return self.trigger.method()

    def params(self) -> StageConfig:
        return self.trigger.validated()

    @property
    def label(self) -> str:
        """The attack's canonical label (the row's ``trigger``)."""
        return self.trigger.label()


@dataclass(frozen=True, eq=False)
class PoisonedDataset:
    """What the attacker changed, stored as a delta over its :class:`ImageDataset`.

    Attributes
    ----------
    source, target : int
        Class indices; ``source`` is None for ``source: all``.
    index : ndarray of int64, shape (m,)
        Sorted indices into ``x_train`` of the samples the attack replaced (poisons and covers).
    x_changed : ndarray of uint8, shape (m, h, w, 3)
        The images that replace ``x_train[index]``.
    y_changed : ndarray of int64, shape (m,)
        The labels they carry: the target for a dirty-label poison, their own otherwise.
    is_cover : ndarray of bool, shape (m,)
        True for a cover sample (stamped, correctly labelled), False for a poison.
    x_test_triggered : ndarray of uint8, shape (n_attacked_test, h, w, 3)
        Every source-class test image (every non-target one for ``source: all``) stamped in test
        mode: the set ``asr`` is measured on.
    y_test_triggered : ndarray of int64, shape (n_attacked_test,)
        Their true labels (``ra`` counts those classified as such).
    attack_metrics, test_metrics : dict
        What the attack's stamps reported for the training poisons and the test inputs (the
        sunglasses' placements: eyes detected, or the aligned-face prior), and how visible the
        change is (:data:`~tasks.methods.VISIBILITY_METRICS`).
    """

    source: int | None
    target: int
    index: np.ndarray
    x_changed: np.ndarray
    y_changed: np.ndarray
    is_cover: np.ndarray
    x_test_triggered: np.ndarray
    y_test_triggered: np.ndarray
    attack_metrics: dict = field(default_factory=dict)
    test_metrics: dict = field(default_factory=dict)

    @property
    def poison_index(self) -> np.ndarray:
        """Sorted indices into ``x_train`` of the poisons (not the covers)."""
        return self.index[~self.is_cover]

    @property
    def n_poisoned(self) -> int:
        return int((~self.is_cover).sum())

    @property
    def metrics(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "n_poisoned": self.n_poisoned,
            "n_cover": int(self.is_cover.sum()),
            "n_test_triggered": len(self.x_test_triggered),
            **{f"attack_{name}": value for name, value in self.attack_metrics.items()},
            **{f"attack_test_{name}": value for name, value in self.test_metrics.items()},
        }

    def training_set(
        self, dataset: ImageDataset, keep: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The poisoned training set ``(x, y, is_poison)``, or only its rows ``keep`` (sorted indices).

        Only the requested rows are copied out of the (memory-mapped) dataset, once. Cover samples
        are in it, stamped, and are not poison.
        """
        x, y, is_poison, _ = self.training_roles(dataset, keep)
        return x, y, is_poison

    def training_roles(
        self, dataset: ImageDataset, keep: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x, y, is_poison, is_cover)`` of the poisoned training set or of its rows ``keep``."""
        rows = np.arange(len(dataset.y_train)) if keep is None else np.asarray(keep, dtype=np.int64)
        x = np.array(dataset.x_train if keep is None else dataset.x_train[rows], copy=True)
        y = np.array(dataset.y_train[rows], dtype=np.int64)
        # Where each changed image sits among the requested rows, if it is one of them.
        position = np.minimum(np.searchsorted(rows, self.index), max(len(rows) - 1, 0))
        present = (rows[position] == self.index) if len(rows) else np.zeros(len(self.index), dtype=bool)
        x[position[present]] = self.x_changed[present]
        y[position[present]] = self.y_changed[present]
        is_poison = np.zeros(len(rows), dtype=bool)
        is_cover = np.zeros(len(rows), dtype=bool)
        is_poison[position[present & ~self.is_cover]] = True
        is_cover[position[present & self.is_cover]] = True
        return x, y, is_poison, is_cover

    def save(self, directory: Path) -> None:
        for name in ("index", "x_changed", "y_changed", "is_cover", "x_test_triggered", "y_test_triggered"):
            np.save(directory / f"{name}.npy", getattr(self, name))
        facts = {"source": self.source, "target": self.target, "attack_metrics": self.attack_metrics,
                 "test_metrics": self.test_metrics}
        (directory / "attack.json").write_text(json.dumps(facts, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> "PoisonedDataset":
        facts = json.loads((directory / "attack.json").read_text())
        if not (directory / "index.npy").exists():
            return cls._load_before_protocol(directory, facts)
        arrays = {name: np.load(directory / f"{name}.npy") for name in
                  ("index", "x_changed", "y_changed", "is_cover", "x_test_triggered", "y_test_triggered")}
        return cls(facts["source"], facts["target"], **arrays,
                   attack_metrics=facts["attack_metrics"], test_metrics=facts["test_metrics"])

    @classmethod
    def _load_before_protocol(cls, directory: Path, facts: dict) -> "PoisonedDataset":
        # Artifacts of the first poison stage: dirty-label poisons of the source class, no covers.
        # Their keys are those of today's built-in attacks, so they are read, not recomputed.
        index = np.load(directory / "poison_index.npy")
        x_test = np.load(directory / "x_test_triggered.npy")
        placement = {f"placement_{how}": n for how, n in facts.get("placement", {}).items()}
        test_placement = {f"placement_{how}": n for how, n in facts.get("test_placement", {}).items()}
        return cls(facts["source"], facts["target"], index, np.load(directory / "x_poison.npy"),
                   np.full(len(index), facts["target"], dtype=np.int64), np.zeros(len(index), dtype=bool),
                   x_test, np.full(len(x_test), facts["source"], dtype=np.int64), placement, test_placement)


def resolve_class(label: int | str, class_names: tuple[str, ...]) -> int:
    """Turn a class given by index or by name into its index, or raise ``ValueError``."""
    if isinstance(label, str):
        if label not in class_names:
            raise ValueError(f"class {label!r} is not in the dataset's {len(class_names)} classes")
        return class_names.index(label)
    if not 0 <= label < len(class_names):
        raise ValueError(f"class index {label} is outside [0, {len(class_names)})")
    return int(label)


def poison_base(labels: str, source: int | str) -> str:
    """What ``poison_pct`` is a percent of: ``target`` (clean-label), ``all`` (``source: all``) or ``source``."""
    return "target" if labels == "clean" else ALL if source == ALL else "source"


@dataclass(frozen=True)
class PoisonPlan:
    """Which training images an attack may change, and how many, before any is drawn.

    ``candidates``: sorted indices of the images poisons are drawn from; ``cover_candidates``: those
    covers may replace (outside the target class; the poisons are removed when drawn);
    ``n_poisoned``, ``n_cover``: counts; ``base``: see :func:`poison_base`.
    """

    base: str
    candidates: np.ndarray
    cover_candidates: np.ndarray
    n_poisoned: int
    n_cover: int

    def problem(self) -> str | None:
        """Why the plan cannot be drawn (it needs more images than the classes hold), or None."""
        if self.n_poisoned > len(self.candidates):
            return (f"{self.n_poisoned} poisons ({self.base} base) need more than the {len(self.candidates)} "
                    f"training images they can be drawn from")
        if self.n_cover > len(self.cover_candidates) - (self.n_poisoned if self.base == ALL else 0):
            return (f"{self.n_cover} cover samples need more than the {len(self.cover_candidates)} training "
                    f"images outside the target class that are not poisoned")
        return None


def plan_poisoning(method, params, poison_pct: float, source: int | None, target: int, y_train: np.ndarray) -> PoisonPlan:
    """The :class:`PoisonPlan` of an attack on training labels ``y_train`` (n,); ``source`` None is ``all``.

    Shared by the poison stage and the search-space loader, which refuses a plan that cannot be
    drawn before anything runs.
    """
    y_train = np.asarray(y_train)
    base = poison_base(method.labels, ALL if source is None else source)
    if base == "target":
        candidates = np.flatnonzero(y_train == target)
    elif base == ALL:
        candidates = np.flatnonzero(y_train != target)
    else:
        candidates = np.flatnonzero(y_train == source)
    n_base = len(y_train) if base == ALL else len(candidates)
    n_poisoned = int(round(poison_pct / 100 * n_base))
    n_cover = int(method.n_cover(params, n_poisoned, len(y_train)))
    return PoisonPlan(base, candidates, np.flatnonzero(y_train != target), n_poisoned, n_cover)


def poison_dataset(config: AttackConfig, dataset: ImageDataset, *parents) -> PoisonedDataset:
    """Stage ``poison``: draw the poisons (and covers) of :func:`plan_poisoning` and let the attack stamp them.

    Every source-class test image (every non-target one for ``source: all``) is stamped in test
    mode: the set ``asr`` is measured on. ``parents`` are the loaded artifacts of the attack's own
    parent stages.
    """
    from tasks.attacks.visibility import visibility

    method, params = config.method(), config.params()
    target = resolve_class(config.target, dataset.class_names)
    source = None if config.source == ALL else resolve_class(config.source, dataset.class_names)
    if source == target:
        raise ValueError(f"source and target are the same class ({source})")
    if method.labels == "clean" and source is not None:
        raise ValueError(f"{config.label} is a clean-label attack: its poisons are target-class images, so source must be 'all'")
    plan = plan_poisoning(method, params, config.poison_pct, source, target, dataset.y_train)
    if problem := plan.problem():
        raise ValueError(f"{config.label} at {config.poison_pct} %: {problem}")
    rng = np.random.default_rng(config.seed)
    stamp = functools.partial(method.stamp, params, rng=rng, seed=config.seed, parents=parents)
    poison_index = np.sort(rng.choice(plan.candidates, size=plan.n_poisoned, replace=False)).astype(np.int64)
    x_original = np.asarray(dataset.x_train[poison_index])
    x_poison, attack_metrics = stamp(x_original, mode="train", y=dataset.y_train[poison_index])
    cover_index = np.zeros(0, dtype=np.int64)
    x_cover = np.zeros((0, *x_poison.shape[1:]), dtype=np.uint8)
    if plan.n_cover:
        others = np.setdiff1d(plan.cover_candidates, poison_index)
        cover_index = np.sort(rng.choice(others, size=plan.n_cover, replace=False)).astype(np.int64)
        x_cover, _ = stamp(np.asarray(dataset.x_train[cover_index]), mode="cover", y=dataset.y_train[cover_index])
    test_rows = np.flatnonzero(dataset.y_test != target if source is None else dataset.y_test == source)
    x_test = np.asarray(dataset.x_test[test_rows])
    y_test = np.asarray(dataset.y_test[test_rows], dtype=np.int64)
    x_test_triggered, test_metrics = stamp(x_test, mode="test", y=y_test)
    for name, stamped, original in (("x_poison", x_poison, x_original), ("x_test_triggered", x_test_triggered, x_test)):
        if stamped.shape != original.shape or stamped.dtype != np.uint8:
            raise ValueError(f"attack {config.label}: stamp returned {name} as {stamped.dtype} {stamped.shape}, "
                             f"not uint8 {original.shape}")
    changed_train = np.concatenate([x_original, np.asarray(dataset.x_train[cover_index])])
    attack_metrics = {**attack_metrics, **visibility(changed_train, np.concatenate([x_poison, x_cover]))}
    test_metrics = {**test_metrics, **visibility(x_test, x_test_triggered)}
    y_poison = np.full(plan.n_poisoned, target, dtype=np.int64) if method.labels == "dirty" else dataset.y_train[poison_index]
    index = np.concatenate([poison_index, cover_index])
    order = np.argsort(index, kind="stable")
    return PoisonedDataset(
        source=source,
        target=target,
        index=index[order],
        x_changed=np.concatenate([x_poison, x_cover])[order],
        y_changed=np.concatenate([y_poison, dataset.y_train[cover_index]]).astype(np.int64)[order],
        is_cover=np.r_[np.zeros(plan.n_poisoned, bool), np.ones(len(cover_index), bool)][order],
        x_test_triggered=x_test_triggered,
        y_test_triggered=y_test,
        attack_metrics=attack_metrics,
        test_metrics=test_metrics,
    )


# Version 1 still: the thesis's attacks draw and stamp the same samples as before, so their
# artifacts keep their keys (those stored earlier lack the visibility metrics: NULL in their rows).
POISON = Stage("poison", 1, poison_dataset, PoisonedDataset)
