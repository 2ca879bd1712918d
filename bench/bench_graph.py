"""What does the minimal stage graph save? Benchmarks a and b of issue 11, and a plan's savings.

``python bench/bench_graph.py run``: the same small grid (two backdoored models; Spectral
Signatures 3 x 3 with ``retrain: full``; Data Provenance with three ``eps``; perfect and random
filters) run twice by the CLI from an empty storage root, once with ``--no-cache`` (each trial
computes its whole pipeline alone, in a store of its own: the naive orchestrator) and once as
bdsweep runs it. Prints, for each, wall seconds and compute seconds (the sum of the rows'
``trial_seconds``), and the ratios (a); and (b) retrainings executed (the ``retrain`` manifests in
the cache) over the distinct (train config, mode, base or architecture, kept digest) that the
rows' detections name: the goal is at most 1.05.

``python bench/bench_graph.py plan SPACE``: the dry run's upper bound on retrainings, and for
Spectral Signatures the retrainings a run will do at most, from the distinct removed shares
``min(1, eps * pp)`` below 1 per (model, score, layer) — a share of 1 removes everything and
retrains nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

SPACE = """
name: graph
dataset: {name: synthetic_signs, per_class: 20, test_per_class: 4}
model: gtsrb_cnn
train: {epochs: 2}
attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: [20, 50]}
defenses:
  - ss: {expected_pp_poison: [0.05, 0.1, 0.2], eps_multiplier: [1, 1.5, 2], retrain: full}
  - dp: {mode: trusted, eps: [0.0, 0.01, 0.05], detection_epochs: 1}
  - perfect_filter
  - random_filter: {fraction: 0.1}
resources: {cpu: 1}
"""


def run_sweep(storage: Path, *extra: str) -> float:
    """Wall seconds of ``bdsweep run`` of :data:`SPACE` into ``storage``."""
    space = storage / "space.yaml"
    space.write_text(SPACE)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(space), "--storage", str(storage / "runs"),
                    *extra], cwd=REPOSITORY, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def retraining_ratio(storage: Path) -> tuple[int, int]:
    """(retrain artifacts in the cache, distinct retraining inputs the rows name).

    A retraining's inputs are the model's training (its attack setting and train config), the
    mode, the base (the pipeline before it, for ``finetune``) and the digest of the kept indices.
    Rows whose filter handed on the trained model itself (nothing removed) or none name no retraining.
    """
    from orchestrator.results import query

    rows = query(storage, "SELECT * FROM results", warn=False)
    cache = storage / "cache"
    executed = len(list((cache / "retrain").glob("*/manifest.json")))
    trained = {json.loads(path.read_text())["key"] for path in (cache / "train").glob("*/manifest.json")}
    training = [c for c in sorted(rows.columns) if c.startswith(("train_", "dataset_")) and not c.endswith(
        ("_seconds", "_computed", "_fingerprint"))] + ["trigger", "poison_pct", "seed"]
    distinct = set()
    for _, row in rows.iterrows():
        for position in range(1, int(row["n_defenses"]) + 1):
            key, mode = row.get(f"d{position}_retrain_key"), row.get(f"d{position}_retrain")
            if not isinstance(key, str) or key in trained:
                continue
            base = tuple(row["pipeline"].split(">")[:position - 1]) if mode == "finetune" else ()
            distinct.add((tuple(str(row[c]) for c in training), mode, base, row[f"d{position}_kept_digest"]))
    return executed, len(distinct)


def bench_run() -> None:
    with tempfile.TemporaryDirectory() as naive_dir, tempfile.TemporaryDirectory() as graph_dir:
        from orchestrator.results import query

        naive, graph = Path(naive_dir), Path(graph_dir)
        naive_wall = run_sweep(naive, "--no-cache")
        graph_wall = run_sweep(graph)
        naive_compute = float(query(naive / "runs", "SELECT sum(trial_seconds) FROM results", warn=False).iloc[0, 0])
        graph_compute = float(query(graph / "runs", "SELECT sum(trial_seconds) FROM results", warn=False).iloc[0, 0])
        trials = int(query(graph / "runs", "SELECT count(*) FROM results", warn=False).iloc[0, 0])
        print(f"a. {trials} trials, 2 slots")
        print(f"   naive (--no-cache): wall {naive_wall:7.1f} s, compute {naive_compute:7.1f} s")
        print(f"   bdsweep:            wall {graph_wall:7.1f} s, compute {graph_compute:7.1f} s")
        print(f"   ratio naive / bdsweep: wall {naive_wall / graph_wall:.2f}x, compute {naive_compute / graph_compute:.2f}x")
        executed, distinct = retraining_ratio(graph / "runs")
        print(f"b. retrainings executed {executed}, distinct (train config, mode, base, kept digest) {distinct}: "
              f"ratio {executed / distinct:.3f} (goal <= 1.05)")


def bench_plan(space: str) -> None:
    from orchestrator.pipeline import stage_keys
    from orchestrator.search_space import load_search_space

    _, trials = load_search_space(space)
    upper = {}
    ss_trials, ss_sets = Counter(), set()
    for trial in trials:
        keys = stage_keys(trial)
        upper.update({key: stage for stage, key in keys.values()})
        model = trial.model_dump_json(include={"dataset", "attack", "train"})
        for position, spec in enumerate(trial.defenses, start=1):
            if spec.name == "ss" and spec.params["retrain"] != "none":
                share = min(1.0, spec.params["eps_multiplier"] * spec.params["expected_pp_poison"])
                before = tuple(d.model_dump_json() for d in trial.defenses[:position - 1])
                ss_trials[(model, before)] += 1
                if share < 1:
                    ss_sets.add((model, before, spec.params["score"], spec.params["layer"], share,
                                 spec.params["retrain"]))
    retrain_upper = Counter(upper.values())["retrain"]
    ss_upper = sum(ss_trials.values())
    print(f"{space}: {len(trials)} trials; retrain stages at most {retrain_upper} (dry run)")
    print(f"  Spectral Signatures with retraining: {ss_upper} configurations x models, at most {len(ss_sets)} "
          f"retrainings (distinct shares below 1): at least {ss_upper - len(ss_sets)} saved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run")
    plan = sub.add_parser("plan")
    plan.add_argument("space", nargs="?", default="search_spaces/thesis_bundled.yaml")
    args = parser.parse_args()
    bench_run() if args.command == "run" else bench_plan(args.space)


if __name__ == "__main__":
    main()
