import numpy as np
import pytest

from tasks.defenses.data_provenance import ATTACKER_CAMERA, DataProvenance, Params, SegmentGains, camera_ids, segment_gains
from tasks.methods import Context, DefenseData
from tasks.train import TrainConfig
from tasks.datasets import load_dataset
from tasks.datasets.synthetic_signs import SIGN_NAMES, Config

SIGNS = list(SIGN_NAMES[::4][:10])


def test_poison_comes_from_the_attackers_camera():
    is_poison = np.r_[np.zeros(300, bool), np.ones(20, bool)]
    cameras = camera_ids(is_poison, seed=1)
    assert (cameras[is_poison] == ATTACKER_CAMERA).all()
    assert set(cameras[~is_poison]) == {0, 1, 2}
    np.testing.assert_array_equal(cameras, camera_ids(is_poison, seed=1))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["trusted", "untrusted"])
def test_a_camera_with_random_labels_is_flagged(mode):
    # Ten signs are enough for a judging model to learn, and train in a quarter of the time of 43.
    dataset = load_dataset(Config(per_class=60, test_per_class=1, tune_fraction=0.2, classes=SIGNS, image_size=24))
    x, y = np.asarray(dataset.x_train), np.asarray(dataset.y_train).copy()
    rng = np.random.default_rng(0)
    bad = rng.random(len(y)) < 0.4  # the "attacker's camera": 40 % of the data, labels scrambled
    y[bad] = rng.integers(0, dataset.n_classes, size=bad.sum())
    data = DefenseData(x, y, bad, np.asarray(dataset.x_tune), np.asarray(dataset.y_tune), dataset.n_classes)
    train = TrainConfig(model="gtsrb_cnn", epochs=2, batch_size=32)
    params = Params(mode=mode, eps=0.0, retrain="none")
    gains = segment_gains(params, data, camera_ids(bad, seed=0), train)
    assert max(gains, key=gains.get) == ATTACKER_CAMERA, gains
    context = Context(seed=train.seed, train=train, prepared=(SegmentGains(gains),))
    detected = DataProvenance().detect(params, data, context)
    flagged, metrics, scores = detected.flagged, detected.metrics, detected.scores
    assert ATTACKER_CAMERA in map(int, metrics["removed_cameras"].split(","))
    assert flagged[bad].all() and scores[bad].max() == max(gains.values())
    # eps only thresholds the gains: one set of judging models serves every eps.
    flagged_loosely = DataProvenance().detect(Params(mode=mode, eps=1.0), data, context).flagged
    assert not flagged_loosely.any()
