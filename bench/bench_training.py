"""Is training inside a bdsweep trial as fast as plain Keras? Benchmark e of issue 11 (goal >= 0.9).

Trains the same model on the same arrays with the same threads twice, alternately, ``--repeats``
times each:

- plain: a fresh interpreter with TensorFlow limited to ``--cpus`` threads (as a trial is), which
  builds the model, compiles it and calls ``model.fit`` on the poisoned training set, timed around
  those three calls;
- bdsweep: ``bdsweep run`` of a one-trial sweep (no defense) from an empty storage root, with
  ``resources: {cpu: --cpus}``; the time is the row's ``train_seconds`` (the ``train`` stage:
  building, compiling, fitting, inside the Ray Tune trial).

Throughput = training samples x epochs / seconds; prints both medians and their ratio.
Run: ``python bench/bench_training.py [--cpus 1] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

DATASET = "{name: synthetic_signs, per_class: 100, test_per_class: 4}"
TRAIN = "{epochs: 4, batch_size: 32}"

PLAIN = """
import sys, time
from tasks.runtime import configure_tensorflow
configure_tensorflow({cpus})
import keras
from orchestrator.search_space import load_search_space
from tasks.datasets import load_dataset
from tasks.models import build_model
from tasks.poison import poison_dataset
from tasks.train import OPTIMIZERS

_, (trial,) = load_search_space(sys.argv[1])
dataset = load_dataset(trial.dataset)
x, y, _ = poison_dataset(trial.attack, dataset).training_set(dataset)
config = trial.train
start = time.perf_counter()
keras.utils.set_random_seed(config.seed)
model = build_model(config.model, x.shape[1:], dataset.n_classes)
model.compile(optimizer=getattr(keras.optimizers, OPTIMIZERS[config.optimizer])(learning_rate=config.learning_rate),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True, verbose=0)
print(time.perf_counter() - start, len(x) * config.epochs)
"""


def write_space(directory: Path, cpus: int) -> Path:
    space = directory / "space.yaml"
    space.write_text(textwrap.dedent(f"""
        name: training
        dataset: {DATASET}
        model: gtsrb_cnn
        train: {TRAIN}
        attack: {{source: 8, target: 14, trigger: big_yellow_square, poison_pct: 10}}
        defenses: [none]
        resources: {{cpu: {cpus}}}
    """))
    return space


def plain_seconds(space: Path, cpus: int) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", PLAIN.format(cpus=cpus), str(space)], cwd=REPOSITORY,
                          capture_output=True, text=True, check=True)
    seconds, samples = done.stdout.split()[-2:]
    return float(seconds), int(samples)


def bdsweep_seconds(space: Path, storage: Path) -> float:
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(space), "--storage", str(storage)],
                   cwd=REPOSITORY, capture_output=True, text=True, check=True)
    sys.path.insert(0, str(REPOSITORY))
    from orchestrator.results import query

    return float(query(storage, "SELECT train_seconds FROM results", warn=False).iloc[0, 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plain, inside, samples = [], [], 0
    with tempfile.TemporaryDirectory() as directory:
        space = write_space(Path(directory), args.cpus)
        for repeat in range(args.repeats):
            seconds, samples = plain_seconds(space, args.cpus)
            plain.append(seconds)
            inside.append(bdsweep_seconds(space, Path(directory) / f"runs{repeat}"))
            print(f"repeat {repeat}: plain {plain[-1]:.1f} s, in a trial {inside[-1]:.1f} s", flush=True)
    plain_rate, inside_rate = samples / statistics.median(plain), samples / statistics.median(inside)
    print(f"{samples} samples x epochs on {args.cpus} thread(s): plain Keras {plain_rate:.0f}/s, "
          f"in a bdsweep trial {inside_rate:.0f}/s; ratio {inside_rate / plain_rate:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
