"""Result rows of real trial specs without training: made-up stage records through the real ``trial_row``."""

from __future__ import annotations

from orchestrator.pipeline import PlannedRef
from orchestrator.store import StageRecord
from tasks.plan import walk_trial

FILTERING = {"n_seen": 100, "n_poisoned": 4, "removed_total": 30, "removed_poisoned": 3, "removed_clean": 27,
             "tpr": 0.75, "fpr": 27 / 96, "precision": 0.1, "f1": 6 / 34, "n_kept": 70,
             "kept_digest": "d" * 24, "kept_everything": False}
PRUNING = {"pruned_layer": "conv_5", "layer_width": 128, "pruned_channels": 90, "tune_acc_before": 0.9,
           "tune_acc_pruned": 0.87, "tune_acc_curve": [0.9, 0.89, 0.87], "selection_digest": "s" * 24}


def fake_records(trial, asr_after=0.1, clean_acc_after=0.93):
    """``(records, positions)`` for every step of ``trial``, with made-up metrics instead of training."""
    records = []

    def fake(label, declared, config, *parents):
        stage = declared.name
        if stage == "dataset":
            metrics = {"fingerprint": "f" * 8}
        elif stage == "poison":
            metrics = {"source": 8, "target": 14, "n_poisoned": 4, "n_cover": 0}
        elif label == "evaluate_before":
            metrics = {"clean_acc": 0.95, "asr": 0.9, "ra": 0.05}
        elif stage == "evaluate":
            metrics = {"clean_acc": clean_acc_after, "asr": asr_after, "ra": 0.8}
        elif stage == "pruning":
            metrics = PRUNING
        elif stage in ("detection", "reclassification"):
            metrics = FILTERING
        else:
            metrics = {}
        records.append((label, StageRecord(stage, label, True, 1.5, metrics)))
        return PlannedRef(label), records[-1][1]

    positions = walk_trial(trial.dataset, trial.attack, trial.train, trial.defenses, fake)
    return records, positions
