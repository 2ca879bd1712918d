"""How close to the machine's speed the defenses of issue 19 run (benchmark of issue 19, item 7).

- ``strip``: images per second through :func:`tasks.defenses.strip.overlay_entropy` (each input's
  ``n_overlays`` superimposed copies predicted in large batches) against plain
  ``predict_on_batch`` over the same number of images in batches of the same size, on one
  ``gtsrb_cnn`` (32x32, 10 classes). Goal: ratio >= 0.8.
- ``spectre``: seconds to score 5,000 activations of width 512 in 10 classes of 500. Goal: <= 2 s.
- ``neural_cleanse``: images per second through its optimisation step (each step's batch stamped
  with every class's candidate: forward and backward through the model) against a plain training
  step of the same model on batches of the same size (``train_on_batch``). Goal: ratio >= 0.8.
  Then, with ``--nc-model``, the defaults' wall time on a ``gtsrb_cnn`` trained for a few epochs on
  ten synthetic signs (goal: under 2 minutes).
- ``i_bau``: images per second through its passes against plain training steps on batches of the
  same size. Counted, per round: the perturbation search's forward and backward pass over every
  tuning batch (its forward-only prediction of the model's own labels is not counted); per
  unlearning step, the outer loss's pass over the batch, and over the first batch the inner
  gradient's pass, ``k - 1`` Hessian-vector products and the weights' mixed second derivative
  (each a backward pass through the inner gradient: counted as one pass). Goal: ratio >= 0.8.

Each timing is the best of ``--repeats`` runs in this process (this VM's memory speed varies).
Run: ``python bench/bench_defenses.py [--threads 1] [--nc-model]``.
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


def neural_cleanse_ratio(repeats: int, steps: int = 40) -> dict:
    """Neural Cleanse's optimisation against plain training steps, images per second, on an
    untrained ``gtsrb_cnn`` with 10 classes (the rate does not depend on the weights)."""
    from tasks.defenses.neural_cleanse import ReverseConfig, reverse_triggers
    from tasks.models import build_model

    rng = np.random.default_rng(0)
    classes, batch = 10, ReverseConfig().batch_size
    model = build_model("gtsrb_cnn", (32, 32, 3), classes)
    x = rng.integers(0, 256, size=(200, 32, 32, 3), dtype=np.uint8)
    y = np.repeat(np.arange(classes), 20)
    # A fixed number of steps: no early stop, and a threshold no candidate reaches in 40 steps.
    config = ReverseConfig(steps=steps, early_stop_patience=10 ** 6, attack_succ_threshold=1.0)
    reverse_triggers(model, x, y, classes, ReverseConfig(steps=2))  # traced once
    nc_s = best_of(repeats, lambda: reverse_triggers(model, x, y, classes, config))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images = rng.integers(0, 256, size=(batch * classes, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(classes), batch)
    model.train_on_batch(images, labels)

    def plain():
        for _ in range(steps):
            model.train_on_batch(images, labels)

    plain_s = best_of(repeats, plain)
    n = steps * batch * classes
    return {"images": n, "nc_images_per_s": n / nc_s, "train_images_per_s": n / plain_s, "ratio": plain_s / nc_s}


def i_bau_ratio(repeats: int, n_tune: int = 500) -> dict:
    """I-BAU's passes against plain training steps, images per second, on an untrained
    ``gtsrb_cnn`` with 10 classes and ``n_tune`` tuning images at its defaults but one round."""
    from tasks.defenses.i_bau import Params, unlearn
    from tasks.models import build_model

    rng = np.random.default_rng(0)
    params = Params(rounds=1)
    model = build_model("gtsrb_cnn", (32, 32, 3), 10)
    x = rng.integers(0, 256, size=(n_tune, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n_tune)
    unlearn(model, x, y, params, seed=0)  # traced once
    i_bau_s = best_of(repeats, lambda: unlearn(model, x, y, params, seed=0))
    batches = -(-n_tune // params.batch_size)
    first = min(params.batch_size, n_tune)
    n = n_tune + n_tune + batches * first * (params.k + 1)  # perturbation, outer, inner passes
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images, labels = x[:params.batch_size], y[:params.batch_size]
    model.train_on_batch(images, labels)
    steps = -(-n // params.batch_size)

    def plain():
        for _ in range(steps):
            model.train_on_batch(images, labels)

    plain_s = best_of(repeats, plain)
    return {"images": n, "i_bau_images_per_s": n / i_bau_s,
            "train_images_per_s": steps * params.batch_size / plain_s,
            "ratio": (n / i_bau_s) / (steps * params.batch_size / plain_s), "seconds": i_bau_s}


def neural_cleanse_defaults_seconds() -> tuple[float, int]:
    """Wall time of Neural Cleanse's reverse engineering at its defaults on a gtsrb_cnn trained 4
    epochs on ten synthetic signs (120 a class), and the steps it ran."""
    from tasks.datasets import load_dataset
    from tasks.datasets.synthetic_signs import Config as SignsConfig
    from tasks.defenses.neural_cleanse import ReverseConfig, reverse_triggers
    from tasks.train import TrainConfig, train_from_scratch

    classes = ["speed_limit_60", "speed_limit_80", "speed_limit_120", "no_passing", "priority_road", "yield",
               "stop", "no_entry", "general_caution", "turn_right_ahead"]
    data = load_dataset(SignsConfig(name="synthetic_signs", classes=classes))
    model = train_from_scratch(TrainConfig(model="gtsrb_cnn", epochs=4), data.x_train, data.y_train, data.n_classes)
    start = time.perf_counter()
    reversed_triggers = reverse_triggers(model, data.x_tune, data.y_tune, data.n_classes, ReverseConfig())
    return time.perf_counter() - start, reversed_triggers.steps_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (a trial's resources.cpu)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nc-model", action="store_true", help="also time Neural Cleanse's defaults on a trained model")
    args = parser.parse_args()
    from tasks.runtime import configure_tensorflow

    configure_tensorflow(args.threads)
    strip = strip_ratio(args.repeats)
    print(f"strip: {strip['images']} images, {strip['strip_images_per_s']:.0f} images/s against plain predict's "
          f"{strip['predict_images_per_s']:.0f}: ratio {strip['ratio']:.2f} (goal >= 0.8)")
    print(f"spectre: 5,000 activations of width 512 in {spectre_seconds(args.repeats):.2f} s (goal <= 2 s)")
    nc = neural_cleanse_ratio(args.repeats)
    print(f"neural_cleanse: {nc['images']} images, {nc['nc_images_per_s']:.0f} images/s against plain training's "
          f"{nc['train_images_per_s']:.0f}: ratio {nc['ratio']:.2f} (goal >= 0.8)")
    ibau = i_bau_ratio(args.repeats)
    print(f"i_bau: {ibau['images']} images through its passes in {ibau['seconds']:.1f} s, "
          f"{ibau['i_bau_images_per_s']:.0f} images/s against plain training's {ibau['train_images_per_s']:.0f}: "
          f"ratio {ibau['ratio']:.2f} (goal >= 0.8)")
    if args.nc_model:
        seconds, steps = neural_cleanse_defaults_seconds()
        print(f"neural_cleanse at its defaults on a trained gtsrb_cnn, 10 classes: {seconds:.0f} s, {steps} steps "
              f"(goal < 120 s)")


if __name__ == "__main__":
    main()
