import contextlib
import json
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.store import ArtifactStore, Stage
from tasks.config import StageConfig


class CountConfig(StageConfig):
    value: int
    log: str  # file that gets one line per execution, shared across processes
    delay: float = 0.0
    hold: str = ""  # while this file exists, computing goes on


@dataclass
class Number:
    value: int

    @property
    def metrics(self):
        return {"value": self.value}

    def save(self, directory: Path):
        (directory / "number.json").write_text(json.dumps(self.value))

    @classmethod
    def load(cls, directory: Path):
        return cls(json.loads((directory / "number.json").read_text()))


def produce(config: CountConfig, *parents: Number) -> Number:
    import time

    with open(config.log, "a") as log:
        log.write(f"{config.value}\n")
    time.sleep(config.delay)
    while config.hold and os.path.exists(config.hold):
        time.sleep(0.05)
    return Number(config.value + sum(parent.value for parent in parents))


def fail(config, *parents):
    raise RuntimeError("stage crashed")


STAGE = Stage("count", 1, produce, Number)


def executions(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_second_resolve_reuses_and_loads_from_disk(tmp_path):
    store = ArtifactStore(tmp_path / "cache")
    config = CountConfig(value=3, log=str(tmp_path / "log"))
    first, record = store.resolve(STAGE, config, [])
    assert record.computed and record.metrics == {"value": 3}
    second, record = store.resolve(STAGE, config, [])
    assert not record.computed and record.metrics == {"value": 3}
    assert second.load().value == 3
    assert executions(tmp_path / "log") == 1


def test_key_depends_on_config_parents_and_version(tmp_path):
    store = ArtifactStore(tmp_path)
    config = CountConfig(value=1, log="x")
    base = store.key(STAGE, config, ["a"])
    assert base == store.key(STAGE, CountConfig(value=1, log="x"), ["a"])
    assert base != store.key(STAGE, CountConfig(value=2, log="x"), ["a"])
    assert base != store.key(STAGE, config, ["b"])
    assert base != store.key(Stage("count", 2, produce, Number), config, ["a"])


def test_parents_flow_into_children(tmp_path):
    store = ArtifactStore(tmp_path)
    parent, _ = store.resolve(STAGE, CountConfig(value=2, log=str(tmp_path / "log")), [])
    child, _ = store.resolve(STAGE, CountConfig(value=5, log=str(tmp_path / "log")), [parent])
    assert child.load().value == 7
    assert json.loads((child.path / "manifest.json").read_text())["parents"] == [parent.key]


def test_failed_stage_leaves_nothing_behind(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError, match="crashed"):
        store.resolve(Stage("count", 1, fail, Number), CountConfig(value=1, log="x"), [])
    assert [p.name for p in (tmp_path / "count").iterdir() if not p.name.endswith(".lock")] == []


def half_saved(config, *parents):
    class Broken(Number):
        def save(self, directory):
            (directory / "partial").write_text("x")
            raise OSError("disk full")

    return Broken(config.value)


def test_crash_during_save_leaves_nothing_behind(tmp_path):
    store = ArtifactStore(tmp_path)
    stage = Stage("count", 1, half_saved, Number)
    with pytest.raises(OSError, match="disk full"):
        store.resolve(stage, CountConfig(value=1, log="x"), [])
    assert [p.name for p in (tmp_path / "count").iterdir() if not p.name.endswith(".lock")] == []
    assert not store.contains(stage, store.key(stage, CountConfig(value=1, log="x"), []))


def test_losing_the_rename_race_reuses_the_winner(tmp_path, monkeypatch):
    """Where the lock is not shared (some network filesystems), two nodes can both compute."""
    store = ArtifactStore(tmp_path)
    config = CountConfig(value=4, log=str(tmp_path / "log"))
    winner = ArtifactStore(tmp_path)

    real_rename = os.rename

    def rename_after_rival(source, destination):
        monkeypatch.setattr(os, "rename", real_rename)
        winner.resolve(STAGE, config, [])  # the rival finishes first
        return real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename_after_rival)
    monkeypatch.setattr(ArtifactStore, "_lock", lambda self, stage, key: contextlib.nullcontext())
    ref, record = store.resolve(STAGE, config, [])
    assert not record.computed and ref.load().value == 4
    assert [p.name for p in (tmp_path / "count").iterdir() if p.name.startswith(".tmp")] == []


def _resolve_in_process(root, log):
    store = ArtifactStore(root)
    _, record = store.resolve(STAGE, CountConfig(value=9, log=log, delay=0.5), [])
    return record.computed


def test_concurrent_processes_compute_a_stage_once(tmp_path):
    log = str(tmp_path / "log")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        computed = pool.starmap(_resolve_in_process, [(str(tmp_path / "cache"), log)] * 4)
    assert sorted(computed) == [False, False, False, True]
    assert executions(Path(log)) == 1


def stored_number(tmp_path, value: int = 1234):
    """A store holding the artifact of ``value``: ``(store, config, its file on disk, the execution log)``."""
    log = tmp_path / "log"
    store = ArtifactStore(tmp_path / "cache")
    config = CountConfig(value=value, log=str(log))
    store.resolve(STAGE, config, [])
    return store, config, store.path(STAGE, store.key(STAGE, config, [])) / "number.json", log


