"""A trial's pipeline: dataset -> poison -> train -> defense 1 -> ... -> evaluate, through the store.

The result is one flat row (a dict) holding the trial's config, every metric, and per stage its
seconds and whether it was computed or reused. Defense columns carry the stage's position in the
pipeline: ``d1_tpr`` is the true-positive rate of the first defense, ``d2_tpr`` of the second.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from orchestrator.provenance import code_version, node_name, package_versions
from orchestrator.results import field_types
from orchestrator.search_space import TrialSpec
from orchestrator.store import ArtifactRef, ArtifactStore, Stage, StageRecord
from tasks.datasets import ImageDataset, load_dataset
from tasks.defenses import DEFENSES, DefenseConfig, apply_defense, preparation
from tasks.defenses.activations import Activations, compute_activations
from tasks.defenses.fine_pruning import PruningCurve, compute_pruning_curve
from tasks.evaluate import EvaluateConfig, Evaluation, defense_effectiveness_rating, evaluate_stage
from tasks.poison import PoisonedDataset, poison_dataset
from tasks.train import TrainedModel, train_model

STAGES = {
    stage.name: stage
    for stage in (
        Stage("dataset", 1, load_dataset, ImageDataset),
        Stage("poison", 1, poison_dataset, PoisonedDataset),
        Stage("train", 1, train_model, TrainedModel),
        Stage("activations", 1, compute_activations, Activations),
        Stage("pruning_curve", 1, compute_pruning_curve, PruningCurve),
        Stage("defense", 3, apply_defense, TrainedModel),
        Stage("evaluate", 2, evaluate_stage, Evaluation),
    )
}


@dataclass(frozen=True)
class Step:
    """One stage of a trial: ``label`` names it in result columns, ``parents`` are earlier labels."""

    label: str
    stage: str
    config: Any
    parents: tuple[str, ...] = ()


def pipeline_steps(trial: TrialSpec) -> list[Step]:
    """The stages of ``trial`` in order.

    Labels are ``dataset``, ``poison``, ``train``, ``evaluate_before``, ``d1``, ``d2``, ...,
    ``evaluate_after`` (the last only when the pipeline has defenses); a defense that reads a
    shared stage is preceded by it, labelled ``dN_<stage>`` (``d1_activations``; see
    :func:`defense_steps`). Each defense sees the model and kept data of the step before it.
    """
    data = ("dataset", "poison")
    steps = [
        Step("dataset", "dataset", trial.dataset),
        Step("poison", "poison", trial.attack, ("dataset",)),
        Step("train", "train", trial.train, data),
        Step("evaluate_before", "evaluate", EvaluateConfig(), (*data, "train")),
    ]
    model = "train"
    for position, defense in enumerate(trial.defenses, start=1):
        config = DefenseConfig(name=defense.name, params=defense.params, train=trial.train)
        steps += defense_steps(f"d{position}", f"d{position}", config, (*data, model))
        model = f"d{position}"
    if trial.defenses:
        steps.append(Step("evaluate_after", "evaluate", EvaluateConfig(), (*data, model)))
    return steps


def defense_steps(position: str, label: str, config: DefenseConfig, parents: tuple[str, ...]) -> list[Step]:
    """The ``defense`` step ``label`` preceded by the shared stage it reads, labelled ``<position>_<stage>``.

    A prepared stage that is itself a defense (``random_filter``'s ``same_as``) brings its own
    preparation, so ``random_filter: {same_as: ac}`` at position 1 is ``d1_activations``,
    ``d1_defense``, ``d1``. Every step reads the same model and data, ``parents``.
    """
    if (prepared := preparation(config)) is None:
        return [Step(label, "defense", config, parents)]
    stage, prepared_config = prepared
    prepared_label = f"{position}_{stage}"
    if stage == "defense":
        before = defense_steps(position, prepared_label, prepared_config, parents)
    else:
        before = [Step(prepared_label, stage, prepared_config, parents)]
    return [*before, Step(label, "defense", config, (*parents, prepared_label))]


def stage_keys(trial: TrialSpec) -> dict[str, tuple[str, str]]:
    """``{label: (stage name, artifact key)}`` for every step of ``trial``, computing nothing."""
    keys: dict[str, tuple[str, str]] = {}
    for step in pipeline_steps(trial):
        parent_keys = [keys[parent][1] for parent in step.parents]
        keys[step.label] = (step.stage, ArtifactStore.key(STAGES[step.stage], step.config, parent_keys))
    return keys


def run_pipeline(trial: TrialSpec, store: ArtifactStore) -> list[tuple[str, StageRecord]]:
    """Resolve every step of ``trial`` through ``store``; returns ``(label, StageRecord)`` in order."""
    refs: dict[str, ArtifactRef] = {}
    records = []
    for step in pipeline_steps(trial):
        ref, record = store.resolve(STAGES[step.stage], step.config, [refs[p] for p in step.parents])
        refs[step.label] = ref
        records.append((step.label, record))
    # A stage whose stored artifact a later stage found damaged was computed again after all.
    return [(label, refs[label].rebuilt or record) for label, record in records]


def trial_row(trial: TrialSpec, records: list[tuple[str, StageRecord]], sweep: str) -> dict[str, Any]:
    """Flatten a trial's config and stage records into one result row."""
    by_label = dict(records)
    attack = by_label["poison"].metrics
    dataset_metrics = by_label["dataset"].metrics
    before = by_label["evaluate_before"].metrics
    after = by_label.get("evaluate_after", by_label["evaluate_before"]).metrics
    row: dict[str, Any] = {
        "sweep": sweep,
        "trial_id": trial.trial_id,
        "dataset": trial.dataset.name,
        "model": trial.train.model,
        "trigger": trial.attack.trigger,
        "source": attack["source"],
        "target": attack["target"],
        "poison_pct": float(trial.attack.poison_pct),
        "seed": trial.attack.seed,
        "pipeline": trial.pipeline,
        "n_defenses": len(trial.defenses),
        "n_poisoned": attack["n_poisoned"],
        "clean_acc_before": before["clean_acc"],
        "asr_before": before["asr"],
        "ra_before": before["ra"],
        "clean_acc_after": after["clean_acc"],
        "asr_after": after["asr"],
        "ra_after": after["ra"],
        "der": defense_effectiveness_rating(before["asr"], after["asr"], before["clean_acc"], after["clean_acc"])
        if trial.defenses else None,
    }
    # How face triggers were placed (Haar eye pairs or the aligned-face prior), for training and test poisons.
    row.update({k: v for k, v in attack.items() if "placement" in k})
    row.update({f"dataset_{k}": v for k, v in trial.dataset.model_dump().items() if k != "name"})
    row.update({f"train_{k}": v for k, v in trial.train.model_dump().items() if k not in ("model", "seed")})
    for position, defense in enumerate(trial.defenses, start=1):
        metrics = by_label[f"d{position}"].metrics
        if shared := set(defense.params) & set(metrics):
            raise ValueError(f"defense {defense.name!r} has metrics named like its parameters: {sorted(shared)}")
        row[f"d{position}_name"] = defense.name
        row.update({f"d{position}_{k}": _canonical(v) for k, v in defense.params.items()})
        row.update({f"d{position}_{k}": v for k, v in metrics.items()})
    for label, record in records:
        row[f"{label}_seconds"] = record.seconds
        row[f"{label}_computed"] = record.computed
    row["n_stages_computed"] = sum(record.computed for _, record in records)
    row["dataset_fingerprint"] = dataset_metrics["fingerprint"]
    row["code_version"] = code_version()
    row.update(package_versions())
    row["node"] = node_name()
    return row


def _canonical(value: Any) -> Any:
    # A mapping (random_filter's same_as) is stored as its canonical JSON, a string column.
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def row_types(trial: TrialSpec) -> dict[str, pa.DataType]:
    """Parquet types of the row's configuration columns, from the config classes' annotations.

    A parameter left at None (``ex_re_threshold``: off) is a null of its declared type, so a column
    has one type in every row and sweep whatever values its rows hold.
    """
    types = {f"dataset_{k}": t for k, t in field_types(type(trial.dataset)).items() if k != "name"}
    types.update({f"train_{k}": t for k, t in field_types(type(trial.train)).items() if k not in ("model", "seed")})
    for position, defense in enumerate(trial.defenses, start=1):
        types.update({f"d{position}_{k}": t for k, t in field_types(DEFENSES[defense.name].Params).items()})
    return types


def execute_trial(trial: TrialSpec, store: ArtifactStore, sweep: str) -> dict[str, Any]:
    """Run ``trial``'s pipeline and return its result row (with ``trial_seconds``)."""
    start = time.perf_counter()
    row = trial_row(trial, run_pipeline(trial, store), sweep)
    row["trial_seconds"] = time.perf_counter() - start
    row["finished_at"] = time.time()
    return row
