"""Peak memory and speed of loading a real-layout dataset from many small files.

Writes ``people x per_person`` JPEG files (default 500 x 100 = 50,000, 64x64) in the LFW layout
(``<Person>/<Person>_NNNN.jpg``) into a temporary folder, loads them with the ``lfw`` loader at
their own size in a fresh Python process, and reports that process's peak resident memory
(``VmHWM``, which counts the interpreter and imported libraries too) against the bytes of the
uint8 arrays it returned. Issue 3 requires the ratio to stay at or below 1.5.

Usage::

    .venv/bin/python bench/bench_loading_memory.py [--people 500] [--per-person 100] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

LIMIT = 1.5


def _write_person(args: tuple[str, int, int, int]) -> int:
    """Write one person's images: a smooth colour field (faces compress well too) with mild noise."""
    folder, person, per_person, size = args
    name = f"Person_{person:05d}"
    directory = Path(folder) / name
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(person)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for number in range(1, per_person + 1):
        base = rng.uniform(40, 215, 3).astype(np.float32)
        field = base + 40 * (ramp[:, None, None] - 0.5) + 30 * (ramp[None, :, None] - 0.5)
        pixels = np.clip(field + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(directory / f"{name}_{number:04d}.jpg", quality=90)
    return per_person


def write_dataset(folder: Path, people: int, per_person: int, size: int) -> float:
    """Write the files with one process per core; returns the seconds it took."""
    start = time.perf_counter()
    jobs = [(str(folder), person, per_person, size) for person in range(people)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        written = sum(pool.map(_write_person, jobs, chunksize=8))
    assert written == people * per_person
    return time.perf_counter() - start


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_load(root: str, min_images: int, size: int) -> dict:
    """Run in the child process: load, then read this process's peak and baseline memory."""
    from tasks.datasets import lfw

    baseline = _status_kib("VmRSS") * 1024
    start = time.perf_counter()
    data = lfw.load_dataset(lfw.Config(root=root, min_images=min_images, image_size=size))
    seconds = time.perf_counter() - start
    arrays = [data.x_train, data.x_tune, data.x_test, data.y_train, data.y_tune, data.y_test]
    return {
        "images": len(data.y_train) + len(data.y_tune) + len(data.y_test),
        "classes": data.n_classes,
        "x_bytes": sum(x.nbytes for x in arrays[:3]),
        "all_array_bytes": sum(a.nbytes for a in arrays),
        "peak_rss_bytes": _status_kib("VmHWM") * 1024,
        "baseline_rss_bytes": baseline,
        "load_seconds": seconds,
        "workers": int(os.environ.get("TF_NUM_INTRAOP_THREADS", os.cpu_count() or 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--per-person", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="image height and width in pixels, on disk and loaded")
    parser.add_argument("--measure", metavar="ROOT", help=argparse.SUPPRESS)  # the child process's mode
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_load(args.measure, args.per_person, args.size)))
        return
    mib = 2**20
    with tempfile.TemporaryDirectory(prefix="bdsweep-bench-") as folder:
        write_seconds = write_dataset(Path(folder), args.people, args.per_person, args.size)
        n_files = args.people * args.per_person
        print(f"wrote {n_files} JPEG files of {args.size}x{args.size} in {write_seconds:.1f} s", flush=True)
        # A fresh process, so that the peak is the loader's alone and not the generator's.
        command = [sys.executable, __file__, "--measure", folder, "--per-person", str(args.per_person)]
        command += ["--size", str(args.size)]
        repository = Path(__file__).resolve().parents[1]
        child = subprocess.run(command, check=True, capture_output=True, text=True, cwd=repository)
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["images"] == n_files, result
    ratio = result["peak_rss_bytes"] / result["x_bytes"]
    above_baseline = (result["peak_rss_bytes"] - result["baseline_rss_bytes"]) / result["x_bytes"]
    print(json.dumps(result, indent=1))
    print(
        f"lfw load of {result['images']} images ({result['classes']} people, {args.size}x{args.size}, "
        f"{result['workers']} threads): uint8 arrays {result['x_bytes'] / mib:.0f} MiB, "
        f"peak RSS {result['peak_rss_bytes'] / mib:.0f} MiB (baseline after imports "
        f"{result['baseline_rss_bytes'] / mib:.0f} MiB), ratio {ratio:.2f}x (limit {LIMIT}x; "
        f"{above_baseline:.2f}x above baseline), {result['load_seconds']:.1f} s, "
        f"{result['images'] / result['load_seconds']:.0f} images/s"
    )
    if ratio > LIMIT:
        sys.exit(f"peak memory {ratio:.2f}x the arrays exceeds the {LIMIT}x limit")


if __name__ == "__main__":
    main()
