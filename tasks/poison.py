"""BadNets poisoning (Gu et al. 2017) as the thesis applied it (§4.1).

``poison_pct`` percent of the *source class's* training images get the trigger and the target
label; they replace the originals in place, so the training set keeps its size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.triggers import check_trigger_name, get_trigger


class AttackConfig(StageConfig):
    """Stage ``poison``: which class is attacked, with which trigger, and how much."""

    source: int | str
    target: int | str
    trigger: str = Field(description="a registered trigger name, or png:<path>.png for a user overlay")
    poison_pct: float = Field(ge=0, le=100, description="percent of the source class's training images")
    seed: int = Field(0, ge=0)

    @field_validator("trigger")
    @classmethod
    def _known_trigger(cls, trigger: str) -> str:
        return check_trigger_name(trigger)


@dataclass(frozen=True, eq=False)
class PoisonedDataset:
    """What the attacker changed, stored as a delta over its :class:`ImageDataset`.

    Attributes
    ----------
    source, target : int
        Class indices.
    poison_index : ndarray of int64, shape (n_poisoned,)
        Sorted indices into ``x_train`` that were replaced.
    x_poison : ndarray of uint8, shape (n_poisoned, h, w, 3)
        The triggered images that replace ``x_train[poison_index]``; their label is ``target``.
    x_test_triggered : ndarray of uint8, shape (n_source_test, h, w, 3)
        Every source-class test image with the trigger: the set ``asr`` is measured on.
    placement, test_placement : dict of str to int
        How the trigger was placed on ``x_poison`` and on ``x_test_triggered`` (for the sunglasses:
        ``haar`` = eyes detected, ``prior`` = aligned-face prior); empty for centred patches.
    """

    source: int
    target: int
    poison_index: np.ndarray
    x_poison: np.ndarray
    x_test_triggered: np.ndarray
    placement: dict = field(default_factory=dict)
    test_placement: dict = field(default_factory=dict)

    @property
    def n_poisoned(self) -> int:
        return len(self.poison_index)

    @property
    def metrics(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "n_poisoned": self.n_poisoned,
            "n_test_triggered": len(self.x_test_triggered),
            **{f"placement_{how}": count for how, count in self.placement.items()},
            **{f"test_placement_{how}": count for how, count in self.test_placement.items()},
        }

    def training_set(
        self, dataset: ImageDataset, keep: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The poisoned training set ``(x, y, is_poison)``, or only its rows ``keep`` (sorted indices).

        Only the requested rows are copied out of the (memory-mapped) dataset, once.
        """
        rows = np.arange(len(dataset.y_train)) if keep is None else np.asarray(keep, dtype=np.int64)
        x = np.array(dataset.x_train if keep is None else dataset.x_train[rows], copy=True)
        y = np.array(dataset.y_train[rows], dtype=np.int64)
        # Where each poisoned image sits among the requested rows, if it is one of them.
        position = np.minimum(np.searchsorted(rows, self.poison_index), max(len(rows) - 1, 0))
        present = (rows[position] == self.poison_index) if len(rows) else np.zeros(0, dtype=bool)
        x[position[present]] = self.x_poison[present]
        y[position[present]] = self.target
        is_poison = np.zeros(len(rows), dtype=bool)
        is_poison[position[present]] = True
        return x, y, is_poison

    def save(self, directory: Path) -> None:
        np.save(directory / "poison_index.npy", self.poison_index)
        np.save(directory / "x_poison.npy", self.x_poison)
        np.save(directory / "x_test_triggered.npy", self.x_test_triggered)
        attack = {"source": self.source, "target": self.target}
        attack.update(placement=self.placement, test_placement=self.test_placement)
        (directory / "attack.json").write_text(json.dumps(attack))

    @classmethod
    def load(cls, directory: Path) -> "PoisonedDataset":
        attack = json.loads((directory / "attack.json").read_text())
        return cls(
            source=attack["source"],
            target=attack["target"],
            poison_index=np.load(directory / "poison_index.npy"),
            x_poison=np.load(directory / "x_poison.npy"),
            x_test_triggered=np.load(directory / "x_test_triggered.npy"),
            # Artifacts written before placements were recorded hold patch triggers: nothing to count.
            placement=attack.get("placement", {}),
            test_placement=attack.get("test_placement", {}),
        )


def resolve_class(label: int | str, class_names: tuple[str, ...]) -> int:
    """Turn a class given by index or by name into its index, or raise ``ValueError``."""
    if isinstance(label, str):
        if label not in class_names:
            raise ValueError(f"class {label!r} is not in the dataset's {len(class_names)} classes")
        return class_names.index(label)
    if not 0 <= label < len(class_names):
        raise ValueError(f"class index {label} is outside [0, {len(class_names)})")
    return int(label)


def poison_dataset(config: AttackConfig, dataset: ImageDataset) -> PoisonedDataset:
    """Stage ``poison``: choose ``round(poison_pct/100 * n_source)`` source images and trigger them.

    The trigger is also stamped on every source-class test image (the set ``asr`` is measured on).
    Raises TriggerError when a ``png:`` trigger's file cannot be read.
    """
    source = resolve_class(config.source, dataset.class_names)
    target = resolve_class(config.target, dataset.class_names)
    if source == target:
        raise ValueError(f"source and target are the same class ({source})")
    source_index = np.flatnonzero(dataset.y_train == source)
    n_poisoned = int(round(config.poison_pct / 100 * len(source_index)))
    rng = np.random.default_rng(config.seed)
    poison_index = np.sort(rng.choice(source_index, size=n_poisoned, replace=False)).astype(np.int64)
    trigger = get_trigger(config.trigger)
    x_poison, placement = trigger.apply(np.asarray(dataset.x_train[poison_index]))
    x_test_triggered, test_placement = trigger.apply(np.asarray(dataset.x_test[dataset.y_test == source]))
    return PoisonedDataset(
        source=source,
        target=target,
        poison_index=poison_index,
        x_poison=x_poison,
        x_test_triggered=x_test_triggered,
        placement=placement,
        test_placement=test_placement,
    )
