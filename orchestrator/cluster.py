"""Offline checks of a Ray cluster-launcher file before ``ray up`` touches a cloud.

Two layers: Ray's own (``prepare_config`` then ``validate_config``, what ``ray up`` runs first: the
schema, types, unknown keys), then bdsweep's (a GPU worker type the autoscaler can add, and a
``--storage`` root that every node mounts). bdsweep's settings live under ``metadata.bdsweep``,
the one place Ray's schema leaves to the user.
"""

from __future__ import annotations

import copy
import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from orchestrator.errors import ClusterConfigError, StorageError


@dataclass(frozen=True)
class ClusterCheck:
    """A cluster file that passed: ``config`` as ``ray up`` would use it, its GPU worker type, its storage root."""

    config: dict[str, Any]
    gpu_worker: str
    storage: str


def validate_cluster_file(path: str) -> ClusterCheck:
    """Check the cluster-launcher YAML at ``path``.

    Raises
    ------
    ClusterConfigError
        For the first problem found, naming the file and the field
        (``available_node_types.gpu_worker.resources.GPU``).
    """
    config = _validate_with_ray(path, _read(path))
    return ClusterCheck(config, check_gpu_worker(path, config), check_shared_storage(path, config))


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ClusterConfigError(path, None, "file not found") from None
    except (OSError, yaml.YAMLError) as error:
        raise ClusterConfigError(path, None, f"cannot be read as YAML: {error}") from None
    if not isinstance(config, dict):
        raise ClusterConfigError(path, None, "a cluster file is a YAML mapping (cluster_name, provider, ...)")
    return config


def _validate_with_ray(path: str, config: dict[str, Any]) -> dict[str, Any]:
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    # Ray logs its defaults-filling at INFO; the command prints its own verdict.
    logging.getLogger("ray.autoscaler._private.util").setLevel(logging.WARNING)
    try:
        prepared = prepare_config(copy.deepcopy(config))
        validate_config(prepared)
    except jsonschema.ValidationError as error:
        raise ClusterConfigError(path, _schema_field(error), error.message) from None
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ClusterConfigError(path, None, f"Ray refuses it: {error}") from None
    return prepared


def _schema_field(error) -> str | None:
    """The dotted path of the offending field; for an unknown key, the key itself."""
    parts = [str(part) for part in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        unknown = sorted(key for key in error.instance if key not in allowed)
        parts += unknown[:1]
    return ".".join(parts) or None


def check_gpu_worker(path: str, config: dict[str, Any]) -> str:
    """The name of a worker node type with ``resources.GPU >= 1`` that the autoscaler may add.

    Its resources must be stated: with ``min_workers: 0`` the autoscaler decides from them whether
    a node of that type could run a trial that asks for a GPU.
    """
    head = config.get("head_node_type")
    for name, node_type in config.get("available_node_types", {}).items():
        if name != head and node_type.get("resources", {}).get("GPU", 0) >= 1 and node_type.get("max_workers", 0) >= 1:
            return name
    raise ClusterConfigError(
        path, "available_node_types",
        "no GPU worker type: add a node type other than the head with resources {GPU: 1, CPU: ...} and max_workers >= 1",
    )


def check_shared_storage(path: str, config: dict[str, Any]) -> str:
    """``metadata.bdsweep.storage``, checked to be a root every node reaches.

    An object store (``s3://...``) is; a local path must lie under a mount point that the
    ``setup_commands`` (run on every node) mount, since a node's own disk is not shared.
    """
    from orchestrator.storage import storage_location

    field = "metadata.bdsweep.storage"
    settings = (config.get("metadata") or {}).get("bdsweep")
    storage = settings.get("storage") if isinstance(settings, dict) else None
    if not isinstance(storage, str) or not storage:
        raise ClusterConfigError(path, field, "missing: the --storage root every node shares, e.g. /mnt/bdsweep/runs")
    try:
        scheme, location = storage_location(storage)  # offline: opening s3:// may ask AWS for the region
    except StorageError as error:
        raise ClusterConfigError(path, field, error.message) from None
    if scheme is not None:
        return f"{scheme}://{location}"
    directory = PurePosixPath(location)
    if not directory.is_absolute():
        raise ClusterConfigError(path, field, f"{storage!r} is not an absolute path")
    mounts = mount_points(path, config.get("setup_commands", []))
    if not any(directory.is_relative_to(mount) for mount in mounts):
        where = ", ".join(sorted(mounts)) or "none"
        raise ClusterConfigError(
            path, field,
            f"{storage!r} is on each node's own disk: no setup command mounts a filesystem above it with "
            f"`mount ... DIRECTORY` (setup_commands mount: {where})",
        )
    return str(directory)


def mount_points(path: str, commands: list[str]) -> set[str]:
    """Directories that ``mount`` commands in ``commands`` mount on (the last argument of each)."""
    points = set()
    for index, command in enumerate(commands):
        for part in re.split(r"&&|;|\|\|", command):
            try:
                words = shlex.split(part, comments=True)
            except ValueError as error:
                raise ClusterConfigError(path, f"setup_commands[{index}]", f"cannot be read as a shell command: {error}") from None
            if words[:1] == ["sudo"]:
                words = words[1:]
            if words[:1] == ["mount"] and len(words) >= 3:
                points.add(words[-1])
    return points