def test_manifest_lists_every_file_with_its_size_and_checksum(tmp_path):
    store = ArtifactStore(tmp_path)
    ref, _ = store.resolve(STAGE, CountConfig(value=12, log=str(tmp_path / "log")), [])
    files = store.manifest(STAGE, ref.key)["files"]
    assert list(files) == ["number.json"] and files["number.json"]["size"] == len("12")
    assert len(files["number.json"]["sha256"]) == 64


def test_truncated_artifact_is_detected_on_lookup_and_rebuilt(tmp_path):
    store, config, stored, log = stored_number(tmp_path)
    stored.write_bytes(stored.read_bytes()[:2])  # "12": still valid JSON, the wrong number

    ref, record = store.resolve(STAGE, config, [])
    assert record.computed and executions(log) == 2
    assert ref.load().value == 1234 and json.loads(stored.read_text()) == 1234
    assert not [p for p in (tmp_path / "cache" / "count").iterdir() if p.name.startswith(".damaged")]


def test_flipped_byte_is_detected_on_read_and_rebuilt_before_use(tmp_path):
    store, config, stored, log = stored_number(tmp_path)
    stored.write_bytes(stored.read_bytes().replace(b"3", b"7"))  # same size, valid JSON, wrong value

    parent, record = ArtifactStore(tmp_path / "cache").resolve(STAGE, config, [])
    assert not record.computed  # sizes match: the lookup alone cannot tell
    child, _ = store.resolve(STAGE, CountConfig(value=1, log=str(log)), [parent])
    assert child.load().value == 1235  # the child was computed from the rebuilt parent, not the flipped one
    assert parent.rebuilt is not None and parent.rebuilt.computed  # what the trial's row records
    assert executions(log) == 3 and json.loads(stored.read_text()) == 1234


@pytest.mark.parametrize("damage", ["delete", "extra", "manifest"])
def test_missing_extra_or_unreadable_files_count_as_damage(tmp_path, damage):
    log = tmp_path / "log"
    store = ArtifactStore(tmp_path)
    config = CountConfig(value=5, log=str(log))
    ref, _ = store.resolve(STAGE, config, [])
    if damage == "delete":
        (ref.path / "number.json").unlink()
    elif damage == "extra":
        (ref.path / "stray.bin").write_bytes(b"\0")
    else:
        (ref.path / "manifest.json").write_text('{"truncated": ')
    again, record = store.resolve(STAGE, config, [])
    assert record.computed and again.load().value == 5 and executions(log) == 2


def test_artifacts_stored_before_manifests_listed_files_are_still_used(tmp_path):
    store, config, _, log = stored_number(tmp_path, value=6)
    key = store.key(STAGE, config, [])
    manifest_file = store.path(STAGE, key) / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    del manifest["files"]
    manifest_file.write_text(json.dumps(manifest))
    ref, record = store.resolve(STAGE, config, [])
    assert not record.computed and ref.load().value == 6 and executions(log) == 1


def test_a_dead_processs_half_written_try_is_cleaned_up_by_the_next_computation(tmp_path):
    store = ArtifactStore(tmp_path)
    config = CountConfig(value=2, log=str(tmp_path / "log"))
    key = store.key(STAGE, config, [])
    leftover = tmp_path / "count" / f".tmp-{key}-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "number.json").write_text("2")
    (leftover / "manifest.json").write_text("{}")  # killed between its manifest and its rename
    assert store.stored_keys() == set()  # what was not renamed into place is not stored
    store.resolve(STAGE, config, [])
    assert not leftover.exists() and store.contains(STAGE, key)
    assert store.stored_keys() == {(STAGE.name, key)}


def test_a_waiter_takes_over_when_the_producer_dies(tmp_path):
    log, hold = tmp_path / "log", tmp_path / "hold"
    hold.touch()  # computing takes as long as this file exists
    context = multiprocessing.get_context("spawn")
    producer = context.Process(target=_resolve_held, args=(str(tmp_path / "cache"), str(log), str(hold)), daemon=True)
    producer.start()
    deadline = time.monotonic() + 60
    while executions(log) == 0:  # the producer holds the key's lock and is computing
        assert time.monotonic() < deadline and producer.is_alive()
        time.sleep(0.05)
    with context.Pool(1) as pool:
        waiter = pool.apply_async(_resolve_held, (str(tmp_path / "cache"), str(log), str(hold)))
        time.sleep(1.0)
        assert not waiter.ready() and executions(log) == 1  # it waits for the producer...
        os.kill(producer.pid, signal.SIGKILL)  # ...which dies without a word
        hold.unlink()
        assert waiter.get(timeout=60) is True  # the waiter computed it instead of hanging
    producer.join()
    assert executions(log) == 2


def _resolve_held(root, log, hold):
    _, record = ArtifactStore(root).resolve(STAGE, CountConfig(value=8, log=log, hold=hold), [])
    return record.computed
