"""Sweeps on multi-node Ray clusters on 127.0.0.1: trials spread over nodes, shared stages run once, a node can die."""

from __future__ import annotations

import json
import textwrap
import threading
import time

import pytest

from orchestrator.results import query
from orchestrator.search_space import load_search_space
from orchestrator.storage import open_storage
from orchestrator.store import artifact_store
from orchestrator.sweep import launch, plan_sweep, record_sweep

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SPACE = """
name: {name}
dataset: {{name: synthetic_signs, per_class: 12, test_per_class: 2}}
model: gtsrb_cnn
train: {{epochs: 1}}
attack: {{source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: 50}}
defenses: [none, {{ac: {{retrain: none}}}}, {{ss: {{retrain: none}}}}]
resources: {{cpu: 1}}
"""


@pytest.fixture(scope="module")
def cluster(s3_server):
    """A head and two worker nodes, one CPU each, all on 127.0.0.1, shared by the module's tests (the
    one that removes a node runs last); shut down after them, every raylet and GCS server with it.

    The S3 server comes first: the nodes' workers take its credentials from the environment.
    """
    import os

    import ray
    from ray.cluster_utils import Cluster

    from tests.ray_processes import children, ray_processes, wait_until_gone

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    workers = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    cluster.wait_for_nodes()
    cluster.workers = workers
    started = children(os.getpid()) & ray_processes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert wait_until_gone(started), "a node's raylet or the GCS server outlived the cluster's shutdown"


def plan_space(tmp_path, name: str, storage=None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(SPACE.format(name=name)))
    space, trials = load_search_space(path)
    plan = plan_sweep(trials, storage or tmp_path / "runs", name, space.resources)
    record_sweep(plan, path)
    return plan


def test_sweep_spreads_over_nodes_and_computes_each_shared_stage_once(tmp_path, s3_root, cluster):
    """On an S3 root, the storage a real cluster's nodes share. (A local root on one machine is the
    node-removal test's below: its rows are checked there.)"""
    storage = s3_root
    plan = plan_space(tmp_path, "nodes", storage)
    lines: list[str] = []
    assert launch(plan, address=cluster.address, echo=lines.append) == 0, "\n".join(lines)

    rows = query(storage, "SELECT * FROM results")
    assert len(rows) == 6 and rows["trial_id"].is_unique
    assert rows["node_id"].nunique() >= 2, rows[["trial_id", "node_id"]]
    assert set(rows["node_ip"]) == {"127.0.0.1"}
    # Two models, one dataset: every shared stage ran once over all nodes.
    assert rows["dataset_computed"].sum() == 1
    assert rows["poison_computed"].sum() == 2 and rows["train_computed"].sum() == 2
    assert rows["evaluate_before_computed"].sum() == 2
    assert rows["d1_activations_computed"].sum() == 2  # ac and ss share each model's activations
    assert sum(stage == "train" for stage, _ in artifact_store(open_storage(storage)).stored_keys()) == 2


def running_on(plan, node_id: str) -> list[str]:
    """Trials of ``plan`` whose running marker says they run on the node ``node_id`` now."""
    markers = plan.storage.local_path(plan.name, "running").glob("*.json")
    return [path.stem for path in markers if _read_json(path).get("node_id") == node_id]


def _read_json(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # gone, or caught half-written
        return {}


def test_sweep_completes_when_a_worker_node_is_removed_mid_sweep(tmp_path, cluster):
    plan = plan_space(tmp_path, "lost")
    lines: list[str] = []
    removed = threading.Event()

    worker = cluster.workers[0]

    def remove_the_worker_while_a_trial_runs_there():
        deadline = time.monotonic() + 200
        while not running_on(plan, worker.node_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        # The trial dies with its node and is retried on another one.
        cluster.remove_node(worker, allow_graceful=False)
        removed.set()

    remover = threading.Thread(target=remove_the_worker_while_a_trial_runs_there, daemon=True)
    remover.start()
    failed = launch(plan, address=cluster.address, echo=lines.append, max_concurrent=3)
    remover.join(timeout=60)
    output = "\n".join(lines)
    assert removed.is_set() and failed == 0, output

    rows = query(tmp_path / "runs", "SELECT * FROM results")
    assert len(rows) == 6 and rows["trial_id"].is_unique
    assert {t.trial_id for t in plan.trials} == set(rows["trial_id"])
    assert "retrying" in output, output


def fake_autoscaling_config(port: int) -> dict:
    """A fake_multinode provider config whose node types are cluster.yaml's (at most 2 GPU workers here)."""
    import yaml

    from tests.orchestrator.test_cluster import SHIPPED

    shipped = yaml.safe_load(SHIPPED.read_text())
    head, gpu_worker = (shipped["available_node_types"][name] for name in ("head", "gpu_worker"))
    return {
        "cluster_name": "fake-bdsweep",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 1,
        # Fake nodes are local processes: nothing to ssh into or set up, so no node updaters.
        "provider": {
            "type": "fake_multinode", "gcs_address": f"127.0.0.1:{port}", "use_node_id_as_ip": True,
            "disable_node_updaters": True, "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "available_node_types": {
            # The fake provider names its head type so; the resources are cluster.yaml's head's.
            "ray.head.default": {"resources": head["resources"], "node_config": {}, "max_workers": 0},
            "gpu_worker": {"resources": gpu_worker["resources"], "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
        "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def test_sweep_asking_for_gpus_makes_the_autoscaler_add_workers(tmp_path):
    import json
    import os
    import secrets
    import socket
    import subprocess
    import sys

    import yaml

    from tests.ray_processes import session_processes, stop_session

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "fake_cluster.yaml"
    config.write_text(yaml.safe_dump(fake_autoscaling_config(port)))
    space = tmp_path / "gpu.yaml"
    # One trigger (3 trials): what is tested is where they run, not how many.
    space.write_text(textwrap.dedent(SPACE.format(name="gpu")).replace("resources: {cpu: 1}", "resources: {cpu: 1, gpu: 1}")
                     .replace("trigger: [yellow_square, big_yellow_square]", "trigger: [yellow_square]"))
    # Every node and the driver share one token, as on a real cluster.
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    # In a session of its own, so that exactly this cluster can be stopped, nodes the autoscaler added included.
    # (Its output goes to a file: the daemons it starts keep a pipe open.)
    head_log = tmp_path / "ray_start.log"
    with open(head_log, "w") as log:
        head = subprocess.Popen(
            [ray_bin, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=0",
             "--num-gpus=0", f"--autoscaling-config={config}", "--include-dashboard=false", "--disable-usage-stats"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        assert head.wait(timeout=120) == 0, head_log.read_text()
        sweep = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(space), "--storage", str(tmp_path / "runs"),
             "--address", f"127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, timeout=240,
        )
        assert sweep.returncode == 0, sweep.stdout + sweep.stderr
        nodes = subprocess.run(
            [sys.executable, "-c", "import json, ray; ray.init(address=%r, logging_level='ERROR'); "
             "print(json.dumps([[n['NodeID'], n['Resources'].get('GPU', 0)] for n in ray.nodes()]))" % f"127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, check=True,
        )
    finally:
        stop_session(head.pid)
    assert not session_processes(head.pid)

    gpu_nodes = {node_id for node_id, gpus in json.loads(nodes.stdout.strip().splitlines()[-1]) if gpus >= 1}
    rows = query(tmp_path / "runs", "SELECT * FROM results")
    assert len(rows) == 3
    # The head has no CPU and no GPU: every trial ran on a GPU worker that the autoscaler added.
    assert gpu_nodes and set(rows["node_id"]) <= gpu_nodes
