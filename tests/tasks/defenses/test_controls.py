import numpy as np

from tasks.defenses import perfect_filter, random_filter
from tasks.defenses.filtering import DefenseData
from tasks.train import TrainConfig

TRAIN = TrainConfig(model="gtsrb_cnn", seed=3)


def data_with(is_poison):
    n = len(is_poison)
    tune = np.zeros((1, 2, 2, 3), np.uint8)
    return DefenseData(np.zeros((n, 2, 2, 3), np.uint8), np.zeros(n, np.int64), np.asarray(is_poison, bool), tune, np.zeros(1, np.int64), 2)


def test_perfect_filter_removes_exactly_the_poison_and_skips_retraining_when_asked():
    data = data_with([0, 1, 0, 1, 0])
    model, kept, metrics = perfect_filter.defend(perfect_filter.Params(retrain="none"), "model", data, TRAIN, None)
    assert model == "model" and kept.tolist() == [True, False, True, False, True]
    assert metrics["tpr"] == 1.0 and metrics["fpr"] == 0.0 and metrics["retrained"] is False


def test_random_filter_removes_the_fraction_with_the_seed():
    data = data_with(np.zeros(100))
    params = random_filter.Params(fraction=0.25, retrain="none")
    _, kept, metrics = random_filter.defend(params, None, data, TRAIN, None)
    _, again, _ = random_filter.defend(params, None, data, TRAIN, None)
    assert metrics["removed_total"] == 25 and (kept == again).all()
