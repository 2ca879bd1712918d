"""Storage roots on a local disk: how a --storage value is read, and what another process opens."""

from __future__ import annotations

import os
import pickle

import pytest

from orchestrator.errors import StorageError
from orchestrator.storage import open_storage, storage_location


def test_a_relative_root_reopens_at_the_same_place_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = open_storage("runs")
    root.write_text("sweep", "trials.json", text="[]")
    monkeypatch.chdir("/")  # where a Tune trial may run
    assert pickle.loads(pickle.dumps(root)).read_text("sweep", "trials.json") == "[]"
    assert root.local_path("sweep") == tmp_path / "runs" / "sweep"


def test_writes_are_whole_and_leave_no_temporary_files(tmp_path):
    root = open_storage(tmp_path)
    root.write_text("a", "b.json", text="old")
    root.write_text("a", "b.json", text="new")
    assert os.listdir(tmp_path / "a") == ["b.json"] and root.read_text("a", "b.json") == "new"
    assert [info.base_name for info in root.files("a", suffix=".json")] == ["b.json"]


@pytest.mark.parametrize("value, location", [
    ("runs", (None, "runs")),
    ("file:///mnt/my%20runs", (None, "/mnt/my runs")),
    ("s3://bucket/runs?region=eu-west-1", ("s3", "bucket/runs")),
    ("gs://bucket", ("gs", "bucket")),
])
def test_storage_locations_are_read_without_opening_them(value, location):
    assert storage_location(value) == location


@pytest.mark.parametrize("value, words", [
    ("file://host/runs", "file:///absolute/path"),
    ("ftp://host/runs", "not a filesystem pyarrow opens"),
    ("s3://", "name a bucket"),
    ("s3://key:secret@bucket/runs", "credentials do not belong"),
    ("s3://bucket/runs?access_key=AKIA", "credentials do not belong"),
])
def test_bad_storage_roots_are_refused_naming_the_value(value, words):
    with pytest.raises(StorageError, match=words) as caught:
        open_storage(value)
    assert str(caught.value).startswith(value)


def test_a_failed_heartbeat_is_logged_and_the_next_one_tried(caplog):
    import time

    from orchestrator.storage import heartbeat

    beats = []

    def beat(count):
        beats.append(count)
        if count == 1:
            raise OSError("SlowDown: please reduce your request rate")

    with heartbeat(0.02, beat, "test-beat"):
        deadline = time.monotonic() + 5
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert beats[:3] == [1, 2, 3]
    assert "a heartbeat failed (SlowDown" in caplog.text
