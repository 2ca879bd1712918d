import numpy as np
import pytest
from pydantic import ValidationError

from tasks.defenses import DefenseSpec, perfect_filter, random_filter
from tasks.defenses.filtering import DefenseData
from tasks.train import TrainConfig, TrainedModel

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


def test_random_filter_same_as_removes_as_many_as_the_named_defense_flagged():
    data = data_with(np.zeros(100))
    params = random_filter.Params(same_as={"ac": {"cluster_analysis": "smaller"}}, retrain="none")
    # The named defense's stage kept 63 of the 100 samples it saw.
    named = TrainedModel(model=None, keep=np.sort(np.random.default_rng(0).choice(100, 63, replace=False)))
    _, kept, metrics = random_filter.defend(params, None, data, TRAIN, named)
    _, again, _ = random_filter.defend(params, None, data, TRAIN, named)
    assert metrics["removed_total"] == 37 and (kept == again).all()
    assert not np.array_equal(np.flatnonzero(kept), named.keep)  # random, not the defense's own choice


def test_random_filter_same_as_prepares_the_named_defense_for_detection_only():
    params = random_filter.Params(same_as="ac")
    assert params.fraction is None
    stage, spec = random_filter.preparation(params)
    # The same recipe as `ac` alone with retrain none, so the two share that stage.
    assert stage == "defense" and spec == DefenseSpec(name="ac", params={"retrain": "none"})
    assert random_filter.preparation(random_filter.Params()) is None
    assert random_filter.Params().fraction == 0.3


@pytest.mark.parametrize(
    "given, words",
    [
        ({"fraction": 0.2, "same_as": "ac"}, "fraction or same_as, not both"),
        ({"same_as": "random_filter"}, "cannot copy its own"),
        ({"same_as": "fp"}, "fp removes no samples"),
        ({"same_as": "strip"}, "unknown defense 'strip'"),
        ({"same_as": {"ac": {"cluster_analysis": "biggest"}}}, "ac.cluster_analysis"),
        ({"same_as": {"ac": {}, "ss": {}}}, "names one defense"),
    ],
)
def test_random_filter_same_as_refuses_what_has_no_removal_count(given, words):
    with pytest.raises(ValidationError, match=words):
        random_filter.Params(**given)


def test_random_filter_same_as_on_a_real_ac_stage():
    from tasks.defenses import DefenseConfig, apply_defense, preparation
    from tasks.defenses.activations import compute_activations
    from tasks.models import build_model
    from tasks.poison import AttackConfig, poison_dataset
    from tests.conftest import make_dataset

    dataset = make_dataset(n_classes=3, per_class=30, size=32)
    poisoned = poison_dataset(AttackConfig(source=0, target=1, trigger="yellow_square", poison_pct=50), dataset)
    model = build_model("gtsrb_cnn", dataset.image_shape, dataset.n_classes)  # untrained: detection only
    current = TrainedModel(model=model, keep=np.arange(len(dataset.y_train)))
    config = DefenseConfig(name="random_filter", params={"same_as": "ac", "retrain": "none"}, train=TRAIN)
    _, named_config = preparation(config)
    _, activations_config = preparation(named_config)
    activations = compute_activations(activations_config, dataset, poisoned, current)
    named = apply_defense(named_config, dataset, poisoned, current, activations)
    controlled = apply_defense(config, dataset, poisoned, current, named)
    assert 0 < named.metrics["removed_total"] == controlled.metrics["removed_total"]
