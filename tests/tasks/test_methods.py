"""Checks every registered defense must pass (built-in or a plugin's), in the spirit of scikit-learn's estimator checks."""

from __future__ import annotations

import numpy as np
import pytest

import tasks.runtime  # noqa: F401
import keras

from tasks.datasets import ImageDataset
from tasks.models import build_model
from tasks.poison import AttackConfig, PoisonedDataset, poison_dataset
from tasks.registry import DefenseSpec, registry
from tasks.train import TrainConfig, TrainedModel
from tests.conftest import make_dataset
from tests.memory_steps import walk_defense

# Settings that keep each defense's work small; any other defense runs with its defaults.
QUICK = {"dp": {"detection_epochs": 1}, "fp": {"epochs": 1}, "fine_tune": {"epochs": 1},
         "neural_cleanse": {"steps": 20, "unlearning_epochs": 1}, "strip": {"n_overlays": 10},
         "i_bau": {"rounds": 1, "k": 2}}
SEALED = {"x_test", "y_test", "x_test_triggered", "y_test_triggered"}


class Sealed:
    """Mixin: reading a test-set attribute fails, so a defense that reads test data is caught."""

    _sealed = False  # set once the copy is built (its own checks read every split)

    def __getattribute__(self, name):
        if name in SEALED and object.__getattribute__(self, "_sealed"):
            raise AssertionError(f"a defense read {name}: defenses are never handed test or triggered data")
        return object.__getattribute__(self, name)


class SealedDataset(Sealed, ImageDataset):
    pass


class SealedPoison(Sealed, PoisonedDataset):
    pass


def sealed(value, cls):
    copy = cls(**{name: getattr(value, name) for name in value.__dataclass_fields__})
    object.__setattr__(copy, "_sealed", True)
    return copy


@pytest.fixture(scope="module")
def trial():
    data = make_dataset(n_classes=3, per_class=30, size=32, seed=2)
    poisoned = poison_dataset(AttackConfig(source=0, target=1, trigger="big_yellow_square", poison_pct=50), data)
    keras.utils.set_random_seed(0)
    model = build_model("gtsrb_cnn", data.image_shape, data.n_classes)
    model.compile(loss="sparse_categorical_crossentropy")
    trained = TrainedModel(model, np.arange(len(data.y_train)))
    return sealed(data, SealedDataset), sealed(poisoned, SealedPoison), trained


def test_the_sealed_data_does_catch_a_read(trial):
    dataset, poisoned, _ = trial
    with pytest.raises(AssertionError, match="x_test"):
        dataset.x_test
    with pytest.raises(AssertionError, match="x_test_triggered"):
        poisoned.x_test_triggered


@pytest.mark.parametrize("name", sorted(registry().defenses))
def test_a_defense_runs_without_test_or_triggered_data(trial, name):
    """No parameter of a defense can be chosen on test data: the protocol hands it none (BackdoorBench issue #35)."""
    dataset, poisoned, trained = trial
    spec = DefenseSpec(name=name, params=QUICK.get(name, {}))
    train = TrainConfig(model="gtsrb_cnn", epochs=1, batch_size=16)
    graph, metrics, steps = walk_defense(spec, dataset, poisoned, train, trained)
    assert steps.computed, f"{name} ran no stage"
    declared = {metric.name for metric in (*spec.method().kind_metrics(), *spec.method().metrics)}
    # Every row metric it produced is declared, with the declared type.
    assert set(metrics) <= declared, sorted(set(metrics) - declared)
