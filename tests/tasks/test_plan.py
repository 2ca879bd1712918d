"""The trial's walk over the method protocols: its stages per built-in method, pinned, and what it hands defenses."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tasks.datasets.synthetic_signs import Config as SignsConfig
from tasks.plan import walk_trial
from tasks.poison import AttackConfig
from tasks.registry import DefenseSpec, registry
from tasks.train import TrainConfig

SNAPSHOT = Path(__file__).with_name("plan_snapshot.json")
# One configuration per built-in defense, and the settings that take another route through the graph.
DEFENSE_CONFIGURATIONS = {
    "ac": {}, "ac(ex_re_threshold)": {"ex_re_threshold": 1.0}, "ac(retrain=none)": {"retrain": "none"},
    "ac(retrain=finetune)": {"retrain": "finetune"}, "ss": {}, "dp": {}, "fp": {}, "fine_tune": {},
    "perfect_filter": {}, "random_filter": {}, "random_filter(same_as=ac)": {"same_as": "ac"}, "strip": {},
    "spectre": {}, "neural_cleanse": {}, "neural_cleanse(repair=none)": {"repair": "none"}, "i_bau": {},
}


@dataclass(frozen=True)
class LabelRef:
    """A planned artifact named by the label of the step that made it."""

    label: str

    @property
    def key(self) -> str:
        return self.label

    @property
    def identity(self) -> str:
        return self.label


@dataclass(frozen=True)
class EmptyRecord:
    metrics: dict


def planned_steps(defenses, trigger="yellow_square") -> list[list]:
    """``[label, stage name, [parent labels]]`` of every step of a trial with ``defenses``, computing nothing."""
    steps = []

    def plan(label, stage, config, *parents):
        steps.append([label, stage.name, [getattr(parent, "ref", parent).label for parent in parents]])
        return LabelRef(label), EmptyRecord({})

    walk_trial(SignsConfig(per_class=10), AttackConfig(source=8, target=14, trigger=trigger, poison_pct=10),
               TrainConfig(model="gtsrb_cnn"), defenses, plan)
    return steps


def current_plans() -> dict:
    plans = {}
    for name, params in DEFENSE_CONFIGURATIONS.items():
        spec = DefenseSpec(name=name.split("(")[0], params=params)
        plans[f"defense {name}"] = planned_steps((spec,))
    plans["pipeline ac>fp"] = planned_steps((DefenseSpec(name="ac"), DefenseSpec(name="fp")))
    plans["pipeline fp>ac"] = planned_steps((DefenseSpec(name="fp"), DefenseSpec(name="ac")))
    for attack in registry().attacks:
        if attack != "png":  # needs a file; its stages are those of every other attack
            plans[f"attack {attack}"] = planned_steps((), trigger=attack)
    return plans


def test_every_built_in_method_walks_the_stages_the_snapshot_pins():
    """Labels, stages and parents per built-in method. A deliberate change of the graph is written
    with BDSWEEP_UPDATE_SNAPSHOT=1 and reviewed in the diff of plan_snapshot.json."""
    plans = current_plans()
    if os.environ.get("BDSWEEP_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(plans, indent=1, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), "no snapshot: run once with BDSWEEP_UPDATE_SNAPSHOT=1 and review it"
    pinned = json.loads(SNAPSHOT.read_text())
    assert sorted(plans) == sorted(pinned)
    for name in plans:
        assert plans[name] == pinned[name], name


def test_every_built_in_defense_is_in_the_snapshot():
    covered = {name.split("(")[0] for name in DEFENSE_CONFIGURATIONS}
    assert covered == set(registry().defenses)


def test_a_full_retraining_after_fine_pruning_rebuilds_the_pruned_architecture():
    steps = {label: parents for label, _, parents in planned_steps((DefenseSpec(name="fp"), DefenseSpec(name="ac")))}
    assert steps["d2_retrain"] == ["dataset", "poison", "d2_detection", "d1_pruning"]
    assert steps["evaluate_after"] == ["dataset", "poison", "d2_retrain"]
