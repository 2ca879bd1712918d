"""One worker process runs trial after trial: its in-process cache of verified artifacts, and Tune's
reuse of the process (on real Ray on 127.0.0.1, real Keras) with a fresh process after a failure."""

from __future__ import annotations

import json
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from orchestrator import store as store_module
from orchestrator.store import LOADED_ARTIFACTS, MANIFEST, ArtifactStore, LoadedArtifacts, file_digests, file_stamps
from orchestrator.storage import open_storage
from orchestrator.trainable import run_trial_in_tune
from tasks.config import StageConfig
from tasks.stage import Stage


class VectorConfig(StageConfig):
    value: int
    log: str  # one line per computation


@dataclass(frozen=True, eq=False)
class Vector:
    values: np.ndarray
    reads = []  # one entry per load from disk, in this process

    def save(self, directory: Path) -> None:
        np.save(directory / "values.npy", self.values)

    @classmethod
    def load(cls, directory: Path) -> "Vector":
        cls.reads.append(directory)
        return cls(np.load(directory / "values.npy"))


def make_vector(config: VectorConfig) -> Vector:
    with open(config.log, "a") as log:
        log.write("computed\n")
    return Vector(np.full(1000, config.value, dtype=np.int64))


VECTOR = Stage("vector", 1, make_vector, Vector)


