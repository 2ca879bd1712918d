"""A trial's stage graph, walked one stage at a time over the method protocols (:mod:`tasks.methods`).

The graph is not fixed in advance: what a defense hands on depends on what it decided (a
retraining keyed by the samples a detection kept, or none at all when nothing was kept), so the
walk asks for each stage through ``step(label, stage, config, *parents) -> (ref, record)`` and
reads the records it gets back. The orchestrator's ``step`` resolves stages in the artifact store;
a plan that computes nothing passes records without metrics, and the walk then takes the branch
that does the most work, so counting its stages gives an upper bound.

A *ref* is anything with ``key``, ``identity``, ``load()`` (the whole artifact) and ``read()``
(what a child keyed by ``identity`` may read); a record has ``metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasks.config import StageConfig
from tasks.datasets import ImageDataset, load_dataset
from tasks.defenses.activations import ACTIVATIONS, ActivationsConfig
from tasks.defenses.filtering import DETECTION, GRAPH_METRICS, RETRAIN, DetectionConfig, RetrainConfig
from tasks.defenses.kinds import CALIBRATION, INSPECTION, INSPECTION_REPAIR, REPAIR, MethodConfig
from tasks.evaluate import EVALUATE, EvaluateConfig
from tasks.methods import (
    InputFilter,
    ModelInspection,
    ModelRepair,
    TrainingSetFilter,
)
from tasks.poison import POISON, AttackConfig
from tasks.registry import origin_of
from tasks.stage import Stage
from tasks.train import TrainConfig, TrainedModel, train_model


class Ref(Protocol):
    key: str

    @property
    def identity(self) -> str: ...

    def load(self) -> Any: ...

    def read(self) -> Any: ...


class Record(Protocol):
    metrics: dict


Step = Callable[..., tuple[Ref, Record]]  # step(label, stage: Stage, config, *parent refs) -> (ref, record)

DATASET = Stage("dataset", 1, load_dataset, ImageDataset, identity="fingerprint", view=ImageDataset.content)
TRAIN = Stage("train", 1, train_model, TrainedModel)


@dataclass
class Graph:
    """What an attack's own parent stages may read: the dataset, the train config, ``step``.

    Attributes
    ----------
    step : the function that resolves a stage (the artifact store's, or a plan's)
    train_config : the trial's :class:`TrainConfig` (its seed is every method's)
    dataset : the ``dataset`` ref
    """

    step: Step
    train_config: TrainConfig
    dataset: Ref

    def run(self, label: str, stage: Stage, config: StageConfig, *parents: Ref) -> tuple[Ref, Record]:
        """Resolve ``stage`` for ``config`` and ``parents`` under the step label ``label``."""
        return self.step(label, stage, config, *parents)


@dataclass
class TrialGraph(Graph):
    """Where a trial's walk stands after training: the artifacts a defense is handed.

    Attributes
    ----------
    step, train_config, dataset : as :class:`Graph`
    poison, train : the ``poison`` and ``train`` refs
    model : the current model (a :class:`TrainedModel` ref)
    kept : a ref whose artifact's ``keep`` is the training samples the defenses so far kept
    architecture : channel selections applied to the model so far, in order (a later full
        retraining re-initialises the pruned network)
    input_filter : the ``calibration`` ref and config of an input filter standing last, else None
    """

    poison: Ref = None
    train: Ref = None
    model: Ref = None
    kept: Ref = None
    architecture: tuple[Ref, ...] = ()
    input_filter: tuple[Ref, MethodConfig] | None = field(default=None)

    # -- what filters and repairs share ------------------------------------------------------------

    def activations(self, label: str, layer: str | None) -> Ref:
        """The shared ``activations`` stage (``<label>_activations``) of ``layer`` (None: the last
        hidden layer) on the current model and kept samples."""
        ref, _ = self.run(f"{label}_activations", ACTIVATIONS, ActivationsConfig(layer=layer),
                          self.dataset, self.poison, self.model, self.kept)
        return ref

    def detection(self, method: TrainingSetFilter, params: StageConfig, label: str,
                  detection_label: str | None = None) -> tuple[Ref, Record]:
        """``method``'s prepared stages, then its ``detection`` stage (``<label>_detection``)."""
        prepared = method.prepare(params, self, label)
        model = (self.model,) if method.reads_model else ()
        config = DetectionConfig(name=method.name, params=params.model_dump(mode="json", exclude={"retrain"}),
                                 train=self.train_config, origin=origin_of(method))
        return self.run(detection_label or f"{label}_detection", DETECTION, config,
                        self.dataset, self.poison, self.kept, *model, *prepared)

    def retrain(self, label: str, mode: str, kept: Ref) -> Ref:
        """The ``retrain`` stage (``<label>_retrain``) on the samples ``kept`` keeps: ``full`` from
        scratch with the current architecture, ``finetune`` from the current model."""
        base = self.architecture if mode == "full" else (self.model,)
        ref, _ = self.run(f"{label}_retrain", RETRAIN, RetrainConfig(train=self.train_config, mode=mode),
                          self.dataset, self.poison, kept, *base)
        return ref

    def repair(self, method: ModelRepair, params: StageConfig, label: str) -> tuple[Ref, dict]:
        """The generic ``repair`` stage (``<label>_repair``): ``method.repair`` of the current model."""
        ref, record = self.run(f"{label}_repair", REPAIR, MethodConfig.of(method, params, self.train_config),
                               self.dataset, self.model)
        return ref, dict(record.metrics)


