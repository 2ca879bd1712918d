"""Where a result came from: code version, library versions, the machine."""

from __future__ import annotations

import functools
import socket
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "art": ("adversarial-robustness-toolbox",),
    "ray": ("ray",),
    "numpy": ("numpy",),
}


@functools.cache
def code_version() -> str:
    """The git commit of bdsweep's source tree (``-dirty`` if it has uncommitted changes), or the package version."""
    source_dir = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(source_dir), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "bdsweep-" + _version("bdsweep")


def _version(*distributions: str) -> str:
    for distribution in distributions:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


@functools.cache
def package_versions() -> dict[str, str]:
    """``{"<name>_version": version}`` for the libraries a result depends on."""
    return {f"{name}_version": _version(*dists) for name, dists in _PACKAGES.items()}


def node_name() -> str:
    return socket.gethostname()
