"""How much faster is the cached-activation pruning curve than evaluating the whole network per step?

Both compute the same tuning-set accuracy after pruning each prefix of the channel ranking of one
conv layer of ``gtsrb_cnn`` on ``synthetic_signs`` tuning images. The naive way zero-masks the
channels in the model's weights and runs the whole network at every step; bdsweep's way runs the
layers after the pruned one on the cached activations. Run: ``python bench/bench_pruning_curve.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tasks.runtime import configure_tensorflow


def naive_curve(model, layer, order, x, y, batch_size=256):
    from tasks.evaluate import predict_labels

    target = model.get_layer(layer)
    kernel, bias = (w.copy() for w in target.get_weights())
    accuracy = []
    for k in range(len(order)):
        if k:
            kernel[..., order[k - 1]] = 0
            bias[order[k - 1]] = 0
            target.set_weights([kernel, bias])
        accuracy.append(np.mean(predict_labels(model, x, batch_size) == y))
    return np.array(accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune-per-class", type=int, default=20, help="tuning images per class (43 classes)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_tensorflow(args.threads)

    from tasks.datasets.synthetic_signs import render_synthetic_signs
    from tasks.defenses.fine_pruning import pruning_curve
    from tasks.models import build_model
    from tasks.train import TrainConfig, copy_model, fit_model

    x, y = render_synthetic_signs(args.tune_per_class, seed=7)
    model = fit_model(TrainConfig(model="gtsrb_cnn", epochs=1), build_model("gtsrb_cnn", x.shape[1:], 43), x, y)
    for layer in ("conv_6", "conv_5"):
        start = time.perf_counter()
        curve = pruning_curve(model, layer, x, y)
        cached = time.perf_counter() - start
        start = time.perf_counter()
        naive = naive_curve(copy_model(model), layer, curve.order, x, y)
        whole = time.perf_counter() - start
        assert np.allclose(naive, curve.accuracy), "both ways must give the same curve"
        print(
            f"{layer}: {len(curve.order)} steps on {len(x)} tuning images, {args.threads} thread(s): "
            f"cached tail {cached:.2f} s, whole network {whole:.2f} s, speed-up {whole / cached:.1f}x"
        )


if __name__ == "__main__":
    main()
