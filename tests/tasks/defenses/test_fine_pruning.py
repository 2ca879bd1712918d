import numpy as np
import pytest

from tasks.defenses.fine_pruning import Params, channels_to_prune, defend, pruning_curve
from tasks.defenses.filtering import DefenseData
from tasks.evaluate import predict_labels
from tasks.poison import AttackConfig, poison_dataset
from tasks.surgery import prune_channels
from tasks.train import TrainConfig, train_model
from tests.conftest import make_dataset


@pytest.fixture(scope="module")
def trained():
    dataset = make_dataset(n_classes=4, per_class=40, size=32, seed=5)
    poisoned = poison_dataset(AttackConfig(source=0, target=1, trigger="big_yellow_square", poison_pct=20), dataset)
    train = TrainConfig(model="gtsrb_cnn", epochs=2, batch_size=16)
    return dataset, train, train_model(train, dataset, poisoned).model


def test_cached_curve_equals_brute_force_on_physically_pruned_models(trained):
    dataset, _, model = trained
    x_tune, y_tune = np.asarray(dataset.x_tune), np.asarray(dataset.y_tune)
    curve = pruning_curve(model, "conv_6", x_tune, y_tune, batch_size=7)
    assert curve.accuracy.shape == (128,) and sorted(curve.order) == list(range(128))
    for k in (0, 1, 40, 90, 127):
        pruned = prune_channels(model, "conv_6", curve.order[:k])
        assert curve.accuracy[k] == np.mean(predict_labels(pruned, x_tune) == y_tune), k


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
    dataset, train, model = trained
    x_tune, y_tune = np.asarray(dataset.x_tune), np.asarray(dataset.y_tune)
    curve = pruning_curve(model, "conv_5", x_tune, y_tune)
    before = [w.copy() for w in model.get_weights()]
    data = DefenseData(np.asarray(dataset.x_train), np.asarray(dataset.y_train), np.zeros(len(dataset.y_train), bool), x_tune, y_tune, 4)
    new_model, kept, metrics = defend(Params(layer="second_to_last_conv", threshold=0.05, epochs=1), model, data, train, curve)
    assert kept.all() and metrics["pruned_layer"] == "conv_5" and metrics["layer_width"] == 128
    assert new_model.get_layer("conv_5").filters == 128 - metrics["pruned_channels"]
    assert metrics["pruned_channels"] == channels_to_prune(curve.accuracy, 0.05)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
