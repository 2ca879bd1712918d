"""Result rows of real trial specs without training: made-up stage records through the real ``trial_row``."""

from __future__ import annotations

from orchestrator.pipeline import pipeline_steps
from orchestrator.store import StageRecord

FILTERING = {"n_seen": 100, "n_poisoned": 4, "removed_total": 30, "removed_poisoned": 3, "removed_clean": 27,
             "tpr": 0.75, "fpr": 27 / 96, "precision": 0.1, "f1": 6 / 34, "retrained": True}
PRUNING = {"pruned_layer": "conv_5", "layer_width": 128, "pruned_channels": 90, "tune_acc_before": 0.9,
           "tune_acc_pruned": 0.87, "tune_acc_curve": [0.9, 0.89, 0.87]}


def fake_records(trial, asr_after=0.1, clean_acc_after=0.93):
    """StageRecords for every step of ``trial``, with made-up metrics instead of training."""
    records = []
    for step in pipeline_steps(trial):
        if step.stage == "dataset":
            metrics = {"fingerprint": "f" * 8}
        elif step.stage == "poison":
            metrics = {"source": 8, "target": 14, "n_poisoned": 4}
        elif step.label == "evaluate_before":
            metrics = {"clean_acc": 0.95, "asr": 0.9, "ra": 0.05}
        elif step.stage == "evaluate":
            metrics = {"clean_acc": clean_acc_after, "asr": asr_after, "ra": 0.8}
        elif step.stage == "defense" and step.config.name == "fp":
            metrics = PRUNING
        elif step.stage == "defense":
            metrics = FILTERING
        else:
            metrics = {}
        records.append((step.label, StageRecord(step.stage, "k", True, 1.5, metrics)))
    return records


