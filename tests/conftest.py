"""Shared fixtures: tiny datasets made in the test."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Every Ray the tests start listens on 127.0.0.1 only (see orchestrator.ray_runtime.keep_local_ray_on_loopback).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under xdist each worker shares the cores with the other and with the Ray trials it starts (one
    # thread each, `resources.cpu`): TensorFlow's default pools, a thread per core that spins while
    # waiting, would oversubscribe them. Read when TensorFlow starts, so set before any test imports it.
    for _name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """An S3 server (moto) on 127.0.0.1 for the test session: ``host:port``.

    Credentials are dummies in the environment, where pyarrow, spawned processes and Ray workers
    started afterwards all read them; so is the node-local artifact cache, kept out of ``~``.
    """
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                        "BDSWEEP_NODE_CACHE": str(tmp_path_factory.mktemp("node-cache"))}.items():
        os.environ[name] = value
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture
def s3_root(s3_server, request) -> str:
    """A storage-root URI in a fresh bucket of the test S3 server."""
    import re

    import pyarrow.fs as pafs

    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{os.getpid() % 10000}"
    query = f"endpoint_override={s3_server}&scheme=http"
    filesystem, _ = pafs.FileSystem.from_uri(f"s3://{bucket}?{query}&allow_bucket_creation=true")
    filesystem.create_dir(bucket)
    return f"s3://{bucket}/runs?{query}"


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray on 127.0.0.1, started as ``bdsweep run`` starts it, shared by a module's Ray tests.

    ``launch`` (and ``bdsweep run`` through typer's runner) then runs on it without starting or
    stopping a Ray of its own. Stopped after the module's last test; every raylet and GCS server it
    started must be gone then. Its workers take the environment as it is when it starts: a module
    whose sweeps need S3 credentials requests ``s3_server`` before this fixture.
    """
    from orchestrator.ray_runtime import keep_local_ray_on_loopback, start_ray
    from tests.ray_processes import children, ray_processes, wait_until_gone

    keep_local_ray_on_loopback()
    import ray

    assert not ray.is_initialized(), "another test left its Ray connected"
    start_ray()
    started = children(os.getpid()) & ray_processes()  # not another Ray that runs on this machine meanwhile
    assert started, "ray.init started no raylet or GCS server of its own"
    try:
        yield ray
    finally:
        ray.shutdown()
    assert wait_until_gone(started), "the module's raylet or GCS server outlived ray.shutdown()"


def pytest_configure(config):
    """Start pip's resolution for ``tests/test_packaging.py`` now, in the background, when this run
    may run that test: it mostly waits on the package index, so it overlaps the CPU-bound tests
    instead of holding an xdist worker for minutes. Workers inherit where it writes (they start
    after this hook); the test waits for it there."""
    import tempfile
    from pathlib import Path

    from tests.test_packaging import RESOLUTION_DIR, start_resolution

    if hasattr(config, "workerinput") or os.environ.get(RESOLUTION_DIR) or not _may_run_resolution(config):
        return
    directory = Path(tempfile.mkdtemp(prefix="bdsweep-pip-resolution-"))
    start_resolution(directory)
    os.environ[RESOLUTION_DIR] = str(directory)
    config.stash[_RESOLUTION_KEY] = directory


_RESOLUTION_KEY = pytest.StashKey()


def pytest_unconfigure(config):
    import shutil

    if (directory := config.stash.get(_RESOLUTION_KEY, None)) is not None:
        shutil.rmtree(directory, ignore_errors=True)


def _may_run_resolution(config) -> bool:
    """Whether the run's paths include tests/test_packaging.py and its marks leave slow tests in."""
    from pathlib import Path

    if "not slow" in (config.getoption("markexpr", "") or ""):
        return False
    target = Path(__file__).with_name("test_packaging.py").resolve()
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve() for arg in config.args]
    return not paths or any(path == target or path in target.parents for path in paths)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``-n``), every test that starts Ray is in one group (``--dist loadgroup``):
    it runs on one worker, one test after another, while the in-process tests, which start no Ray,
    fill the other. Measured in CI on 2 cores: a third worker, or Ray's tests split over two, slowed
    Ray's tests two- to threefold (one passed its 300 s timeout), and the whole run took longer; so did
    a third worker whose in-process tests ran at niceness 10 (pytest 880 s against 835 s: the Ray
    tests still slowed by half or more, the contention not only for CPU time)."""
    def ray_group(item) -> bool:
        return item.get_closest_marker("ray") is not None or "local_ray" in getattr(item, "fixturenames", ())

    for item in items:
        if ray_group(item):
            item.add_marker(pytest.mark.xdist_group("ray"))
    # Longest first, so that the run does not end on one worker with a long test while the other idles:
    # Ray's group, then the other slow tests, then the fast ones (a stable sort keeps each file's order).
    items.sort(key=lambda item: 0 if ray_group(item) else 1 if item.get_closest_marker("slow") is not None else 2)
