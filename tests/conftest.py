"""Shared fixtures: tiny datasets made in the test."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Every Ray the tests start listens on 127.0.0.1 only (see orchestrator.sweep.keep_local_ray_on_loopback).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tasks.datasets import ImageDataset  # noqa: E402


def make_dataset(n_classes: int = 4, per_class: int = 20, size: int = 12, seed: int = 0) -> ImageDataset:
    """A small ImageDataset whose class c images are noisy flat colour c (easy to learn)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(n_classes, 3))

    def split(count: int):
        y = np.repeat(np.arange(n_classes), count)
        x = palette[y][:, None, None, :] + rng.normal(0, 12, size=(len(y), size, size, 3))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = split(per_class)
    x_tune, y_tune = split(max(1, per_class // 5))
    x_test, y_test = split(max(1, per_class // 2))
    names = tuple(f"class_{c}" for c in range(n_classes))
    return ImageDataset(x_train, y_train, x_tune, y_tune, x_test, y_test, names)


@pytest.fixture
def tiny_dataset() -> ImageDataset:
    return make_dataset()
