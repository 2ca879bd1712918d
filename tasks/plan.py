"""A trial's stage graph: every stage it needs, in order, walked one stage at a time.

The graph is not fixed in advance: what a defense hands on depends on what its detection kept
(a retraining keyed by the kept set, or none at all when nothing was kept), so the walk asks for
each stage through ``step(label, stage name, config, *parent refs) -> (ref, record)`` and reads
the records it gets back. The orchestrator's ``step`` resolves stages in the artifact store; a
plan that computes nothing passes records without metrics, and the walk then takes the branch
that does the most work, so counting its stages gives an upper bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.datasets import ImageDataset, load_dataset
from tasks.defenses import DefenseSpec, defense_stages, defense_walk
from tasks.defenses.activations import ACTIVATIONS
from tasks.defenses.filtering import State, Step
from tasks.evaluate import EvaluateConfig, Evaluation, evaluate_stage
from tasks.poison import AttackConfig, PoisonedDataset, poison_dataset
from tasks.stage import Stage
from tasks.train import TrainConfig, TrainedModel, train_model

STAGES = {
    stage.name: stage
    for stage in (
        Stage("dataset", 1, load_dataset, ImageDataset),
        Stage("poison", 1, poison_dataset, PoisonedDataset),
        Stage("train", 1, train_model, TrainedModel),
        Stage("evaluate", 2, evaluate_stage, Evaluation),
        ACTIVATIONS,
        *defense_stages(),
    )
}


def walk_trial(dataset, attack: AttackConfig, train: TrainConfig, defenses: Sequence[DefenseSpec],
               step: Step) -> list[dict]:
    """Walk one trial's stages: dataset, poison, train, evaluate_before, each defense, evaluate_after.

    Labels are ``dataset``, ``poison``, ``train``, ``evaluate_before``, then per defense position N
    ``dN_<stage>`` (``d1_activations``, ``d1_detection``, ``d1_retrain``; ``d2_pruning_curve``,
    ``d2_pruning``, ``d2_fine_tune``...), then ``evaluate_after`` when there are defenses. Each
    defense sees the model and kept data its predecessor handed on.

    Returns the row metrics of each defense position, in order.
    """
    data, _ = step("dataset", "dataset", dataset)
    poison, _ = step("poison", "poison", attack, data)
    trained, _ = step("train", "train", train, data, poison)
    step("evaluate_before", "evaluate", EvaluateConfig(), data, poison, trained)
    state = State(dataset=data, poison=poison, train=trained, train_config=train, model=trained, kept=trained)
    positions = []
    for position, spec in enumerate(defenses, start=1):
        state, metrics = defense_walk(f"d{position}", spec, state, step)
        positions.append(metrics)
    if defenses:
        step("evaluate_after", "evaluate", EvaluateConfig(), data, poison, state.model)
    return positions


def stage_of(label: str) -> str:
    """The stage a step label names: ``d1_judge_retrain`` -> ``retrain``, ``evaluate_after`` -> ``evaluate``."""
    if label.startswith("evaluate_"):
        return "evaluate"
    for name in sorted(STAGES, key=len, reverse=True):
        if label == name or label.endswith(f"_{name}"):
            return name
    raise ValueError(f"step label {label!r} names no stage")
