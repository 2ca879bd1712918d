"""Two sweeps, each run by a process of its own, share one storage root at the same time (no Ray: the
sharing is the artifact store's file locks, which two drivers' Ray workers rely on alike)."""

from __future__ import annotations

import json
import multiprocessing
import textwrap
from pathlib import Path

import pytest

from orchestrator.results import query
from orchestrator.store import artifact_damage

pytestmark = pytest.mark.slow

COMMON = """
dataset: {name: synthetic_signs, per_class: 12, test_per_class: 2}
model: gtsrb_cnn
train: {epochs: 1}
attack: {source: 8, target: 14, trigger: [yellow_square, big_yellow_square], poison_pct: 50}
resources: {cpu: 1}
"""


def _run_sweep(text: str, directory: str, storage: str) -> tuple[int, list[str]]:
    """One sweep in this (spawned) process: its row count and the errors of trials that raised."""
    from tests.harness import run_space

    sweep = run_space(text, Path(directory), storage=storage)
    return len(sweep.rows), [repr(error) for error in sweep.errors.values()]


def test_two_sweeps_on_one_storage_root_reuse_each_others_stages(tmp_path):
    storage = tmp_path / "runs"
    spaces = {
        "first": "defenses: [none, {ac: {retrain: none}}]",
        "second": "defenses: [none, {ss: {retrain: none}}]",
    }
    jobs = [(f"name: {name}\n" + textwrap.dedent(COMMON) + defenses + "\n", str(tmp_path / name), str(storage))
            for name, defenses in spaces.items()]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert pool.starmap(_run_sweep, jobs) == [(4, []), (4, [])]

    rows = query(storage, "SELECT * FROM results")
    assert sorted(rows.groupby("sweep").size().items()) == [("first", 4), ("second", 4)]
    assert rows["worker_pid"].nunique() == 2  # two processes wrote them, one per sweep
    # The undefended trials are the same in both sweeps: the dataset, both poisoned sets, both models
    # and their evaluations were computed once between the two processes, whichever got there first.
    for label, unique in {"dataset": 1, "poison": 2, "train": 2, "evaluate_before": 2, "d1_activations": 2}.items():
        assert rows[f"{label}_computed"].sum() == unique, label
    assert len(list((storage / "cache" / "train").glob("*/manifest.json"))) == 2
    # Nothing in the shared cache is damaged or left half-written.
    for manifest in (storage / "cache").glob("*/*/manifest.json"):
        assert artifact_damage(manifest.parent, json.loads(manifest.read_text()), checksums=True) is None
    assert not [p for p in (storage / "cache").glob("*/.*") if not p.name.endswith(".lock")]
