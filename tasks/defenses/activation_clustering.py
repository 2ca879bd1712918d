"""Activation Clustering (Chen et al. 2018) through ART 1.20's ``ActivationDefence`` (thesis §2.7).

The activations come from the shared ``activations`` stage (the layer the config names, the
model's last hidden layer by default) and are handed to ART: ART's own ``_get_activations`` picks
layer ``len(layer_names) - 1``, which for Functional Keras models is one layer off because it
counts the InputLayer, and it converts the whole training set at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

import tasks.runtime  # noqa: F401  (selects the Keras backend before keras is imported)
from tasks.config import StageConfig
from tasks.datasets import ImageDataset
from tasks.defenses.filtering import Detection, defense_data
from tasks.methods import Context, DefenseData, Detected, FilterParams, Metric, TrainingSetFilter
from tasks.poison import PoisonedDataset
from tasks.stage import Stage, Whole
from tasks.train import TrainedModel

if TYPE_CHECKING:
    import keras


class Params(FilterParams):
    """Parameters of ``ac``; the thesis's "size-based" analysis is ``smaller``, "distance-based" is ``distance``."""

    cluster_analysis: Literal["smaller", "distance", "relative-size", "silhouette-scores"] = "smaller"
    nb_clusters: int = Field(2, ge=2, le=20)
    nb_dims: int = Field(10, ge=1, le=1024)
    reduce: Literal["PCA", "FastICA"] = "PCA"
    layer: str | None = Field(None, description="layer whose activations are clustered; None = last hidden")
    ex_re_threshold: float | None = Field(
        None, gt=0, description="exclusionary reclassification: None = off; else ART's threshold (e.g. 1)"
    )


def analysable_classes(y: np.ndarray, n_classes: int, params: Params) -> np.ndarray:
    """Bool mask over classes with enough samples to reduce to ``nb_dims`` and split into ``nb_clusters``."""
    counts = np.bincount(y, minlength=n_classes)
    return counts >= max(params.nb_dims, params.nb_clusters, 2)


def detect_poison(
    params: Params, model: "keras.Model", x, y, activations: np.ndarray, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Run ART's Activation Clustering on ``x`` (uint8 (n, h, w, c)) with labels ``y`` (int (n,)).

    ``activations`` (float (n, features)) are the chosen layer's outputs for ``x``. Classes too
    small to analyse (see :func:`analysable_classes`) are left unflagged.

    Returns
    -------
    flagged : ndarray of bool, shape (n,)
        True where ART judged the sample poisonous (its ``is_clean_lst`` is 1 = clean, 0 = flagged).
    cluster : ndarray of int, shape (n,)
        The cluster each sample was put in, numbered across classes (``label * nb_clusters + k``);
        -1 in classes that were not analysed.
    """
    from tasks.defenses.art_fixes import ActivationDefence  # first: it silences ART's import warning
    import keras
    from art.estimators.classification import KerasClassifier

    flagged = np.zeros(len(y), dtype=bool)
    cluster = np.full(len(y), -1, dtype=np.int64)
    analysable = analysable_classes(y, n_classes, params)
    if not analysable.any():
        return flagged, cluster
    selected = analysable[y]
    relabel = np.cumsum(analysable) - 1  # class index -> index among the analysable classes
    y_onehot = np.eye(int(analysable.sum()), dtype=np.float32)[relabel[y[selected]]]
    activations = activations[selected]

    # ART requires a compiled model; compiling a new model over the same layers leaves the caller's,
    # which may be a cached artifact another trial reads, as it was.
    view = keras.Model(model.inputs, model.outputs)
    view.compile(loss="categorical_crossentropy")
    defence = ActivationDefence(KerasClassifier(view, clip_values=(0, 255)), x[selected], y_onehot)
    defence.activations_by_class = defence._segment_by_class(activations, y_onehot)
    # ART's KMeans and PCA/FastICA take no random_state and draw from NumPy's global generator.
    np.random.seed(seed)
    _, is_clean = defence.detect_poison(
        nb_clusters=params.nb_clusters,
        nb_dims=params.nb_dims,
        reduce=params.reduce,
        cluster_analysis=params.cluster_analysis,
    )
    flagged[selected] = np.asarray(is_clean) == 0
    # ART lists each class's cluster ids in the order of that class's samples.
    rows = np.flatnonzero(selected)
    by_class = defence._segment_by_class(np.arange(len(rows)), y_onehot)
    for label, members, clusters in zip(np.flatnonzero(analysable), by_class, defence.clusters_by_class):
        cluster[rows[members]] = label * params.nb_clusters + np.asarray(clusters)
    return flagged, cluster


def exclusionary_reclassification(
    flagged: np.ndarray, cluster: np.ndarray, judge: "keras.Model", x: np.ndarray, y: np.ndarray, threshold: float,
    n_classes: int,
) -> np.ndarray:
    """Chen et al.'s check of each suspicious cluster by a model trained without any of them (ART's rule).

    ``flagged`` (bool (n,)) and ``cluster`` (int (n,)) are what :func:`detect_poison` returns;
    ``judge`` was trained on the unflagged samples only (the ``retrain`` stage of that kept set). A
    flagged cluster that it still classifies mostly as its own label is clean: it is unflagged when
    ``count(own label) / count(most frequent other label) > threshold``, or when no other label is
    predicted at all. Poison, relabelled by the attacker, is classified as its true source class
    instead and stays flagged. Each cluster is judged on its own, as ART does: an analysis that
    flags several clusters of one class (relative-size, silhouette-scores) would otherwise let a
    larger clean cluster clear the poison beside it.

    Returns the new ``flagged`` (bool (n,)).
    """
    from tasks.evaluate import predict_labels

    if not flagged.any() or flagged.all():
        return flagged
    predicted = np.full(len(y), -1)
    predicted[flagged] = predict_labels(judge, x[flagged])
    result = flagged.copy()
    for suspicious in np.unique(cluster[flagged]):
        group = np.flatnonzero(flagged & (cluster == suspicious))
        label = y[group[0]]  # clusters are formed within one class
        counts = np.bincount(predicted[group], minlength=n_classes)
        own, other = counts[label], np.delete(counts, label).max()
        if other == 0 or own / other > threshold:
            result[group] = False
    return result


class ReclassificationConfig(StageConfig):
    """Stage ``reclassification``: ART's ``ex_re_threshold``."""

    threshold: float = Field(gt=0)


