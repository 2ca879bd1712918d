"""Acceptance: with the quickstart's own budget the big-square backdoor works and the model is good."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter so TensorFlow gets the trial's thread count, as under Ray.
TRAIN_LIKE_A_TRIAL = """
import json
from orchestrator.search_space import load_search_space
from tasks.datasets import load_dataset
from tasks.evaluate import evaluate_model
from tasks.poison import poison_dataset
from tasks.runtime import configure_tensorflow
from tasks.train import train_model

space, trials = load_search_space("search_spaces/quickstart.yaml")
trial = next(t for t in trials if t.attack.trigger == "big_yellow_square" and t.attack.poison_pct == 10 and not t.defenses)
configure_tensorflow(space.resources.cpu)
dataset = load_dataset(trial.dataset)
poisoned = poison_dataset(trial.attack, dataset)
print(json.dumps(evaluate_model(train_model(trial.train, dataset, poisoned).model, dataset, poisoned)))
"""


def test_big_yellow_square_at_10_pct_is_accurate_and_backdoored():
    repository = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_LIKE_A_TRIAL], capture_output=True, text=True, check=True, cwd=repository
    )
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert metrics["clean_acc"] >= 0.90, metrics
    assert metrics["asr"] >= 0.90, metrics
