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


def split_by_fractions(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split indices of ``y`` into parts holding ``fractions`` of every class (e.g. 75:5:20).

    Parameters
    ----------
    y : ndarray of int, shape (n,)
    fractions : tuple of floats summing to 1
    seed : int

    Returns
    -------
    list of ndarray of int64, one per fraction: sorted, disjoint, covering ``arange(n)``. Per class,
    part sizes are the rounded cumulative fractions, so every sample lands in exactly one part.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    bounds = np.cumsum((0.0, *fractions))
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        cuts = np.rint(bounds * len(members)).astype(int)
        for part, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:])):
            parts[part].append(members[start:stop])
    return [np.sort(np.concatenate(part)).astype(np.int64) for part in parts]
