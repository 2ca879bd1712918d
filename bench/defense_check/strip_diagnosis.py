"""Why STRIP rejects few triggered inputs: does the trigger still decide the prediction once a clean
image is superimposed on the input (``x + x_clean``, clipped to 255, as STRIP does)?

For each backdoored model of a defense-check sweep (rows that name their artifacts, ``train_key``
and ``poison_key``): the share of superimposed copies of triggered test inputs that the model still
classifies as the target (STRIP's premise: nearly all), the same share without superimposition
(the ASR), the mean entropy of clean and triggered inputs' superimposed copies, and the share of
superimposed pixels at 255 (saturation, which can wash a bright trigger out).

Run: ``python bench/defense_check/strip_diagnosis.py --storage <root> [--sweep defense_check_synthetic_signs]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from orchestrator.results import query
from orchestrator.storage import open_storage
from orchestrator.store import artifact_store


def superimposed(x: np.ndarray, overlays: np.ndarray) -> np.ndarray:
    """Every input of ``x`` (n, h, w, c) plus every overlay (k, h, w, c), clipped: (n * k, h, w, c) uint8."""
    total = x[:, None].astype(np.int16) + overlays[None].astype(np.int16)
    return np.clip(total, 0, 255).astype(np.uint8).reshape(-1, *x.shape[1:])


def entropy(probabilities: np.ndarray) -> np.ndarray:
    return -(probabilities * np.log(np.clip(probabilities, 1e-12, 1))).sum(axis=1)


def diagnose(model, x_clean: np.ndarray, x_triggered: np.ndarray, overlays: np.ndarray, target: int) -> dict:
    n_over = len(overlays)
    out = {}
    for name, x in (("clean", x_clean), ("triggered", x_triggered)):
        copies = superimposed(x, overlays)
        probabilities = model.predict(copies, batch_size=2048, verbose=0)
        out[f"{name}_entropy"] = float(entropy(probabilities).reshape(len(x), n_over).mean())
        out[f"{name}_saturated"] = float((copies == 255).mean())
        if name == "triggered":
            out["target_share_superimposed"] = float((probabilities.argmax(axis=1) == target).mean())
            out["asr"] = float((model.predict(x, batch_size=2048, verbose=0).argmax(axis=1) == target).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--sweep", default="defense_check_synthetic_signs")
    parser.add_argument("--inputs", type=int, default=50, help="clean and triggered test inputs per model")
    parser.add_argument("--overlays", type=int, default=20)
    args = parser.parse_args()
    from tasks.plan import DATASET, TRAIN
    from tasks.poison import POISON

    rows = query(args.storage, "SELECT DISTINCT trigger, source, poison_pct, seed, target, dataset_key, poison_key, "
                               "train_key FROM results WHERE pipeline = 'none' AND poison_pct > 0 "
                               "ORDER BY trigger, source, seed", sweep=args.sweep)
    store = artifact_store(open_storage(args.storage))
    rng = np.random.default_rng(0)
    for row in rows.itertuples(index=False):
        dataset = store.read_stored(DATASET, row.dataset_key)
        poisoned = store.read_stored(POISON, row.poison_key)
        model = store.read_stored(TRAIN, row.train_key).model
        def some(x, n):
            return np.asarray(x)[rng.choice(len(x), min(n, len(x)), replace=False)]

        clean, triggered = some(dataset.x_test, args.inputs), some(poisoned.x_test_triggered, args.inputs)
        overlays = some(dataset.x_tune, args.overlays)
        found = diagnose(model, clean, triggered, overlays, int(row.target))
        source = "all" if pd.isna(row.source) else int(row.source)
        print(f"{row.trigger:14s} source {source:>3} {row.poison_pct:g} % seed {row.seed}: ASR {found['asr']:.2f}, "
              f"target share superimposed {found['target_share_superimposed']:.2f}; entropy clean "
              f"{found['clean_entropy']:.2f}, triggered {found['triggered_entropy']:.2f} nats; saturated pixels "
              f"clean {found['clean_saturated']:.2f}, triggered {found['triggered_saturated']:.2f}")


if __name__ == "__main__":
    main()
