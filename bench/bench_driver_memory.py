"""How does the driver's memory grow with the trials Tune has run? (issue 11: check it at 10,000 trials)

Runs ``bdsweep run`` (plain output) of a sweep of ``--trials`` Spectral Signatures configurations
with ``retrain: none`` on one tiny backdoored model, so after the first trial every trial is one
small detection stage (its evaluation is the undefended one, cached). Samples the driver's resident
memory as trials complete, then fits MiB against completed trials: the slope is what each finished
trial costs the driver, and the fit's value at 10,000 trials is the estimate printed beside the
measured points. Run: ``python bench/bench_driver_memory.py [--trials 1000]``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]

SPACE = """
name: memory
dataset: {{name: synthetic_signs, per_class: 10, test_per_class: 2}}
model: gtsrb_cnn
train: {{epochs: 1}}
attack: {{source: 8, target: 14, trigger: big_yellow_square, poison_pct: 20}}
defenses:
  - ss: {{expected_pp_poison: {pp}, eps_multiplier: {eps}, retrain: none}}
resources: {{cpu: 1}}
"""


def space_text(n_trials: int) -> str:
    """A space of exactly ``n_trials`` SS configurations (pp x eps grids whose products stay below 1)."""
    n_pp = 20
    n_eps = -(-n_trials // n_pp)
    pp = [round(0.001 * (k + 1), 4) for k in range(n_pp)]
    eps = [round(0.5 + 0.01 * k, 3) for k in range(n_eps)]
    return SPACE.format(pp=pp, eps=eps)


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100, help="sample the driver's memory every N completed trials")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        space = Path(directory) / "space.yaml"
        space.write_text(space_text(args.trials))
        start = time.perf_counter()
        driver = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "run", str(space), "--storage", str(Path(directory) / "runs")],
            cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        points = []
        for line in driver.stdout:
            if (match := re.match(r"\[(\d+)/(\d+)\] done", line)) and int(match[1]) % args.every == 0:
                points.append((int(match[1]), resident_mb(driver.pid), time.perf_counter() - start))
                print(f"{points[-1][0]:6d} trials done: driver {points[-1][1]:.0f} MiB ({points[-1][2]:.0f} s)", flush=True)
        driver.wait()
    done, memory = np.array([p[0] for p in points]), np.array([p[1] for p in points])
    later = done >= done.max() / 2  # past the start-up transient
    slope, intercept = np.polyfit(done[later], memory[later], 1)
    print(f"driver memory grows {slope * 1024:.1f} KiB per finished trial; "
          f"at {done.max()} trials {memory[-1]:.0f} MiB; fitted at 10,000 trials {intercept + slope * 10_000:.0f} MiB")


if __name__ == "__main__":
    main()
