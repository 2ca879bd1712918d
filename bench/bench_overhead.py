"""What does a trial cost beyond its own work? Goal: at most 1 s per trial (it was about 9 s).

Trains one quickstart-sized model (bundled ``synthetic_signs``, 200 images a class, the
quickstart's training) in a one-trial warm-up sweep, so the dataset, the poisoned data, the model
and its activations are cached. Then times a sweep of at least 200 detection-only trials on that
model (Spectral Signatures, ``retrain: none``, a grid of ``expected_pp_poison`` x
``eps_multiplier``: each trial computes its own detection and reads the rest from the cache) on
every slot of the local machine:

    per-trial overhead = (wall seconds x slots - sum of the rows' trial_seconds) / trials

which is everything a trial costs outside its pipeline: Tune scheduling it, the worker process
(starting one and importing TensorFlow and ART, unless a finished trial's process is reused),
reading its row, writing the marker and the row. With ``--off-trials N`` a second sweep of N
trials (other ``eps_multiplier`` values, so its detections are computed too) runs with
``BDSWEEP_REUSE_WORKERS=0``, a worker process per trial as before, for the ratio.

Ray is started once before the timed sweeps (its start-up is not a per-trial cost); the warm-up
is not timed. ``--no-loaded-artifacts`` turns the workers' in-process cache of verified artifacts
off, so each trial reads and hashes its dataset, model and activations again.
Run: ``python bench/bench_overhead.py [--trials 200] [--off-trials 40] [--no-loaded-artifacts]``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

import yaml  # noqa: E402

from orchestrator.results import query  # noqa: E402
from orchestrator.search_space import load_search_space  # noqa: E402
from orchestrator.ray_runtime import keep_local_ray_on_loopback, start_ray  # noqa: E402
from orchestrator.sweep import launch, plan_sweep, record_sweep  # noqa: E402

QUICKSTART = yaml.safe_load((REPOSITORY / "search_spaces" / "quickstart.yaml").read_text())
EXPECTED_PP_POISON = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.9]


def space(name: str, defenses: list) -> dict:
    """The quickstart's dataset, model and training with one attack setting and ``defenses``."""
    attack = {**QUICKSTART["attack"], "trigger": "yellow_square", "poison_pct": 10}
    return {"name": name, "dataset": QUICKSTART["dataset"], "model": QUICKSTART["model"], "train": QUICKSTART["train"],
            "attack": attack, "seeds": [0], "defenses": defenses, "resources": {"cpu": 1, "gpu": 0}}


def detection_grid(n_trials: int, offset: float = 0.0) -> list:
    """Spectral Signatures, detection only, over ``EXPECTED_PP_POISON`` x enough ``eps_multiplier``
    values (0.1 + 0.25 k + ``offset``) for at least ``n_trials`` trials."""
    eps = [round(0.1 + 0.25 * k + offset, 4) for k in range(math.ceil(n_trials / len(EXPECTED_PP_POISON)))]
    return [{"ss": {"expected_pp_poison": EXPECTED_PP_POISON, "eps_multiplier": eps, "retrain": "none"}}]


def run(storage: Path, spec: dict) -> tuple[int, float]:
    """Run the sweep ``spec`` under ``storage`` on every local slot; returns (trials, wall seconds)."""
    space_file = storage / f"{spec['name']}.yaml"
    space_file.write_text(yaml.safe_dump(spec))
    loaded, trials = load_search_space(space_file)
    plan = plan_sweep(trials, storage, loaded.name, loaded.resources)
    record_sweep(plan, space_file)
    printed = []
    start = time.perf_counter()
    failed = launch(plan, echo=printed.append, max_failures=0)
    wall = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{failed} trial(s) of {spec['name']} failed:\n" + "\n".join(printed))
    return len(trials), wall


def overhead(storage: Path, name: str, n_trials: int, wall: float, slots: int) -> tuple[str, float]:
    """A line on the sweep (wall time, its trials' own seconds, per-trial overhead) and that overhead in seconds."""
    rows = query(storage, "SELECT trial_seconds, worker_pid FROM results", sweep=name)
    assert len(rows) == n_trials, f"{len(rows)} rows for {n_trials} trials"
    inside = float(rows["trial_seconds"].sum())
    per_trial = (wall * slots - inside) / n_trials
    return (f"{name}: {n_trials} trials on {slots} slots in {wall:.1f} s wall; in-trial {inside:.1f} s "
            f"(mean {inside / n_trials:.2f} s); {rows['worker_pid'].nunique()} worker processes; "
            f"per-trial overhead {per_trial:.2f} s"), per_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="detection-only trials with worker reuse (default 200)")
    parser.add_argument("--off-trials", type=int, default=40, metavar="N",
                        help="trials of the worker-per-trial sweep for the ratio (0: skip; default 40)")
    parser.add_argument("--storage", type=Path, help="storage root to use (default: a temporary directory)")
    parser.add_argument("--no-loaded-artifacts", action="store_true",
                        help="workers keep no verified artifacts in memory (BDSWEEP_LOADED_ARTIFACTS=0): every "
                             "trial reads and hashes what it loads, for the in-process cache's share")
    args = parser.parse_args()

    if args.no_loaded_artifacts:
        os.environ["BDSWEEP_LOADED_ARTIFACTS"] = "0"  # before Ray starts: its workers inherit it
    keep_local_ray_on_loopback()
    import ray

    start_ray()
    # Tune warns at the end of every sweep that it found no per-trial result files: bdsweep turned them off.
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    slots = int(ray.cluster_resources()["CPU"])
    try:
        with tempfile.TemporaryDirectory(prefix="bench-overhead-") as directory:
            storage = args.storage or Path(directory)
            start = time.perf_counter()
            run(storage, space("warmup", [{"ss": {"expected_pp_poison": 0.33, "retrain": "none"}}]))
            print(f"warm-up: 1 trial (dataset, poison, training, activations) in {time.perf_counter() - start:.1f} s")

            n_on, wall_on = run(storage, space("reuse_on", detection_grid(args.trials)))
            line, on = overhead(storage, "reuse_on", n_on, wall_on, slots)
            print(line + f" = {on:.2f} of the 1 s goal")
            if args.off_trials:
                os.environ["BDSWEEP_REUSE_WORKERS"] = "0"
                n_off, wall_off = run(storage, space("reuse_off", detection_grid(args.off_trials, offset=0.125)))
                line, off = overhead(storage, "reuse_off", n_off, wall_off, slots)
                print(line)
                print(f"worker reuse: {off / on:.1f}x less overhead per trial "
                      f"({off:.2f} s -> {on:.2f} s; throughput {n_off / wall_off:.2f} -> {n_on / wall_on:.2f} trials/s)")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
