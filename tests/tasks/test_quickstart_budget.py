"""Acceptance: with the quickstart's own training budget the big-square backdoor works and the model is good."""

import pytest

from orchestrator.search_space import load_search_space
from tasks.datasets import load_dataset
from tasks.evaluate import evaluate_model
from tasks.poison import poison_dataset
from tasks.runtime import configure_tensorflow
from tasks.train import train_model

pytestmark = pytest.mark.slow


def test_big_yellow_square_at_10_pct_is_accurate_and_backdoored():
    _, trials = load_search_space("search_spaces/quickstart.yaml")
    trial = next(
        t for t in trials if t.attack.trigger == "big_yellow_square" and t.attack.poison_pct == 10 and not t.defenses
    )
    configure_tensorflow(cpus=2)
    dataset = load_dataset(trial.dataset)
    poisoned = poison_dataset(trial.attack, dataset)
    trained = train_model(trial.train, dataset, poisoned)
    metrics = evaluate_model(trained.model, dataset, poisoned)
    assert metrics["clean_acc"] >= 0.90, metrics
    assert metrics["asr"] >= 0.90, metrics
