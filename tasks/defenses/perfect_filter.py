"""Control ``perfect_filter``: removes exactly the poisoned samples, the best any filter could do."""

from __future__ import annotations

from tasks.methods import Context, DefenseData, Detected, TrainingSetFilter


class PerfectFilter(TrainingSetFilter):
    """Control: removes exactly the poisoned samples (it reads the ground truth), the best any filter could do."""

    name = "perfect_filter"

    def detect(self, params, data: DefenseData, context: Context) -> Detected:
        return Detected(data.is_poison)
