"""Does Neural Cleanse flag the target with the paper's budget? Reverse-engineers the triggers of
the all-to-one BadNets models of a defense-check sweep again with more steps and every tuning image,
and prints the target's anomaly index and rank beside the defaults' (the sweep's rows).

Run: ``python bench/defense_check/nc_steps.py --storage <root> [--sweep defense_check_synthetic_signs]
[--steps 1000] [--samples-per-class 30]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from orchestrator.results import query
from orchestrator.storage import open_storage
from orchestrator.store import artifact_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--sweep", default="defense_check_synthetic_signs")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--samples-per-class", type=int, default=30)
    parser.add_argument("--seed", type=int, action="append", help="seeds to run (default: every one)")
    args = parser.parse_args()
    from tasks.defenses.neural_cleanse import ReverseConfig, anomaly_index, reverse_triggers
    from tasks.plan import DATASET, TRAIN

    rows = query(args.storage, "SELECT seed, target, asr_before, dataset_key, train_key, d1_anomaly_index, d1_mask_l1 "
                               "FROM results WHERE pipeline = 'neural_cleanse' AND trigger = 'white_pattern' "
                               "AND source IS NULL AND poison_pct > 0 ORDER BY seed", sweep=args.sweep)
    store = artifact_store(open_storage(args.storage))
    for row in rows.itertuples(index=False):
        if args.seed and row.seed not in args.seed:
            continue
        dataset = store.read_stored(DATASET, row.dataset_key)
        model = store.read_stored(TRAIN, row.train_key).model
        config = ReverseConfig(steps=args.steps, samples_per_class=args.samples_per_class, seed=int(row.seed))
        start = time.perf_counter()
        found = reverse_triggers(model, dataset.x_tune, dataset.y_tune, dataset.n_classes, config)
        index = anomaly_index(found.l1)
        target = int(row.target)
        rank = 1 + int((found.l1 < found.l1[target]).sum())
        default_rank = 1 + int((np.asarray(row.d1_mask_l1) < np.asarray(row.d1_mask_l1)[target]).sum())
        print(f"seed {row.seed} (ASR {row.asr_before:.3f}): defaults: index {row.d1_anomaly_index:.2f}, target rank "
              f"{default_rank}; {args.steps} steps, {args.samples_per_class} a class: index {index[target]:.2f}, "
              f"target rank {rank}, {found.steps_run} steps run, {time.perf_counter() - start:.0f} s; "
              f"L1 target {found.l1[target]:.1f}, median {np.median(found.l1):.1f}")


if __name__ == "__main__":
    main()
