"""``corner_filter``: flag the training samples whose bottom-right corner is an outlier in their class."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tasks.methods import Context, DefenseData, Detected, FilterParams, Metric, TrainingSetFilter


class Params(FilterParams):
    window: int = Field(4, ge=1, le=16, description="side of the corner compared, in pixels")
    share: float = Field(0.1, gt=0, lt=1, description="share of each class flagged (the farthest corners)")


class CornerFilter(TrainingSetFilter):
    """Per class, removes the share of samples whose bottom-right corner lies farthest from the class median."""

    Params = Params
    metrics = (Metric("corner_threshold", float, "mean over classes of the distance above which a corner is flagged"),)

    def detect(self, params: Params, data: DefenseData, context: Context) -> Detected:
        corners = data.x[:, -params.window:, -params.window:, :].reshape(len(data.x), -1).astype(np.float64)
        distance = np.zeros(len(data.x))
        flagged = np.zeros(len(data.x), dtype=bool)
        thresholds = []
        for label in np.unique(data.y):
            members = np.flatnonzero(data.y == label)
            distance[members] = np.linalg.norm(corners[members] - np.median(corners[members], axis=0), axis=1)
            threshold = np.quantile(distance[members], 1 - params.share)
            flagged[members] = distance[members] > threshold
            thresholds.append(threshold)
        return Detected(flagged, {"corner_threshold": float(np.mean(thresholds))}, distance)
