import math

import numpy as np

from tasks.defenses.filtering import filtering_metrics


def test_filtering_metrics_count_and_ratios():
    is_poison = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    removed = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    metrics = filtering_metrics(is_poison, removed)
    assert metrics["n_poisoned"] == 4 and metrics["removed_total"] == 4
    assert metrics["removed_poisoned"] == 3 and metrics["removed_clean"] == 1
    assert metrics["tpr"] == 0.75 and math.isclose(metrics["fpr"], 1 / 6)
    assert metrics["precision"] == 0.75 and metrics["f1"] == 0.75


def test_ratios_without_denominator_are_nan():
    metrics = filtering_metrics(np.zeros(3, dtype=bool), np.zeros(3, dtype=bool))
    assert math.isnan(metrics["tpr"]) and math.isnan(metrics["precision"]) and metrics["fpr"] == 0
