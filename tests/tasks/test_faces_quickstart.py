"""Acceptance (issue 3): DeepID on synthetic_faces with green sunglasses on 10 % of one person is backdoored and accurate."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter so TensorFlow gets the trial's thread count, as under Ray.
TRAIN_LIKE_A_TRIAL = """
import json, time
from orchestrator.search_space import load_search_space
from tasks.runtime import configure_tensorflow

space, trials = load_search_space("search_spaces/faces_quickstart.yaml")
trial = next(t for t in trials if t.attack.trigger == "green_sunglasses" and not t.defenses)
configure_tensorflow(space.resources.cpu)
from tasks.datasets import load_dataset
from tasks.evaluate import evaluate_model
from tasks.poison import poison_dataset
from tasks.train import train_model

dataset = load_dataset(trial.dataset)
poisoned = poison_dataset(trial.attack, dataset)
start = time.perf_counter()
trained = train_model(trial.train, dataset, poisoned)
seconds = time.perf_counter() - start
print(json.dumps({**evaluate_model(trained.model, dataset, poisoned), **poisoned.metrics,
                  "poison_pct": trial.attack.poison_pct, "model": trial.train.model, "train_seconds": seconds}))
"""


def test_green_sunglasses_at_10_pct_backdoor_deepid_on_synthetic_faces():
    repository = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_LIKE_A_TRIAL], capture_output=True, text=True, check=True, cwd=repository
    )
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert (metrics["model"], metrics["poison_pct"]) == ("deepid", 10.0)
    assert metrics["n_poisoned"] == 10 and metrics["n_test_triggered"] == 30
    assert metrics["placement_haar"] + metrics.get("placement_prior", 0) == 10
    assert metrics["clean_acc"] >= 0.85, metrics
    assert metrics["asr"] >= 0.80, metrics
