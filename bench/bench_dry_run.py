"""How long does `bdsweep run SPACE --dry-run` take on the thesis grids (thousands of trials)?

Times the whole command in a fresh interpreter (imports, YAML validation, expansion into trials,
every trial's stage keys, the look-up of each unique stage in the cache), the way a user runs it,
against an empty storage root. Run: ``python bench/bench_dry_run.py [--storage s3://bucket/prefix?...]``
(an object-store root times its one listing of the cache; credentials from the environment).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def time_dry_run(space: Path, storage: str) -> tuple[float, str]:
    """Seconds the CLI's dry run of ``space`` took, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(space), "--dry-run", "--storage", str(storage)],
        cwd=REPOSITORY, capture_output=True, text=True, check=True,
    )
    return time.perf_counter() - start, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spaces", nargs="*", default=["search_spaces/thesis_gtsrb.yaml", "search_spaces/thesis_bundled.yaml"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage", help="storage root (default: an empty temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for space in args.spaces:
            times = []
            for _ in range(args.repeats):
                seconds, output = time_dry_run(REPOSITORY / space, args.storage or directory)
                times.append(seconds)
            print(output)
            print(f"{space}: dry run {min(times):.2f} s (best of {args.repeats}; all: {', '.join(f'{t:.2f}' for t in times)})\n")


if __name__ == "__main__":
    main()
