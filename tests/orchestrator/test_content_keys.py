"""Early cutoff kept honest: a child keyed by its parent's content digest reads only what the digest covers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from orchestrator.store import ArtifactStore
from tasks.config import StageConfig
from tasks.defenses.filtering import Detection
from tasks.stage import Stage, Whole


class Made(StageConfig):
    clusters: int


def make_detection(config: Made) -> Detection:
    # Every configuration keeps the same samples, with other per-sample scores (cluster ids).
    return Detection.of(np.arange(6), np.array([1, 0, 0, 1, 0, 0], bool), np.zeros(6, bool), 6,
                        scores=np.arange(6) % config.clusters)


@dataclass(frozen=True)
class Scores:
    scores: np.ndarray

    metrics = {}

    def save(self, directory):
        np.save(directory / "scores.npy", self.scores)

    @classmethod
    def load(cls, directory):
        return cls(np.load(directory / "scores.npy"))


class Read(StageConfig):
    pass


def read_scores(config: Read, detection) -> Scores:
    return Scores(np.asarray(detection.scores))


def read_keep(config: Read, detection) -> Scores:
    return Scores(np.asarray(detection.keep))


DETECT = Stage("toy_detection", 1, make_detection, Detection, identity="kept_digest", view=Detection.kept)
SCORES = Stage("toy_scores", 1, read_scores, Scores)
KEEP = Stage("toy_keep", 1, read_keep, Scores)


def test_a_child_keyed_by_the_digest_is_handed_only_what_the_digest_covers(tmp_path):
    store = ArtifactStore(tmp_path)
    first, _ = store.resolve(DETECT, Made(clusters=2), [])
    second, _ = store.resolve(DETECT, Made(clusters=3), [])
    assert first.key != second.key and first.identity == second.identity  # same kept set
    # Keyed by content, a child shares one artifact between both, and it can read the kept indices...
    kept_a, record_a = store.resolve(KEEP, Read(), [first])
    kept_b, record_b = store.resolve(KEEP, Read(), [second])
    assert kept_a.key == kept_b.key and record_a.computed and not record_b.computed
    np.testing.assert_array_equal(kept_a.load().scores, [1, 2, 4, 5])
    # ...but nothing else: reading the scores through the digest fails instead of sharing wrongly.
    with pytest.raises(AttributeError, match="scores"):
        store.resolve(SCORES, Read(), [first])


def test_a_child_handed_the_whole_parent_is_keyed_by_its_recipe(tmp_path):
    store = ArtifactStore(tmp_path)
    first, _ = store.resolve(DETECT, Made(clusters=2), [])
    second, _ = store.resolve(DETECT, Made(clusters=3), [])
    read_a, record_a = store.resolve(SCORES, Read(), [Whole(first)])
    read_b, record_b = store.resolve(SCORES, Read(), [Whole(second)])
    assert read_a.key != read_b.key and record_a.computed and record_b.computed
    np.testing.assert_array_equal(read_a.load().scores, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(read_b.load().scores, [0, 1, 2, 0, 1, 2])


def test_a_stage_with_a_digest_declares_what_the_digest_covers():
    with pytest.raises(ValueError, match="identity and view"):
        Stage("bad", 1, make_detection, Detection, identity="kept_digest")
