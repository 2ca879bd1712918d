import numpy as np
import pytest

from tasks.registry import DefenseSpec
from tasks.defenses.fine_pruning import channels_to_prune, pruning_curve
from tasks.evaluate import predict_labels
from tasks.poison import AttackConfig, poison_dataset
from tasks.surgery import prune_channels
from tasks.train import TrainConfig, train_model
from tests.conftest import make_dataset
from tests.memory_steps import walk_defense


@pytest.fixture(scope="module")
def trained():
    dataset = make_dataset(n_classes=4, per_class=40, size=32, seed=5)
    poisoned = poison_dataset(AttackConfig(source=0, target=1, trigger="big_yellow_square", poison_pct=20), dataset)
    train = TrainConfig(model="gtsrb_cnn", epochs=2, batch_size=16)
    return dataset, poisoned, train, train_model(train, dataset, poisoned)


def test_cached_curve_equals_brute_force_on_physically_pruned_models(trained):
    dataset, _, _, model = trained
    model = model.model
    x_tune, y_tune = np.asarray(dataset.x_tune), np.asarray(dataset.y_tune)
    curve = pruning_curve(model, "conv_6", x_tune, y_tune, batch_size=7)
    assert curve.accuracy.shape == (128,) and sorted(curve.order) == list(range(128))
    for k in (0, 1, 40, 90, 127):
        pruned = prune_channels(model, "conv_6", curve.order[:k])
        assert curve.accuracy[k] == np.mean(predict_labels(pruned, x_tune) == y_tune), k
    # A batch that holds the tuning set several times over measures several prefixes per call
    # (here 3, the last call 2): the same curve.
    packed = pruning_curve(model, "conv_6", x_tune, y_tune, batch_size=3 * len(x_tune) + 1)
    np.testing.assert_array_equal(packed.order, curve.order)
    np.testing.assert_array_equal(packed.accuracy, curve.accuracy)


def test_chosen_cut_is_the_largest_within_threshold_and_grows_with_it():
    rng = np.random.default_rng(0)
    for _ in range(200):
        accuracy = np.clip(0.9 - np.cumsum(rng.uniform(-0.01, 0.02, size=30)), 0, 1)
        accuracy[0] = 0.9
        cuts = []
        for threshold in (0.0, 0.02, 0.04, 0.06, 0.5):
            cut = channels_to_prune(accuracy, threshold)
            # Brute force: the largest k such that no step up to k drops more than the threshold.
            expected = max(k for k in range(30) if all(accuracy[0] - accuracy[j] <= threshold + 1e-12 for j in range(k + 1)))
            assert cut == expected
            cuts.append(cut)
        assert cuts == sorted(cuts)


def test_defense_prunes_and_fine_tunes_without_touching_the_parent(trained):
    dataset, poisoned, train, model = trained
    x_tune, y_tune = np.asarray(dataset.x_tune), np.asarray(dataset.y_tune)
    curve = pruning_curve(model.model, "conv_5", x_tune, y_tune)
    before = [w.copy() for w in model.model.get_weights()]
    spec = DefenseSpec(name="fp", params={"layer": "second_to_last_conv", "threshold": 0.05, "epochs": 1})
    state, metrics, steps = walk_defense(spec, dataset, poisoned, train, model)
    new_model = state.model.value.model
    assert state.kept.value is model and metrics["pruned_layer"] == "conv_5" and metrics["layer_width"] == 128
    assert new_model.get_layer("conv_5").filters == 128 - metrics["pruned_channels"]
    assert metrics["pruned_channels"] == channels_to_prune(curve.accuracy, 0.05)
    assert metrics["fine_tune_key"] == state.model.key and "selection_digest" not in metrics
    assert all(np.array_equal(a, b) for a, b in zip(before, model.model.get_weights()))
    # The pruned architecture is handed on, for a later full retraining to re-initialise.
    (selection,) = state.architecture
    assert selection.value.layer == "conv_5" and len(selection.value.channels) == metrics["pruned_channels"]


def test_thresholds_that_prune_the_same_channels_share_one_fine_tuning(trained):
    dataset, poisoned, train, model = trained
    curve = pruning_curve(model.model, "conv_6", np.asarray(dataset.x_tune), np.asarray(dataset.y_tune))
    # Two thresholds with the same cut, one with a larger cut.
    same = channels_to_prune(curve.accuracy, 0.0)
    looser = next(t for t in np.linspace(0, 1, 201) if channels_to_prune(curve.accuracy, t) > same)
    steps = None
    keys = []
    for threshold in (0.0, float(np.nextafter(0.0, 1)), float(looser)):
        spec = DefenseSpec(name="fp", params={"threshold": threshold, "epochs": 1})
        state, _, steps = walk_defense(spec, dataset, poisoned, train, model, steps)
        keys.append(state.model.key)
    assert keys[0] == keys[1] != keys[2]
    assert steps.computed.count("d1_fine_tune") == 2 and steps.computed.count("d1_pruning") == 3


def test_fine_pruning_that_prunes_nothing_and_plain_fine_tuning_share_one_fine_tuning(trained, monkeypatch):
    from tasks.defenses import fine_pruning

    dataset, poisoned, train, model = trained
    monkeypatch.setattr(fine_pruning, "channels_to_prune", lambda accuracy, threshold: 0)
    pruned_nothing, metrics, steps = walk_defense(DefenseSpec(name="fp", params={"epochs": 1}), dataset, poisoned,
                                                  train, model)
    assert metrics["pruned_channels"] == 0
    tuned, tuned_metrics, steps = walk_defense(DefenseSpec(name="fine_tune", params={"epochs": 1}), dataset, poisoned,
                                               train, model, steps)
    assert tuned.model.key == pruned_nothing.model.key == tuned_metrics["fine_tune_key"]
    assert steps.computed.count("d1_fine_tune") == 1  # the second walk reused the first's
    # Plain fine-tuning changed the weights on the same architecture, and left the parent alone.
    new = tuned.model.value.model
    assert [w.shape for w in new.get_weights()] == [w.shape for w in model.model.get_weights()]
    assert any(not np.array_equal(a, b) for a, b in zip(new.get_weights(), model.model.get_weights()))
    assert tuned.architecture == ()


def test_a_selection_of_no_channel_has_one_digest_whatever_the_layer():
    from tasks.defenses.fine_pruning import selection_digest

    none = np.zeros(0, dtype=np.int64)
    assert selection_digest("conv_5", none) == selection_digest("conv_6", none) == selection_digest(None, none)
    assert selection_digest("conv_5", np.array([3])) != selection_digest("conv_6", np.array([3]))