def reclassification_stage(config: ReclassificationConfig, dataset: ImageDataset, poisoned: PoisonedDataset, kept,
                           clustering: Detection, judge: TrainedModel) -> Detection:
    """Stage ``reclassification``: :func:`exclusionary_reclassification` of the ``clustering``
    detection of the samples ``kept.keep``, by ``judge`` (trained on what the clustering kept).

    It reads the clustering's cluster ids and metrics, not only what it kept: the walk hands the
    clustering over whole, so this stage is keyed by the clustering's recipe (``nb_clusters``,
    ``nb_dims``...), never by its kept-set digest alone.
    """
    data = defense_data(dataset, poisoned, kept.keep)
    flagged = ~np.isin(kept.keep, clustering.keep)
    result = exclusionary_reclassification(
        flagged, clustering.scores, judge.model, data.x, data.y, config.threshold, data.n_classes
    )
    metrics = {name: clustering.metrics[name] for name in ("flagged_by_clustering", "classes_skipped")}
    return Detection.of(kept.keep, result, data.is_poison, len(dataset.y_train), metrics, clustering.scores,
                        data.is_cover)


RECLASSIFICATION = Stage("reclassification", 2, reclassification_stage, Detection, identity="kept_digest",
                         view=Detection.kept)


class ActivationClustering(TrainingSetFilter):
    """Activation Clustering (Chen et al. 2018) through ART: cluster each class's activations, flag a cluster."""

    name = "ac"
    Params = Params
    reads_model = True  # ART's ActivationDefence wraps it, though the activations are given
    stages = (RECLASSIFICATION,)
    metrics = (
        Metric("flagged_by_clustering", int, "samples the clustering flagged before any reclassification"),
        Metric("classes_skipped", int, "classes too small to cluster (left unflagged)"),
    )

    def prepare(self, params: Params, graph, label: str) -> tuple:
        """The shared stage this defense reads: the activations of ``params.layer``."""
        return (graph.activations(label, params.layer),)

    def detect(self, params: Params, data: DefenseData, context: Context) -> Detected:
        """Activation Clustering alone (exclusionary reclassification is a stage of its own, see
        :meth:`detection`). The scores are each sample's cluster (see :func:`detect_poison`)."""
        (activations,) = context.prepared
        flagged, cluster = detect_poison(params, context.model, data.x, data.y, activations.values, data.n_classes,
                                         seed=context.seed)
        skipped = int(data.n_classes - analysable_classes(data.y, data.n_classes, params).sum())
        return Detected(flagged, {"flagged_by_clustering": int(flagged.sum()), "classes_skipped": skipped}, cluster)

    def detection(self, params: Params, graph, label: str):
        """Clustering, then with ``ex_re_threshold`` the judge and the reclassification.

        The judge is the ``retrain`` stage of the samples the clustering kept (full, the current
        architecture): the same artifact as the full retraining after that clustering without
        reclassification. When the clustering flags nothing or everything there is nothing to judge.
        """
        if params.ex_re_threshold is None:
            return graph.detection(self, params, label)
        clustering_params = params.model_copy(update={"ex_re_threshold": None})
        clustering, record = graph.detection(self, clustering_params, label, f"{label}_clustering_detection")
        if record.metrics.get("removed_total") == 0 or record.metrics.get("n_kept") == 0:
            return clustering, record
        judge = graph.retrain(f"{label}_judge", "full", clustering)
        return graph.run(f"{label}_detection", RECLASSIFICATION, ReclassificationConfig(threshold=params.ex_re_threshold),
                         graph.dataset, graph.poison, graph.kept, Whole(clustering), judge)
