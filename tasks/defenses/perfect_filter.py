"""Control ``perfect_filter``: removes exactly the poisoned samples, the best any filter could do."""

from __future__ import annotations

from pydantic import Field

from tasks.methods import Context, DefenseData, Detected, FilterParams, TrainingSetFilter


class PerfectFilterParams(FilterParams):
    remove_cover: bool = Field(False, description="also remove the attacker's cover samples (they are not poison)")


class PerfectFilter(TrainingSetFilter):
    """Control: removes exactly the poisoned samples (it reads the ground truth), the best any filter could do."""

    name = "perfect_filter"
    Params = PerfectFilterParams
    role = "oracle"

    def detect(self, params: PerfectFilterParams, data: DefenseData, context: Context) -> Detected:
        return Detected(data.from_attacker if params.remove_cover else data.is_poison)
