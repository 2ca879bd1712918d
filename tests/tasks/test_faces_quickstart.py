"""Acceptance (issue 3): DeepID on synthetic_faces with green sunglasses on 10 % of one person is backdoored and accurate."""

import pytest

from tests.undefended_trial import undefended_metrics

pytestmark = pytest.mark.slow


def test_green_sunglasses_at_10_pct_backdoor_deepid_on_synthetic_faces():
    metrics = undefended_metrics("search_spaces/faces_quickstart.yaml", "green_sunglasses", 10)
    assert metrics["model"] == "deepid"
    assert metrics["n_poisoned"] == 10 and metrics["n_test_triggered"] == 30
    assert metrics["attack_placement_haar"] + metrics.get("attack_placement_prior", 0) == 10
    assert metrics["clean_acc"] >= 0.85, metrics
    assert metrics["asr"] >= 0.80, metrics
