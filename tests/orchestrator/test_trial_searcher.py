"""The searcher that hands Tune a sweep's trials: in order, each once, in constant time, and restorable."""

from __future__ import annotations

from ray.tune.search import Searcher

from orchestrator.trial_searcher import TrialIdSearcher


def test_every_trial_is_suggested_once_in_order_then_the_search_finishes():
    searcher = TrialIdSearcher(["a", "b", "c"])
    assert [searcher.suggest(f"tune{i}") for i in range(4)] == [
        {"trial_id": "a"}, {"trial_id": "b"}, {"trial_id": "c"}, Searcher.FINISHED]


def test_a_restored_searcher_goes_on_where_the_saved_one_was(tmp_path):
    searcher = TrialIdSearcher(["a", "b", "c"])
    searcher.suggest("t0")
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = TrialIdSearcher([])
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert [restored.suggest("t1"), restored.suggest("t2"), restored.suggest("t3")] == [
        {"trial_id": "b"}, {"trial_id": "c"}, Searcher.FINISHED]

