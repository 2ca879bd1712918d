"""A trial's pipeline: dataset -> poison -> train -> defense 1 -> ... -> evaluate, through the store.

The stages and the order they are walked in are declared in :mod:`tasks.plan`; this module resolves
them through the artifact store and flattens the result into one row (a dict): the trial's config,
every metric, and per stage its seconds and whether it was computed or reused. Defense columns
carry the defense's position in the pipeline: ``d1_tpr`` is the true-positive rate of the first
defense, ``d2_tpr`` of the second.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from orchestrator.provenance import code_version, node_name, package_versions
from orchestrator.search_space import TrialSpec
from orchestrator.store import ArtifactStore, StageRecord
from tasks.columns import arrow_type, field_types
from tasks.evaluate import SERVED, defense_effectiveness_rating
from tasks.methods import INPUT_FILTER_METRICS, InputFilter
from tasks.plan import walk_trial
from tasks.poison import poison_base
from tasks.stage import Stage


@dataclass(frozen=True)
class PlannedRef:
    """An artifact a plan names but does not compute: its key, and what children are keyed by (the
    key, or the stored content digest of a stage that declares one)."""

    key: str
    content: str | None = None

    @property
    def identity(self) -> str:
        return self.content or self.key


class StoredContents:
    """The content digests (``Stage.identity``) of artifacts already stored, read once each.

    A stage keyed by its parent's content (every child of ``dataset``, keyed by the arrays'
    fingerprint) can be planned only when that parent is stored; otherwise its key is a guess.
    """

    def __init__(self, store: ArtifactStore):
        self.store, self.stored = store, store.stored_keys()
        self._read: dict[tuple[str, str], str | None] = {}

    def content(self, stage: Stage, key: str) -> str | None:
        if stage.identity is None or (stage.name, key) not in self.stored:
            return None
        if (stage.name, key) not in self._read:
            try:
                metrics = self.store.manifest(stage, key)["metrics"]
                self._read[stage.name, key] = f"{stage.name}:{metrics[stage.identity]}"
            except (OSError, ValueError, KeyError):  # damaged: it will be computed again
                self._read[stage.name, key] = None
        return self._read[stage.name, key]


def stage_keys(trial: TrialSpec, stored: StoredContents | None = None) -> dict[str, tuple[str, str]]:
    """``{label: (stage name, artifact key)}`` for every step of ``trial``, computing nothing.

    An upper bound: a stage keyed by what an earlier one decided (a retraining by the samples a
    detection kept) is counted once per decision recipe, though many recipes may decide alike, and a
    retraining that turns out to be unnecessary (nothing kept, or everything) is counted too. With
    ``stored``, a child of a stored artifact keyed by content (every stage after ``dataset``) gets
    the key it will have; without, or before its parent is stored, a key that names its recipe.
    """
    keys: dict[str, tuple[str, str]] = {}

    def plan(label: str, stage: Stage, config, *parents: PlannedRef):
        key = ArtifactStore.key(stage, config, [parent.identity for parent in parents])
        keys[label] = (stage.name, key)
        content = stored.content(stage, key) if stored is not None else None
        return PlannedRef(key, content), StageRecord(stage.name, key, False, 0.0, {})

    walk_trial(trial.dataset, trial.attack, trial.train, trial.defenses, plan)
    return keys


def run_pipeline(trial: TrialSpec, store: ArtifactStore) -> tuple[list[tuple[str, StageRecord]], list[dict]]:
    """Resolve every stage of ``trial`` through ``store``.

    Returns ``(label, StageRecord)`` per stage in the order walked, and each defense position's row metrics.
    """
    resolved = []

    def resolve(label: str, stage: Stage, config, *parents):
        ref, record = store.resolve(stage, config, list(parents))
        resolved.append((label, ref, record))
        return ref, record

    positions = walk_trial(trial.dataset, trial.attack, trial.train, trial.defenses, resolve)
    # A stage whose stored artifact a later stage found damaged was computed again after all.
    return [(label, ref.rebuilt or record) for label, ref, record in resolved], positions


def trial_row(trial: TrialSpec, records: list[tuple[str, StageRecord]], positions: list[dict], sweep: str) -> dict[str, Any]:
    """Flatten a trial's config, stage records and defense positions' metrics into one result row."""
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
        "trigger": trial.attack.label,
        "attack": trial.attack.trigger.name,
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
    row["n_cover"] = attack.get("n_cover", 0)
    method = trial.attack.method()
    row["poison_base"] = poison_base(method.labels, trial.attack.source)
    row["attack_label_mode"] = method.labels
    # The attack's declared metrics (attack_<name>, attack_test_<name>) and parameters (trigger_<name>).
    row.update({k: v for k, v in attack.items() if k.startswith("attack_")})
    row.update({f"trigger_{k}": _canonical(v) for k, v in trial.attack.trigger.params.items()})
    if trial.attack.trigger.origin is not None:
        row["trigger_origin"] = trial.attack.trigger.origin
    row.update({f"dataset_{k}": _canonical(v) for k, v in trial.dataset.model_dump().items() if k != "name"})
    row.update({f"train_{k}": _canonical(v) for k, v in trial.train.model_dump().items() if k not in ("model", "seed")})
    # With an input filter (it stands last), the final evaluation also measured what it serves: the
    # served metrics and their DER go on the row, its rejection rates to its position.
    if trial.defenses and "served_clean_acc" in after:
        row.update({name: after[name] for name in SERVED})
        row["der_served"] = defense_effectiveness_rating(before["asr"], after["served_asr"], before["clean_acc"],
                                                         after["served_clean_acc"])
        rates = {m.name: after[m.name] for m in INPUT_FILTER_METRICS}
        positions = [*positions[:-1], {**positions[-1], **rates}]
    for position, (defense, metrics) in enumerate(zip(trial.defenses, positions), start=1):
        if shared := set(defense.params) & set(metrics):
            raise ValueError(f"defense {defense.name!r} has metrics named like its parameters: {sorted(shared)}")
        row[f"d{position}_name"] = defense.name
        row[f"d{position}_kind"] = defense.method().kind
        if defense.origin is not None:
            row[f"d{position}_origin"] = defense.origin
        row.update({f"d{position}_{k}": _canonical(v) for k, v in defense.params.items()})
        row.update({f"d{position}_{k}": v for k, v in metrics.items()})
    for label, record in records:
        row[f"{label}_seconds"] = record.seconds
        row[f"{label}_computed"] = record.computed
        # The artifact the step used, for readers of the store (the report draws from some); a
        # method's own metric of that name (Fine-Pruning's fine_tune_key) says the same and stays.
        row.setdefault(f"{label}_key", record.key)
    row["n_stages_computed"] = sum(record.computed for _, record in records)
    row["defense_seconds"] = defense_seconds(trial, by_label) if trial.defenses else None
    row["dataset_fingerprint"] = dataset_metrics["fingerprint"]
    row["code_version"] = code_version()
    row.update(package_versions())
    row["node"] = node_name()
    return row


def defense_seconds(trial: TrialSpec, by_label: dict[str, StageRecord]) -> float:
    """What the defenses cost one model, in seconds: every stage of theirs (``dN_...``; a reused
    stage counts what it took when computed, so the cost does not depend on the cache), plus, where
    an input filter stands last, what screening the test inputs added to the final evaluation
    (``evaluate_after`` over ``evaluate_before``, which evaluate as many inputs)."""
    total = sum(record.seconds for label, record in by_label.items()
                if label[:1] == "d" and label[1:].split("_", 1)[0].isdigit())
    if isinstance(trial.defenses[-1].method(), InputFilter) and {"evaluate_after", "evaluate_before"} <= set(by_label):
        total += max(0.0, by_label["evaluate_after"].seconds - by_label["evaluate_before"].seconds)
    return float(total)


def _canonical(value: Any) -> Any:
    # A mapping (random_filter's same_as, synthetic_signs' class_sizes) is stored as its canonical
    # JSON, a string column.
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def row_types(trial: TrialSpec) -> dict[str, pa.DataType]:
    """Parquet types of the row's declared columns: configurations from the config classes'
    annotations, methods' parameters and metrics from their declarations.

    A value left at None (``ex_re_threshold``: off; a metric a trial did not compute) is a null of
    its declared type, so a column has one type in every row and sweep whatever values its rows hold.
    """
    types = {f"dataset_{k}": t for k, t in field_types(type(trial.dataset)).items() if k != "name"}
    types.update({f"train_{k}": t for k, t in field_types(type(trial.train)).items() if k not in ("model", "seed")})
    attack = trial.attack.method()
    types.update({f"trigger_{k}": t for k, t in field_types(attack.Params).items()})
    declared = (*attack.kind_metrics(), *attack.metrics)
    types.update({f"attack_{m.name}": arrow_type(m.type) for m in declared})
    types.update({f"attack_test_{m.name}": arrow_type(m.type) for m in declared})
    types.update({"source": pa.int64(), "attack": pa.string(), "poison_base": pa.string(), "attack_label_mode": pa.string()})
    for position, defense in enumerate(trial.defenses, start=1):
        method = defense.method()
        if isinstance(method, InputFilter):
            types.update({name: pa.float64() for name in (*SERVED, "der_served")})
        types.update({f"d{position}_{k}": t for k, t in field_types(method.Params).items()})
        types.update({f"d{position}_{m.name}": arrow_type(m.type) for m in (*method.kind_metrics(), *method.metrics)})
    return types


def execute_trial(trial: TrialSpec, store: ArtifactStore, sweep: str) -> dict[str, Any]:
    """Run ``trial``'s pipeline and return its result row (with ``trial_seconds``)."""
    start = time.perf_counter()
    row = trial_row(trial, *run_pipeline(trial, store), sweep)
    row["trial_seconds"] = time.perf_counter() - start
    row["finished_at"] = time.time()
    return row
