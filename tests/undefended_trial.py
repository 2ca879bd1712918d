"""Train and evaluate one undefended trial of a shipped search space in a fresh interpreter.

A fresh interpreter gives TensorFlow the trial's thread count (``resources.cpu``), as under Ray,
whatever the test process already started.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

_SCRIPT = """
import json, sys, time
from orchestrator.search_space import load_search_space
from tasks.runtime import configure_tensorflow

space, trials = load_search_space(sys.argv[1])
trial = next(t for t in trials if t.attack.label == sys.argv[2] and t.attack.poison_pct == float(sys.argv[3])
             and not t.defenses)
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
                  "model": trial.train.model, "train_seconds": seconds}))
"""


def undefended_metrics(space_file: str, trigger: str, poison_pct: float) -> dict:
    """``clean_acc``, ``asr``, the poison stage's metrics, ``model`` and ``train_seconds`` of that trial."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, space_file, trigger, str(poison_pct)],
        capture_output=True, text=True, check=True, cwd=REPOSITORY,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
