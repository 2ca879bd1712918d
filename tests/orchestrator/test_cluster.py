"""`bdsweep cluster validate`: Ray's offline checks of cluster.yaml plus bdsweep's, on the shipped file and broken copies."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.cluster import mount_points

SHIPPED = Path(__file__).resolve().parents[2] / "cluster.yaml"


def validate(path: Path):
    return CliRunner().invoke(app, ["cluster", "validate", str(path)])


def broken_copy(tmp_path: Path, change) -> Path:
    config = yaml.safe_load(SHIPPED.read_text())
    change(config)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_shipped_cluster_file_is_valid():
    result = validate(SHIPPED)
    assert result.exit_code == 0, result.output
    assert "valid. GPU workers: 'gpu_worker'" in result.output and "/mnt/bdsweep/runs" in result.output


def test_shipped_cluster_file_installs_the_project_with_its_pins_and_authenticates_every_node():
    config = yaml.safe_load(SHIPPED.read_text())
    setup = "\n".join(config["setup_commands"])
    assert "python3.11 -m venv" in setup and 'pip install -q -e "/home/ubuntu/bdsweep[gpu]"' in setup
    pyproject = (SHIPPED.parent / "pyproject.toml").read_text()
    assert '"ray[tune]==2.60.0"' in pyproject and 'requires-python = ">=3.11,<3.12"' in pyproject
    for command in config["head_start_ray_commands"][-1:] + config["worker_start_ray_commands"][-1:]:
        assert "RAY_AUTH_MODE=token" in command
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_TOKEN=" not in SHIPPED.read_text()


def test_every_node_installs_the_plugins_the_repository_lists(tmp_path):
    """Plugins reach every Ray node: plugins.txt is synced with the repository and installed by setup."""
    import subprocess
    import sys

    config = yaml.safe_load(SHIPPED.read_text())
    assert config["file_mounts"]["/home/ubuntu/bdsweep"] == "."
    setup = config["setup_commands"]
    install = next(command for command in setup if "plugins.txt" in command)
    assert setup.index(install) > next(i for i, c in enumerate(setup) if "bdsweep[gpu]" in c)
    # The shipped list (comments only) is a requirements file pip accepts: a fresh cluster installs nothing more.
    listed = SHIPPED.parent / "plugins.txt"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "-q", "-r", str(listed)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_an_object_store_root_needs_no_mount(tmp_path):
    # Checked offline: opening s3:// without a region would ask AWS where the bucket is.
    path = broken_copy(tmp_path, lambda c: c["metadata"]["bdsweep"].update(storage="s3://my-bucket/runs?region=eu-west-1"))
    result = validate(path)
    assert result.exit_code == 0, result.output
    assert "storage s3://my-bucket/runs, which every node reaches" in result.output


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda c: c.update(max_wokers=3), "max_wokers", "was unexpected"),
        (lambda c: c["available_node_types"]["gpu_worker"].update(bogus=1), "available_node_types.gpu_worker.bogus", "unexpected"),
        (lambda c: c.update(max_workers="eight"), "max_workers", "is not of type 'integer'"),
        (lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU="one"),
         "available_node_types.gpu_worker.resources.GPU", "is not of type 'integer'"),
        (lambda c: c["available_node_types"].pop("gpu_worker"), "available_node_types", "no GPU worker type"),
        (lambda c: c["available_node_types"]["gpu_worker"]["resources"].pop("GPU"), "available_node_types", "no GPU worker type"),
        (lambda c: c["metadata"]["bdsweep"].update(storage="/home/ubuntu/runs"), "metadata.bdsweep.storage", "each node's own disk"),
        (lambda c: c["metadata"]["bdsweep"].update(storage="ftp://host/runs"), "metadata.bdsweep.storage", "not a filesystem"),
        (lambda c: c["metadata"].update(bdsweep="/mnt/bdsweep/runs"), "metadata.bdsweep.storage", "missing"),
        (lambda c: c["setup_commands"].append("echo 'unbalanced"), "setup_commands[6]", "cannot be read"),
        (lambda c: c.pop("metadata"), "metadata.bdsweep.storage", "missing"),
        (lambda c: c.update(setup_commands=c["setup_commands"][:3]), "metadata.bdsweep.storage", "mount: none"),
    ],
)
def test_broken_copies_fail_naming_the_field(tmp_path, change, field, words):
    path = broken_copy(tmp_path, change)
    result = validate(path)
    assert result.exit_code == 2, result.output
    assert f"{path}: {field}: " in result.output and words in result.output


def test_missing_or_malformed_file_is_named(tmp_path):
    assert "file not found" in validate(tmp_path / "nope.yaml").output
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert validate(tmp_path / "list.yaml").exit_code == 2


def test_mount_points_are_the_last_argument_of_each_mount():
    commands = ["sudo mkdir -p /mnt/x && sudo mount -t nfs4 -o a=1 fs:/ /mnt/x", "mount /dev/sdb /data; echo hi", "echo mount"]
    assert mount_points("cluster.yaml", commands) == {"/mnt/x", "/data"}