@pytest.fixture(autouse=True)
def empty_cache():
    LOADED_ARTIFACTS.clear()
    Vector.reads.clear()
    yield
    LOADED_ARTIFACTS.clear()


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The files whose SHA-256 the store computes, in order."""
    names = []
    real = store_module.file_sha256

    def counting(path):
        names.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(store_module, "file_sha256", counting)
    return names


def a_trial_later(root: Path, config: VectorConfig):
    """The artifact's reference as the next trial's pipeline gets it: a new store, nothing loaded yet."""
    ref, record = ArtifactStore(root).resolve(VECTOR, config, [])
    assert ref._value is None and not record.computed
    return ref


def computations(config: VectorConfig) -> int:
    return len(Path(config.log).read_text().splitlines())


def test_the_next_trial_in_the_process_gets_the_loaded_value_without_reading_or_hashing(tmp_path, hashed):
    root, config = tmp_path / "cache", VectorConfig(value=7, log=str(tmp_path / "log"))
    ArtifactStore(root).resolve(VECTOR, config, [])  # computed by an earlier trial
    hashed.clear()

    first = a_trial_later(root, config).load()
    assert len(Vector.reads) == 1 and hashed == ["values.npy"]
    second = a_trial_later(root, config).load()
    assert second is first and len(Vector.reads) == 1 and hashed == ["values.npy"]
    assert (second.values == 7).all() and computations(config) == 1


@dataclass(frozen=True, eq=False)
class Measured(Vector):
    """A value with non-finite metrics, as a poisoned set whose unchanged images have a PSNR of +inf."""

    @property
    def metrics(self) -> dict:
        return {"psnr_min": float("inf"), "auroc": float("nan")}


MEASURED = Stage("measured", 1, lambda config: Measured(make_vector(config).values), Measured)


def test_an_artifact_with_non_finite_metrics_is_served_again_in_the_process(tmp_path):
    root, config = tmp_path / "cache", VectorConfig(value=5, log=str(tmp_path / "log"))
    ArtifactStore(root).resolve(MEASURED, config, [])
    first_ref, record = ArtifactStore(root).resolve(MEASURED, config, [])
    first = first_ref.load()
    assert record.metrics["psnr_min"] == float("inf") and np.isnan(record.metrics["auroc"])
    second_ref, _ = ArtifactStore(root).resolve(MEASURED, config, [])
    assert second_ref.load() is first and computations(config) == 1


def test_shared_values_cannot_be_written_to(tmp_path):
    root, config = tmp_path / "cache", VectorConfig(value=3, log=str(tmp_path / "log"))
    ArtifactStore(root).resolve(VECTOR, config, [])
    loaded = a_trial_later(root, config).load()
    with pytest.raises(ValueError, match="read-only"):
        loaded.values[0] = 99


def rewrite_whole(directory: Path, value: int) -> None:
    """Replace the artifact in ``directory`` by another whole one (files and manifest agree)."""
    Vector(np.full(1000, value, dtype=np.int64)).save(directory)
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest.update(files=file_digests(directory), created=time.time())
    (directory / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("change", ["truncated", "flipped in place", "moved aside", "rewritten"])
def test_a_changed_artifact_is_not_served_from_the_cache(tmp_path, change):
    root, config = tmp_path / "cache", VectorConfig(value=5, log=str(tmp_path / "log"))
    ArtifactStore(root).resolve(VECTOR, config, [])
    directory = ArtifactStore(root).path(VECTOR, ArtifactStore.key(VECTOR, config, []))
    stored = directory / "values.npy"
    # Written a while ago, as a cached artifact is: a change now gives the file another modification time.
    os.utime(stored, ns=(time.time_ns() - 10**10,) * 2)
    cached = a_trial_later(root, config).load()
    later = a_trial_later(root, config)  # resolved before the change, loaded after it

    if change == "truncated":
        stored.write_bytes(stored.read_bytes()[:-8])
    elif change == "flipped in place":
        data = bytearray(stored.read_bytes())
        data[-1] ^= 0xFF  # same size: only the checksum tells
        stored.write_bytes(bytes(data))
    elif change == "moved aside":
        directory.rename(directory.parent / f".damaged-{directory.name}")
    else:
        rewrite_whole(directory, 6)

    value = later.load()
    assert value is not cached
    if change == "rewritten":
        assert (value.values == 6).all() and later.rebuilt is None and computations(config) == 1
    else:
        assert (value.values == 5).all() and later.rebuilt is not None and computations(config) == 2
    assert a_trial_later(root, config).load() is not cached  # the stale entry was not kept either


def stamped_directory(tmp_path: Path, name: str, size: int) -> tuple[Path, dict]:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "data.bin").write_bytes(b"x" * size)
    return directory, file_stamps(directory)


def test_the_cache_keeps_the_most_recently_used_entries_within_its_count_and_bytes(tmp_path):
    cache = LoadedArtifacts(max_entries=2, max_bytes=1000)
    a, b, c, big = (stamped_directory(tmp_path, name, size) for name, size in
                    [("a", 100), ("b", 100), ("c", 100), ("big", 1001)])
    key = lambda name: ("root", "stage", name, "manifest")  # noqa: E731
    cache.put(key("a"), *a, "A")
    cache.put(key("b"), *b, "B")
    assert cache.get(key("a"), a[0]) == "A"  # now b is the least recently used
    cache.put(key("c"), *c, "C")
    assert cache.get(key("b"), b[0]) is store_module.NOT_LOADED
    assert cache.get(key("a"), a[0]) == "A" and cache.get(key("c"), c[0]) == "C"
    cache.put(key("big"), *big, "BIG")  # larger than the whole budget: not kept, nothing evicted
    assert cache.get(key("big"), big[0]) is store_module.NOT_LOADED and len(cache) == 2

    small = LoadedArtifacts(max_entries=8, max_bytes=250)
    for name, entry in [("a", a), ("b", b), ("c", c)]:
        small.put(key(name), *entry, name)
    assert len(small) == 2 and small.get(key("a"), a[0]) is store_module.NOT_LOADED


# -- real Ray (one instance for the module's sweeps): one worker process for trial after trial -----

SPACE = """
name: reuse
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
model: gtsrb_cnn
train: {epochs: 1}
attack: {source: 8, target: 14, trigger: big_yellow_square, poison_pct: 50}
defenses:
  - none
  - ss: {expected_pp_poison: 0.05, retrain: none}
  - ac: {retrain: none}