def walk_filter(method: TrainingSetFilter, params, graph: TrialGraph, label: str) -> dict:
    """A training-set filter at ``label``: its detection, then the retraining ``params.retrain`` asks for.

    ``none`` (or nothing kept) hands the current model on with the detection's kept set; a ``full``
    retraining of the original architecture that keeps every sample is the ``train`` artifact;
    otherwise the ``retrain`` stage. Metrics missing from the record (a plan that computes nothing)
    take the branch that does the most work.
    """
    detection, record = method.detection(params, graph, label)
    metrics = record.metrics
    shown = {k: v for k, v in metrics.items() if k not in GRAPH_METRICS}
    if params.retrain == "none" or metrics.get("n_kept") == 0:
        graph.kept = detection
        return {**shown, "retrained": False, "retrain_key": None}
    if params.retrain == "full" and not graph.architecture and metrics.get("kept_everything"):
        graph.model = graph.kept = graph.train
        return {**shown, "retrained": True, "retrain_key": graph.train.key}
    retrained = graph.retrain(label, params.retrain, detection)
    graph.model = graph.kept = retrained
    return {**shown, "retrained": True, "retrain_key": retrained.key}


def walk_inspection(method: ModelInspection, params, graph: TrialGraph, label: str) -> dict:
    """A model inspection at ``label`` (stage ``inspection``), then its repair where it repairs."""
    config = MethodConfig.of(method, params, graph.train_config)
    prepared = method.prepare(params, graph, label)
    inspection, record = graph.run(f"{label}_inspection", INSPECTION, config, graph.dataset, graph.poison, graph.model,
                                   *prepared)
    row = dict(record.metrics)
    if method.repairs(params):
        repaired, repair_record = graph.run(f"{label}_inspection_repair", INSPECTION_REPAIR, config,
                                            graph.dataset, graph.model, inspection)
        graph.model = repaired
        row.update(repair_record.metrics)
    return {**row, "repaired": method.repairs(params)}


def walk_repair(method: ModelRepair, params, graph: TrialGraph, label: str) -> dict:
    """A model repair at ``label``: the model it hands on replaces the current one."""
    model, metrics = method.repaired(params, graph, label)
    graph.model = model
    return metrics


def walk_input_filter(method: InputFilter, params, graph: TrialGraph, label: str) -> dict:
    """An input filter at ``label``: its ``calibration`` on clean data; the final evaluation applies it."""
    config = MethodConfig.of(method, params, graph.train_config)
    calibration, record = graph.run(f"{label}_calibration", CALIBRATION, config, graph.dataset, graph.model)
    graph.input_filter = (calibration, config)
    return dict(record.metrics)


WALKS = {
    TrainingSetFilter.kind: walk_filter,
    ModelInspection.kind: walk_inspection,
    ModelRepair.kind: walk_repair,
    InputFilter.kind: walk_input_filter,
}


def walk_trial(dataset, attack: AttackConfig, train: TrainConfig, defenses: Sequence, step: Step) -> list[dict]:
    """Walk one trial's stages: dataset, the attack's parents, poison, train, evaluate_before, each
    defense, evaluate_after.

    ``defenses`` are :class:`~tasks.registry.DefenseSpec` (a method and its parameters). Labels are
    ``dataset``, ``poison``, ``train``, ``evaluate_before``, then per defense position N
    ``dN_<stage>`` (``d1_activations``, ``d1_detection``, ``d1_retrain``; ``d2_pruning_curve``...),
    then ``evaluate_after`` when there are defenses. Each defense sees the model and kept data its
    predecessor handed on; an input filter (which must stand last) changes what ``evaluate_after``
    measures.

    Returns the row metrics of each defense position, in order.
    """
    data, _ = step("dataset", DATASET, dataset)
    attack_method, attack_params = attack.method(), attack.params()
    attack_parents = attack_method.parents(attack_params, Graph(step, train, data))
    poison, _ = step("poison", POISON, attack, data, *attack_parents)
    trained, _ = step("train", TRAIN, train, data, poison)
    step("evaluate_before", EVALUATE, EvaluateConfig(), data, poison, trained)
    graph = TrialGraph(step, train, data, poison=poison, train=trained, model=trained, kept=trained)
    positions = []
    for position, spec in enumerate(defenses, start=1):
        method, params = spec.method(), spec.validated()
        positions.append(WALKS[method.kind](method, params, graph, f"d{position}"))
    if defenses:
        if graph.input_filter is None:
            step("evaluate_after", EVALUATE, EvaluateConfig(), data, poison, graph.model)
        else:
            calibration, config = graph.input_filter
            step("evaluate_after", EVALUATE, EvaluateConfig(input_filter=config), data, poison, graph.model, calibration)
    return positions


def known_stages() -> dict[str, Stage]:
    """Every stage a trial may run, by name: the generic ones and every registered method's own."""
    from tasks.registry import registry

    generic = (DATASET, POISON, TRAIN, EVALUATE, ACTIVATIONS, DETECTION, RETRAIN, REPAIR, INSPECTION,
               INSPECTION_REPAIR, CALIBRATION)
    stages = {stage.name: stage for stage in generic}
    for method in registry().methods():
        stages.update({stage.name: stage for stage in method.stages})
    return stages
