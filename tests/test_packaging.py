"""Every install of bdsweep holds exactly one TensorFlow distribution.

``tensorflow``, ``tensorflow-cpu``, ``tensorflow-intel`` and their kin all install the one
``tensorflow/`` package. Two of them in one environment write over each other's files (the one pip
installed last wins), and uninstalling either leaves the other broken.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPOSITORY = Path(__file__).resolve().parents[1]

# Distributions on PyPI whose wheels ship the top-level ``tensorflow`` package.
TENSORFLOW_DISTRIBUTIONS = frozenset({
    "tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
    "tensorflow-aarch64", "tensorflow-cpu-aws", "tensorflow-rocm", "intel-tensorflow",
    "tf-nightly", "tf-nightly-cpu", "tf-nightly-gpu", "tf-nightly-intel", "tf-nightly-macos",
})
# The platforms bdsweep's wheels exist for, as pip's marker environment sees them.
PLATFORMS = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    "windows-amd64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"},
}
EXTRAS = [(), ("gpu",), ("test",), ("gpu", "test")]


def tensorflow_distributions(names) -> set[str]:
    """The TensorFlow distributions among ``names`` (any spelling: ``tensorflow_cpu``, ``TensorFlow``)."""
    return {canonicalize_name(name) for name in names} & TENSORFLOW_DISTRIBUTIONS


def declared_requirements(extras: tuple[str, ...], platform: dict[str, str]) -> list[Requirement]:
    """pyproject.toml's direct requirements for ``pip install .[extras]`` on ``platform`` (markers applied)."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in extras for line in project["optional-dependencies"][extra]]
    requirements = [Requirement(line) for line in lines]
    return [r for r in requirements if r.marker is None or r.marker.evaluate(platform)]


@pytest.mark.parametrize("extras", EXTRAS, ids=lambda extras: ",".join(extras) or "base")
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_pyproject_names_one_tensorflow_for_every_platform_and_extra(platform, extras):
    requirements = declared_requirements(extras, PLATFORMS[platform])
    names = [r.name for r in requirements]
    assert len(tensorflow_distributions(names)) == 1, names
    # The gpu extra asks for that same TensorFlow with its CUDA libraries.
    assert any(r.extras == {"and-cuda"} for r in requirements) == ("gpu" in extras)


def test_the_installed_environment_holds_one_tensorflow():
    # Owners of the top-level `tensorflow` package, from every installed distribution's file list.
    owners = tensorflow_distributions(importlib.metadata.packages_distributions().get("tensorflow", []))
    assert len(owners) == 1, (
        f"this environment holds {sorted(owners) or 'no'} TensorFlow distribution(s); uninstall them all, "
        f"then install bdsweep again"
    )


@pytest.mark.slow
@pytest.mark.parametrize("extras", ["", "[gpu]"], ids=["base", "gpu"])
def test_pip_resolves_one_tensorflow(tmp_path, extras):
    """What ``pip install .{extras}`` would install into an empty environment (needs the package index, ~1 min)."""
    # A copy of the project's metadata: pip builds it here, not in the working tree.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, tmp_path / name)
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), f"{tmp_path}{extras}"],
        capture_output=True, text=True, timeout=600,
    )
    assert resolved.returncode == 0, resolved.stderr
    installed = {item["metadata"]["name"]: item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}
    tensorflow = [name for name in installed if tensorflow_distributions([name])]
    assert len(tensorflow) == 1, sorted(installed)
    assert installed[tensorflow[0]].startswith("2.21."), installed[tensorflow[0]]
    # The gpu extra still brings the CUDA libraries TensorFlow loads on a GPU node.
    assert ("nvidia-cudnn-cu12" in map(canonicalize_name, installed)) == (extras == "[gpu]")