resources: {cpu: 1}
"""
FLAKY_PP = 0.05  # the SS trial that fail_once_then_run makes raise on its first attempt


def run_sweep(tmp_path: Path, root: str, max_concurrent: int = 1, **launch_options):
    """Run SPACE under ``tmp_path/root``, on one slot (one trial at a time) unless ``max_concurrent``
    says otherwise; returns its rows by trial id."""
    from orchestrator.results import query
    from orchestrator.search_space import load_search_space
    from orchestrator.sweep import launch, plan_sweep, record_sweep

    space_file = tmp_path / "space.yaml"
    space_file.write_text(textwrap.dedent(SPACE))
    space, trials = load_search_space(space_file)
    plan = plan_sweep(trials, tmp_path / root, space.name, space.resources)
    record_sweep(plan, space_file)
    printed = []
    failed = launch(plan, max_concurrent=max_concurrent, echo=printed.append, **launch_options)
    assert failed == 0, "\n".join(printed)
    rows = query(tmp_path / root, "SELECT * FROM results")
    assert len(rows) == len(trials)
    return rows.set_index("trial_id").sort_index()


def fail_once_then_run(config: dict, *, trials: dict, storage, sweep: str, **options) -> None:
    """:func:`run_trial_in_tune`, but the SS trial with ``FLAKY_PP`` raises on its first attempt.

    Every attempt appends ``<trial id> <pid> raised|ran`` to ``<sweep>/attempts.txt``.
    """
    trial_id = config["trial_id"]
    attempts = open_storage(storage).local_path(sweep, "attempts.txt")
    earlier = attempts.read_text().splitlines() if attempts.exists() else []
    flaky = any(d["name"] == "ss" and d["params"]["expected_pp_poison"] == FLAKY_PP for d in trials[trial_id]["defenses"])
    failing = flaky and f"{trial_id} " not in "\n".join(earlier)
    with open(attempts, "a") as log:
        log.write(f"{trial_id} {os.getpid()} {'raised' if failing else 'ran'}\n")
    if failing:
        raise RuntimeError("injected failure")
    run_trial_in_tune(config, trials=trials, storage=storage, sweep=sweep, **options)


# Columns that say when, how long or in which process, not what a trial measured.
CIRCUMSTANCES = ("_seconds", "_computed", "finished_at", "worker_pid", "node_id")


@pytest.mark.slow
@pytest.mark.ray
def test_trials_on_one_slot_share_a_worker_a_raised_one_is_retried_elsewhere_and_rows_match_a_process_per_trial(
        tmp_path, monkeypatch, local_ray):
    """One sweep on one slot where one trial raises on its first attempt, then the same sweep with a
    process per trial: the reused workers' rows equal the fresh processes' rows."""
    import orchestrator.sweep

    plain = orchestrator.sweep.run_trial_in_tune
    monkeypatch.setattr(orchestrator.sweep, "run_trial_in_tune", fail_once_then_run)
    shared = run_sweep(tmp_path, "shared", max_failures=1)

    attempts = [line.split() for line in (tmp_path / "shared" / "reuse" / "attempts.txt").read_text().splitlines()]
    assert len(attempts) == len(shared) + 1
    raised = attempts.index(next(attempt for attempt in attempts if attempt[2] == "raised"))
    flaky_id, failed_pid, _ = attempts[raised]
    first_id, first_pid, _ = attempts[0]
    # Reuse: every attempt up to the failure ran in the first process, a trial before it included.
    assert first_id != flaky_id and {pid for _, pid, _ in attempts[:raised + 1]} == {first_pid}
    assert int(first_pid) == shared.loc[first_id, "worker_pid"]
    # No trial ran in that process after it raised; the retry and the rest ran in one other process,
    # and the retry wrote the row.
    after = attempts[raised + 1:]
    assert after and {pid for _, pid, _ in after} == {after[0][1]} != {failed_pid}
    assert shared.loc[flaky_id, "worker_pid"] == int(after[0][1])

    monkeypatch.setattr(orchestrator.sweep, "run_trial_in_tune", plain)
    monkeypatch.setenv("BDSWEEP_REUSE_WORKERS", "0")
    alone = run_sweep(tmp_path, "alone", max_concurrent=2)  # a process per trial, two at a time
    assert alone["worker_pid"].nunique() == len(alone)

    measured = [c for c in shared.columns if not c.endswith(CIRCUMSTANCES)]
    assert len(measured) > 30
    assert shared[measured].equals(alone[measured]), shared[measured].compare(alone[measured])
