"""Acceptance (issue 2): with the quickstart's own budget the big-square backdoor works and the model is good."""

import pytest

from tests.undefended_trial import undefended_metrics

pytestmark = pytest.mark.slow


def test_big_yellow_square_at_10_pct_is_accurate_and_backdoored():
    metrics = undefended_metrics("search_spaces/quickstart.yaml", "big_yellow_square", 10)
    assert metrics["clean_acc"] >= 0.90, metrics
    assert metrics["asr"] >= 0.90, metrics
