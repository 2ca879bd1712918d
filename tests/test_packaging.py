"""Every install of bdsweep holds exactly one TensorFlow distribution.

``tensorflow``, ``tensorflow-cpu``, ``tensorflow-intel`` and their kin all install the one
``tensorflow/`` package. Two of them in one environment write over each other's files (the one pip
installed last wins), and uninstalling either leaves the other broken.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
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


def installed_closure(report: dict, root: str, extras: tuple[str, ...]) -> dict[str, str]:
    """``{name: version}`` of what installing ``root[extras]`` pulls in, walked through the
    ``requires_dist`` of the distributions in a ``pip install --report`` (markers for this machine)."""
    metadata = {canonicalize_name(item["metadata"]["name"]): item["metadata"] for item in report["install"]}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(canonicalize_name(root), extras)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for line in metadata[name].get("requires_dist", []):
            requirement = Requirement(line)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in wanted or ("",)):
                todo.append((canonicalize_name(requirement.name), tuple(sorted(requirement.extras))))
    return {name: metadata[name]["version"] for name, _ in seen}


# Where the suite's run started pip's resolution in the background (tests/conftest.py), so that
# its downloads overlap the CPU-bound tests instead of holding a worker for 1-3 minutes.
RESOLUTION_DIR = "BDSWEEP_PIP_RESOLUTION_DIR"


def start_resolution(directory: Path) -> subprocess.Popen:
    """Start ``pip install --dry-run --report`` of ``.[gpu]`` (a copy of the project's metadata in
    ``directory``: pip builds it there, not in the working tree); it leaves ``report.json``,
    ``stderr`` and, last, ``returncode`` in ``directory``."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, directory / name)
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(directory / "report.json"), f"{directory}[gpu]"]
    script = '"$@" 2>"$0/stderr"; echo $? >"$0/returncode.tmp" && mv "$0/returncode.tmp" "$0/returncode"'
    return subprocess.Popen(["sh", "-c", script, str(directory), *command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, start_new_session=True)


def resolution(directory: Path, timeout: float = 900.0) -> tuple[int, str]:
    """Wait for the resolution started in ``directory``: its return code and stderr."""
    deadline = time.monotonic() + timeout
    while not (directory / "returncode").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"pip's resolution in {directory} did not finish in {timeout:.0f} s")
        time.sleep(1)
    return int((directory / "returncode").read_text()), (directory / "stderr").read_text()


@pytest.mark.slow
def test_pip_resolves_one_tensorflow_for_the_base_install_and_the_gpu_extra(tmp_path):
    """What ``pip install .[gpu]`` would install into an empty environment, and of that what ``pip
    install .`` would (needs the package index; one resolution, 1-3 min here, mostly downloads,
    started when the run began where the suite's configuration did, else here)."""
    directory = Path(os.environ[RESOLUTION_DIR]) if os.environ.get(RESOLUTION_DIR) else tmp_path
    if directory == tmp_path:
        start_resolution(tmp_path)
    returncode, stderr = resolution(directory)
    assert returncode == 0, stderr
    report_file = directory / "report.json"
    report = json.loads(report_file.read_text())
    gpu = installed_closure(report, "bdsweep", ("gpu",))
    # The walk finds exactly what pip would install: it reads the requirements as pip does.
    assert set(gpu) == {canonicalize_name(item["metadata"]["name"]) for item in report["install"]}
    base = installed_closure(report, "bdsweep", ())
    for installed in (base, gpu):
        tensorflow = tensorflow_distributions(installed)
        assert len(tensorflow) == 1, sorted(installed)
        assert installed[tensorflow.pop()].startswith("2.21.")
    # The gpu extra brings the CUDA libraries TensorFlow loads on a GPU node; the base does not.
    assert "nvidia-cudnn-cu12" in gpu and "nvidia-cudnn-cu12" not in base
