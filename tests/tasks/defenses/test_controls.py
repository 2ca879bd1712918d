import numpy as np

from tasks.defenses import perfect_filter, random_filter
from tasks.train import TrainConfig

TRAIN = TrainConfig(model="gtsrb_cnn", seed=3)


def test_perfect_filter_removes_exactly_the_poison_and_skips_retraining_when_asked():
    is_poison = np.array([0, 1, 0, 1, 0], dtype=bool)
    x, y = np.zeros((5, 2, 2, 3), np.uint8), np.zeros(5, np.int64)
    model, kept, metrics = perfect_filter.defend(perfect_filter.Params(retrain="none"), "model", x, y, is_poison, TRAIN, 2, None)
    assert model == "model" and kept.tolist() == [True, False, True, False, True]
    assert metrics["tpr"] == 1.0 and metrics["fpr"] == 0.0 and metrics["retrained"] is False


def test_random_filter_removes_the_fraction_with_the_seed():
    is_poison = np.zeros(100, dtype=bool)
    x, y = np.zeros((100, 2, 2, 3), np.uint8), np.zeros(100, np.int64)
    params = random_filter.Params(fraction=0.25, retrain="none")
    _, kept, metrics = random_filter.defend(params, None, x, y, is_poison, TRAIN, 2, None)
    _, again, _ = random_filter.defend(params, None, x, y, is_poison, TRAIN, 2, None)
    assert metrics["removed_total"] == 25 and (kept == again).all()
