"""Storage roots on an object store: a real S3 server (moto) on 127.0.0.1, spoken to by pyarrow.

The artifact store, its lease, result rows and SQL over them, on ``s3://`` as on a local disk.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import re
import time
from pathlib import Path

import pytest

from orchestrator.errors import StorageError
from orchestrator.lease import lease
from orchestrator.results import finished_trial_ids, query, read_row, write_row
from orchestrator.storage import StorageRoot, open_storage
from orchestrator.store import ObjectArtifactStore, artifact_store
from tests.orchestrator.test_store import STAGE, CountConfig, executions


def test_an_s3_root_reads_writes_lists_and_pickles(s3_root):
    root = open_storage(s3_root)
    assert not root.is_local and str(root).startswith("s3://") and "endpoint" not in str(root)
    with pytest.raises(FileNotFoundError):
        root.read_text("sweep", "nothing.json")
    root.write_text("sweep", "running", "a.json", text="{}")
    root.write_bytes("sweep", "errors", "b.txt", data=b"Traceback")
    before = time.time()
    root.write_bytes("sweep", "weights.tmp", data=b"an artifact's file may end in .tmp")
    after = time.time()
    assert root.read_text("sweep", "running", "a.json") == "{}" and root.exists("sweep", "errors", "b.txt")
    assert [info.base_name for info in root.files("sweep", "running", suffix=".json")] == ["a.json"]
    assert sorted(root.relative(info, "sweep") for info in root.files("sweep", recursive=True)) == [
        "errors/b.txt", "running/a.json", "weights.tmp"]
    # Seconds since the epoch, as time.time() counts them (the server keeps whole seconds).
    assert root.directories() == ["sweep"] and before - 1 <= root.mtime("sweep", "weights.tmp") <= after + 1
    assert pickle.loads(pickle.dumps(root)).read_text("sweep", "running", "a.json") == "{}"
    root.delete("sweep", "running", "a.json")
    root.delete("sweep", "running", "a.json")  # already gone: fine
    root.delete_tree("sweep")
    assert root.files(recursive=True) == []


def test_a_bucket_that_does_not_exist_is_named(s3_server):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        open_storage(f"s3://no-such-bucket/runs?endpoint_override={s3_server}&scheme=http")


def _count_under_lease(uri: str, counter: str, rounds: int) -> None:
    root = open_storage(uri)
    for _ in range(rounds):
        with lease(root, "locks", "k", beat=0.5, poll=0.02):
            # A read-modify-write that loses updates unless one process at a time does it.
            value = int(root.read_text(counter)) if root.exists(counter) else 0
            time.sleep(0.02)
            root.write_text(counter, text=str(value + 1))


@pytest.mark.parametrize("where", ["s3", "local"])
def test_the_lease_lets_one_process_at_a_time_in(where, s3_root, tmp_path):
    uri = s3_root if where == "s3" else str(tmp_path / "runs")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_count_under_lease, [(uri, "counter", 5)] * 4)
    root = open_storage(uri)
    assert root.read_text("counter") == "20"
    assert root.files("locks", "k") == [], "every ticket was given back"


def test_a_dead_contenders_objects_are_taken_over(s3_root, caplog):
    root = open_storage(s3_root)
    # What a process SIGKILLed while holding the lease leaves: a ticket that never beats again.
    root.write_bytes("locks", "k", "b-ticket-000000000001-dead", data=b"7")
    root.write_bytes("locks", "k", "a-entering-alsodead", data=b"0")
    with caplog.at_level(logging.WARNING, logger="bdsweep.lease"):
        with lease(root, "locks", "k", beat=0.2, poll=0.05):
            taken = [record.getMessage() for record in caplog.records]
            held = [info.base_name for info in root.files("locks", "k")]
    # Each dead object was deleted once, by the waiter that had seen it make no beat (for three of
    # them: orchestrator.lease), and then the lease was its own, numbered after the dead ticket.
    assert sorted(message.split()[2] for message in taken) == ["a-entering-alsodead", "b-ticket-000000000001-dead"]
    assert all(re.fullmatch(r"lease locks/k: \S+ made no beat for \d+ s; taking it as dead", m) for m in taken), taken
    assert len(held) == 1 and held[0].startswith("b-ticket-000000000002-")
    assert root.files("locks", "k") == []


def stores(s3_root, tmp_path, nodes=2):
    """Stores on one S3 root as ``nodes`` different machines see it: each its own node-local cache."""
    return [ObjectArtifactStore(open_storage(s3_root), tmp_path / f"node{n}", beat=0.5, poll=0.05) for n in range(nodes)]


def test_an_artifact_computed_on_one_node_is_reused_on_another(s3_root, tmp_path):
    first, second = stores(s3_root, tmp_path)
    log = tmp_path / "log"
    parent, record = first.resolve(STAGE, CountConfig(value=3, log=str(log)), [])
    assert record.computed and isinstance(artifact_store(open_storage(s3_root)), ObjectArtifactStore)
    again, record = second.resolve(STAGE, CountConfig(value=3, log=str(log)), [])
    assert not record.computed and record.metrics == {"value": 3}
    child, _ = second.resolve(STAGE, CountConfig(value=5, log=str(log)), [again])
    assert child.load().value == 8 and executions(log) == 2
    assert first.stored_keys() == {("count", parent.key), ("count", child.key)}
    assert second.manifest(STAGE, child.key)["parents"] == [parent.key]
    assert (tmp_path / "node1").is_dir(), "the second node read through its own copy"


def _resolve_on_a_node(uri, node_cache, log):
    store = ObjectArtifactStore(open_storage(uri), node_cache, beat=0.5, poll=0.05)
    _, record = store.resolve(STAGE, CountConfig(value=9, log=log, delay=0.5), [])
    return record.computed


def test_concurrent_nodes_compute_a_stage_once(s3_root, tmp_path):
    log = str(tmp_path / "log")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        computed = pool.starmap(_resolve_on_a_node, [(s3_root, str(tmp_path / f"node{n}"), log) for n in range(4)])
    assert sorted(computed) == [False, False, False, True]
    assert executions(Path(log)) == 1


def test_trials_on_one_node_read_one_artifact_at_once(s3_root, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    producer, = stores(s3_root, tmp_path, nodes=1)
    config = CountConfig(value=6, log=str(tmp_path / "log"))
    producer.resolve(STAGE, config, [])

    def read_on_node_1(_):
        store = ObjectArtifactStore(open_storage(s3_root), tmp_path / "node1")
        return [store.resolve(STAGE, config, [])[0].load().value for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(read_on_node_1, range(4))) == [[6] * 5] * 4
    assert executions(tmp_path / "log") == 1
    assert [p.name for p in (tmp_path / "node1").glob("*/count/*")] == [producer.key(STAGE, config, [])]


def test_damaged_objects_are_detected_and_rebuilt(s3_root, tmp_path):
    first, second, third = stores(s3_root, tmp_path, nodes=3)
    log = tmp_path / "log"
    config = CountConfig(value=1234, log=str(log))
    ref, _ = first.resolve(STAGE, config, [])
    root = open_storage(s3_root)
    stored = ("cache", "count", ref.key, "number.json")
    good = root.read_bytes(*stored)

    root.write_bytes(*stored, data=good[:-1])  # truncated: seen from the listing's sizes
    _, record = second.resolve(STAGE, config, [])
    assert record.computed and executions(log) == 2
    assert root.read_bytes(*stored) == good

    root.write_bytes(*stored, data=good.replace(b"4", b"5"))  # one byte flipped: same size, wrong SHA-256
    ref, record = third.resolve(STAGE, config, [])
    assert not record.computed  # the sizes match
    assert ref.load().value == 1234 and ref.rebuilt is not None and ref.rebuilt.computed
    assert executions(log) == 3 and root.read_bytes(*stored) == good

    root.delete(*stored)  # a file gone
    _, record = second.resolve(STAGE, config, [])
    assert record.computed and executions(log) == 4 and root.read_bytes(*stored) == good

    # A node's own copy damaged: fetched again, nothing computed.
    ref, _ = third.resolve(STAGE, config, [])
    assert ref.load().value == 1234
    copy = third._readable(ref, third.manifest(STAGE, ref.key)) / "number.json"
    assert copy.is_relative_to(tmp_path / "node2")
    copy.write_text("9999")
    ref, _ = third.resolve(STAGE, config, [])
    assert ref.load().value == 1234 and ref.rebuilt is None and executions(log) == 4


def test_a_failed_download_is_an_error_not_damage(s3_root, tmp_path, monkeypatch):
    first, second = stores(s3_root, tmp_path)
    log = tmp_path / "log"
    config = CountConfig(value=5, log=str(log))
    first.resolve(STAGE, config, [])
    ref, _ = second.resolve(STAGE, config, [])

    def time_out(self, *parts, to):
        raise OSError("AWS Error NETWORK_CONNECTION during GetObject operation")

    monkeypatch.setattr(StorageRoot, "download", time_out)
    with pytest.raises(OSError, match="NETWORK_CONNECTION"):
        ref.load()
    assert second.contains(STAGE, ref.key) and executions(log) == 1, "the stored artifact was kept"


def test_a_dead_producers_partial_upload_is_cleared(s3_root, tmp_path):
    (store,) = stores(s3_root, tmp_path, nodes=1)
    config = CountConfig(value=2, log=str(tmp_path / "log"))
    key = store.key(STAGE, config, [])
    root = open_storage(s3_root)
    root.write_text("cache", "count", key, "stray.bin", text="half an upload, no manifest")
    _, record = store.resolve(STAGE, config, [])
    assert record.computed
    assert sorted(info.base_name for info in root.files("cache", "count", key)) == ["manifest.json", "number.json"]


def test_rows_on_s3_are_written_read_and_queried(s3_root):
    def row(trial_id, **extra):
        return {"sweep": "s", "trial_id": trial_id, "dataset": "synthetic_signs", "model": "gtsrb_cnn",
                "clean_acc_after": 0.9, **extra}

    with pytest.raises(StorageError, match="no result files"):
        query(s3_root, "SELECT * FROM results")
    write_row(s3_root, "s", row("a"))
    write_row(s3_root, "s", row("b", d1_tpr=0.5))  # rows of different pipelines have different columns
    write_row(s3_root, "s", row("a", clean_acc_after=0.1))  # written again: still one row
    write_row(s3_root, "other", row("c", sweep="other"))
    assert finished_trial_ids(s3_root, "s") == {"a", "b"}
    assert read_row(s3_root, "s", "synthetic_signs", "gtsrb_cnn", "a")["clean_acc_after"] == 0.1
    assert read_row(s3_root, "s", "synthetic_signs", "gtsrb_cnn", "zz") is None
    frame = query(s3_root, "SELECT trial_id, model, clean_acc_after, d1_tpr FROM results WHERE sweep = 's' ORDER BY trial_id")
    assert frame.trial_id.tolist() == ["a", "b"] and frame.model.tolist() == ["gtsrb_cnn"] * 2
    assert frame.clean_acc_after.tolist() == [0.1, 0.9]
    assert frame.d1_tpr.isna().tolist() == [True, False] and frame.d1_tpr[1] == 0.5
    assert len(query(s3_root, "SELECT * FROM results")) == 3
    assert query(s3_root, "SELECT count(*) AS n FROM results", sweep="other").n[0] == 1


