"""Hand Tune a sweep's trials one by one, in constant time each, however many there are.

``tune.grid_search`` over a list of N values deep-copies the whole list for every grid point while
Tune expands the variants: measured here 0.3 / 4.6 s for 1,000 / 4,000 integers and 2.5 / 29.6 s
for as many trial dicts, quadratic in N, so a 10,000-trial sweep waited minutes before its first
trial. A searcher that suggests the next trial id costs O(1) per trial; the trial specs reach the
trainable through ``tune.with_parameters``, never through Tune's configs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from ray.tune.search import Searcher


class TrialIdSearcher(Searcher):
    """Suggests ``{"trial_id": id}`` for each of ``trial_ids`` in order, then finishes.

    Its state (the ids and how many were handed out) is saved with Tune's experiment, so a restored
    experiment goes on with the trials it had not started.
    """

    def __init__(self, trial_ids: list[str]):
        super().__init__()
        self.trial_ids = list(trial_ids)
        self.handed_out = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # nothing to optimise: every trial runs, in order

    def suggest(self, trial_id: str) -> dict | None:
        if self.handed_out >= len(self.trial_ids):
            return Searcher.FINISHED
        self.handed_out += 1
        return {"trial_id": self.trial_ids[self.handed_out - 1]}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # the row on the storage root is the result; nothing to learn from it

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps({"trial_ids": self.trial_ids, "handed_out": self.handed_out}))

    def restore(self, checkpoint_path: str) -> None:
        state = pickle.loads(Path(checkpoint_path).read_bytes())
        self.trial_ids, self.handed_out = state["trial_ids"], state["handed_out"]
