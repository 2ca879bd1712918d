"""Stratified splits with an explicit seed."""

from __future__ import annotations

import numpy as np


def split_stratified(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of ``y`` so that each class sends ``fraction`` of its samples to the second part.

    Parameters
    ----------
    y : ndarray of int, shape (n,)
    fraction : float in [0, 1)
        Share of each class held out, rounded per class.
    seed : int

    Returns
    -------
    kept, held_out : ndarray of int64
        Sorted, disjoint indices into ``y`` whose union is ``arange(n)``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        n_held = int(round(fraction * len(members)))
        held_out.append(rng.choice(members, size=n_held, replace=False))
    held_out = np.sort(np.concatenate(held_out)).astype(np.int64)
    kept = np.setdiff1d(np.arange(len(y)), held_out).astype(np.int64)
    return kept, held_out
