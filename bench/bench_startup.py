"""How long from `bdsweep run` to the first trial started, for a 10,000-trial sweep? Goal: at most 15 s.

Writes a generated space (5 triggers x 10 poison percentages x 10 seeds x 20 Spectral Signatures
configurations = 10,000 trials on a tiny synthetic_signs), runs the CLI in a fresh interpreter
against an empty storage root, and times its output up to the first ``started`` line: loading and
expanding the space, every trial's stage keys, recording the sweep, starting Ray and Tune's first
trial. Also reports the driver's resident memory then, and (``--old-grid``) what Tune's
``grid_search`` over a list of trial dicts cost to expand, the way bdsweep launched before.
The sweep is then interrupted (Ctrl-C); the driver stops its Ray. Run: ``python bench/bench_startup.py``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]

SPACE = """
name: startup
dataset: {name: synthetic_signs, per_class: 10, test_per_class: 2}
model: gtsrb_cnn
train: {epochs: 1}
attack:
  source: 8
  target: 14
  trigger: [yellow_square, white_square, big_yellow_square, yellow_pattern, white_pattern]
  poison_pct: [1, 2, 3, 4, 5, 6, 8, 10, 15, 20]
seeds: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
defenses:
  - ss: {expected_pp_poison: [0.01, 0.05, 0.1, 0.5], eps_multiplier: [0.5, 1, 1.5, 3, 5], retrain: none}
resources: {cpu: 1}
"""


def resident_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def time_first_trial(storage: Path) -> tuple[float, float, list[str]]:
    """Seconds to the first started trial, the driver's MiB then, and what it printed before."""
    space = storage / "space.yaml"
    space.write_text(SPACE)
    start = time.perf_counter()
    driver = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", str(space), "--storage", str(storage / "runs")],
        cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed = []
    try:
        for line in driver.stdout:
            printed.append(line.rstrip())
            if line.lstrip().startswith("started"):
                return time.perf_counter() - start, resident_mb(driver.pid), printed
        raise RuntimeError("the sweep ended before a trial started:\n" + "\n".join(printed))
    finally:
        driver.send_signal(signal.SIGINT)  # Tune stops, the driver shuts its Ray down
        try:
            driver.wait(timeout=120)
        except subprocess.TimeoutExpired:
            driver.kill()


def old_grid_seconds(n: int) -> float:
    """Seconds Tune took to expand ``grid_search`` over ``n`` trial dicts (bdsweep's launch before)."""
    from ray import tune
    from ray.tune.search.variant_generator import generate_variants

    spec = {"trial": tune.grid_search([{"trial_id": f"{i:016x}", "label": "yellow_square 4% seed=0 ss"} for i in range(n)])}
    start = time.perf_counter()
    for _ in generate_variants(spec):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-grid", type=int, default=0, metavar="N",
                        help="also time the old grid_search expansion of N trial dicts (e.g. 4000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as directory:
        seconds, memory, printed = time_first_trial(Path(directory))
    print("\n".join(line for line in printed if line.startswith(("sweep", "unique"))))
    print(f"launch to first trial started: {seconds:.1f} s = {seconds / 15:.2f} of the 15 s goal; "
          f"driver resident memory then {memory:.0f} MiB")
    if args.old_grid:
        print(f"old launch, grid_search over {args.old_grid} trial dicts: {old_grid_seconds(args.old_grid):.1f} s to expand")


if __name__ == "__main__":
    main()
