"""Two sweeps, each with its own driver and Ray, share one storage root at the same time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.results import query
from orchestrator.store import artifact_damage

pytestmark = [pytest.mark.slow, pytest.mark.ray]

REPOSITORY = Path(__file__).resolve().parents[2]

COMMON = """
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
model: gtsrb_cnn
train: {epochs: 1}
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: 50}
resources: {cpu: 1}
"""


def test_two_sweeps_on_one_storage_root_reuse_each_others_stages(tmp_path):
    storage = tmp_path / "runs"
    spaces = {
        "first": "defenses: [none, {ac: {retrain: none}}]",
        "second": "defenses: [none, {ss: {retrain: none}}]",
    }
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    drivers = []
    for name, defenses in spaces.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\n" + textwrap.dedent(COMMON) + defenses + "\n")
        drivers.append(subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--storage", str(storage), "--max-concurrent", "1"],
            cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    for driver in drivers:
        output, _ = driver.communicate(timeout=900)
        assert driver.returncode == 0, output

    rows = query(storage, "SELECT * FROM results")
    assert sorted(rows.groupby("sweep").size().items()) == [("first", 4), ("second", 4)]
    # The undefended trials are the same in both sweeps: the dataset, both poisoned sets, both models
    # and their evaluations were computed once between the two drivers, whichever got there first.
    for label, unique in {"dataset": 1, "poison": 2, "train": 2, "evaluate_before": 2, "d1_activations": 2}.items():
        assert rows[f"{label}_computed"].sum() == unique, label
    assert len(list((storage / "cache" / "train").glob("*/manifest.json"))) == 2
    # Nothing in the shared cache is damaged or left half-written.
    for manifest in (storage / "cache").glob("*/*/manifest.json"):
        assert artifact_damage(manifest.parent, json.loads(manifest.read_text()), checksums=True) is None
    assert not [p for p in (storage / "cache").glob("*/.*") if not p.name.endswith(".lock")]
