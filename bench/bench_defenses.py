"""How close to the machine's speed the defenses of issue 19 run (benchmark of issue 19, item 7).

- ``strip``: images per second through :func:`tasks.defenses.strip.overlay_entropy` (each input's
  ``n_overlays`` superimposed copies predicted in large batches) against plain
  ``predict_on_batch`` over the same number of images in batches of the same size, on one
  ``gtsrb_cnn`` (32x32, 10 classes). Goal: ratio >= 0.8.
- ``spectre``: seconds to score 5,000 activations of width 512 in 10 classes of 500. Goal: <= 2 s.

Each timing is the best of ``--repeats`` runs in this process (this VM's memory speed varies).
Neural Cleanse and I-BAU are not built yet. Run: ``python bench/bench_defenses.py [--threads 1]``.
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np


def best_of(repeats: int, function) -> float:
    """The shortest of ``repeats`` timed calls of ``function()``, in seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def strip_ratio(repeats: int, inputs: int = 60, overlays: int = 100) -> dict:
    """STRIP's and plain prediction's throughput (images/s) on ``inputs * overlays`` images."""
    from tasks.defenses.strip import IMAGES_PER_PREDICTION, overlay_entropy
    from tasks.models import build_model

    rng = np.random.default_rng(0)
    model = build_model("gtsrb_cnn", (32, 32, 3), 10)
    x = rng.integers(0, 128, size=(inputs, 32, 32, 3), dtype=np.uint8)
    clean = rng.integers(0, 128, size=(overlays, 32, 32, 3), dtype=np.uint8)
    images = rng.integers(0, 256, size=(inputs * overlays, 32, 32, 3), dtype=np.uint8)
    batch = (IMAGES_PER_PREDICTION // overlays) * overlays

    def plain():
        for start in range(0, len(images), batch):
            model.predict_on_batch(images[start:start + batch])

    overlay_entropy(model, x[:2], clean)  # traced once, as plain's first call below is
    plain()
    strip_s, plain_s = best_of(repeats, lambda: overlay_entropy(model, x, clean)), best_of(repeats, plain)
    n = inputs * overlays
    return {"images": n, "strip_images_per_s": n / strip_s, "predict_images_per_s": n / plain_s,
            "ratio": plain_s / strip_s}


def spectre_seconds(repeats: int) -> float:
    from tasks.defenses.spectre import Params, Spectre
    from tasks.methods import Context, DefenseData
    from tasks.train import TrainConfig

    rng = np.random.default_rng(0)
    activations = np.maximum(rng.normal(0, 1, (5000, 512)), 0).astype(np.float32)  # ReLU-like
    y = np.repeat(np.arange(10), 500)
    data = DefenseData(np.zeros((5000, 1, 1, 3), np.uint8), y, np.zeros(5000, bool),
                       np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0, np.int64), 10)
    context = Context(seed=0, train=TrainConfig(model="gtsrb_cnn"), prepared=(SimpleNamespace(values=activations),))
    return best_of(repeats, lambda: Spectre().detect(Params(), data, context))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (a trial's resources.cpu)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from tasks.runtime import configure_tensorflow

    configure_tensorflow(args.threads)
    strip = strip_ratio(args.repeats)
    print(f"strip: {strip['images']} images, {strip['strip_images_per_s']:.0f} images/s against plain predict's "
          f"{strip['predict_images_per_s']:.0f}: ratio {strip['ratio']:.2f} (goal >= 0.8)")
    print(f"spectre: 5,000 activations of width 512 in {spectre_seconds(args.repeats):.2f} s (goal <= 2 s)")


if __name__ == "__main__":
    main()
