import numpy as np
import pytest
from pydantic import ValidationError

from tasks.defenses import random_filter
from tasks.defenses.filtering import Detection
from tasks.defenses.perfect_filter import PerfectFilter
from tasks.defenses.random_filter import RandomFilter
from tasks.methods import Context, DefenseData
from tasks.registry import DefenseSpec
from tasks.train import TrainConfig, TrainedModel

TRAIN = TrainConfig(model="gtsrb_cnn", seed=3)


def detect(method, params, data, *prepared):
    """``method.detect`` with the context a trial seeded 3 gives it; ``(flagged, metrics, scores)``."""
    detected = method.detect(params, data, Context(seed=TRAIN.seed, train=TRAIN, prepared=prepared))
    return detected.flagged, detected.metrics, detected.scores


def data_with(is_poison):
    n = len(is_poison)
    tune = np.zeros((1, 2, 2, 3), np.uint8)
    return DefenseData(np.zeros((n, 2, 2, 3), np.uint8), np.zeros(n, np.int64), np.asarray(is_poison, bool), tune, np.zeros(1, np.int64), 2)


def test_perfect_filter_removes_exactly_the_poison():
    data = data_with([0, 1, 0, 1, 0])
    flagged, _, _ = detect(PerfectFilter(), PerfectFilter.Params(), data)
    detection = Detection.of(np.arange(5), flagged, data.is_poison, n_train=5)
    assert detection.keep.tolist() == [0, 2, 4]
    assert detection.metrics["tpr"] == 1.0 and detection.metrics["fpr"] == 0.0 and detection.metrics["n_kept"] == 3


def test_random_filter_removes_the_fraction_with_the_seed():
    data = data_with(np.zeros(100))
    params = random_filter.Params(fraction=0.25, retrain="none")
    flagged, _, _ = detect(RandomFilter(), params, data)
    again, _, _ = detect(RandomFilter(), params, data)
    assert flagged.sum() == 25 and (flagged == again).all()


def test_random_filter_same_as_removes_as_many_as_the_named_defense_flagged():
    data = data_with(np.zeros(100))
    params = random_filter.Params(same_as={"ac": {"cluster_analysis": "smaller"}}, retrain="none")
    # The named defense's detection kept 63 of the 100 samples it saw.
    named = Detection(keep=np.sort(np.random.default_rng(0).choice(100, 63, replace=False)))
    flagged, _, _ = detect(RandomFilter(), params, data, named)
    again, _, _ = detect(RandomFilter(), params, data, named)
    kept = ~flagged
    assert flagged.sum() == 37 and (flagged == again).all()
    assert not np.array_equal(np.flatnonzero(kept), named.keep)  # random, not the defense's own choice


def test_random_filter_same_as_names_the_defense_with_full_parameters():
    params = random_filter.Params(same_as="ac")
    assert params.fraction is None
    assert params.same_as == {"ac": DefenseSpec(name="ac", params={"retrain": "none"}).params}
    assert random_filter.Params().same_as is None and random_filter.Params().fraction == 0.3


@pytest.mark.parametrize(
    "given, words",
    [
        ({"fraction": 0.2, "same_as": "ac"}, "fraction or same_as, not both"),
        ({"same_as": "random_filter"}, "cannot copy its own"),
        ({"same_as": "fp"}, "fp removes no samples"),
        ({"same_as": "strip"}, "strip removes no samples"),
        ({"same_as": "no_such_defense"}, "unknown defense 'no_such_defense'"),
        ({"same_as": {"ac": {"cluster_analysis": "biggest"}}}, "ac.cluster_analysis"),
        ({"same_as": {"ac": {}, "ss": {}}}, "names one defense"),
    ],
)
def test_random_filter_same_as_refuses_what_has_no_removal_count(given, words):
    with pytest.raises(ValidationError, match=words):
        random_filter.Params(**given)


def test_random_filter_same_as_on_a_real_ac_stage():
    from tasks.models import build_model
    from tasks.poison import AttackConfig, poison_dataset
    from tests.conftest import make_dataset
    from tests.memory_steps import walk_defense

    dataset = make_dataset(n_classes=3, per_class=30, size=32)
    poisoned = poison_dataset(AttackConfig(source=0, target=1, trigger="yellow_square", poison_pct=50), dataset)
    model = build_model("gtsrb_cnn", dataset.image_shape, dataset.n_classes)  # untrained: detection only
    current = TrainedModel(model=model, keep=np.arange(len(dataset.y_train)))
    spec = DefenseSpec(name="random_filter", params={"same_as": "ac", "retrain": "none"})
    _, controlled, steps = walk_defense(spec, dataset, poisoned, TRAIN, current)
    named = steps.refs["d1_same_as_detection"].value
    assert 0 < named.metrics["removed_total"] == controlled["removed_total"]
    assert not np.array_equal(steps.refs["d1_detection"].value.keep, named.keep)  # random, not ac's choice
