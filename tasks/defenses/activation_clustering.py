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
from tasks.defenses.activations import ActivationsConfig
from tasks.defenses.filtering import DefenseData, filter_and_retrain

if TYPE_CHECKING:
    import keras


class Params(StageConfig):
    """Parameters of ``ac``; the thesis's "size-based" analysis is ``smaller``, "distance-based" is ``distance``."""

    cluster_analysis: Literal["smaller", "distance", "relative-size", "silhouette-scores"] = "smaller"
    nb_clusters: int = Field(2, ge=2, le=20)
    nb_dims: int = Field(10, ge=1, le=1024)
    reduce: Literal["PCA", "FastICA"] = "PCA"
    layer: str | None = Field(None, description="layer whose activations are clustered; None = last hidden")
    ex_re_threshold: float | None = Field(
        None, gt=0, description="exclusionary reclassification: None = off; else ART's threshold (e.g. 1)"
    )
    retrain: Literal["full", "finetune", "none"] = "full"


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

    model.compile(loss="categorical_crossentropy")  # ART requires a compiled model
    defence = ActivationDefence(KerasClassifier(model, clip_values=(0, 255)), x[selected], y_onehot)
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
    flagged: np.ndarray, cluster: np.ndarray, x: np.ndarray, y: np.ndarray, threshold: float, train, n_classes: int
) -> np.ndarray:
    """Chen et al.'s check of each suspicious cluster by a model trained without any of them (ART's rule).

    ``flagged`` (bool (n,)) and ``cluster`` (int (n,)) are what :func:`detect_poison` returns. The
    judge is trained on the unflagged samples only. A flagged cluster that it still classifies
    mostly as its own label is clean: it is unflagged when ``count(own label) / count(most frequent
    other label) > threshold``, or when no other label is predicted at all. Poison, relabelled by
    the attacker, is classified as its true source class instead and stays flagged. Each cluster is
    judged on its own, as ART does: an analysis that flags several clusters of one class
    (relative-size, silhouette-scores) would otherwise let a larger clean cluster clear the poison
    beside it.

    Returns the new ``flagged`` (bool (n,)).
    """
    from tasks.evaluate import predict_labels
    from tasks.train import train_from_scratch

    if not flagged.any() or flagged.all():
        return flagged
    judge = train_from_scratch(train, x[~flagged], y[~flagged], n_classes)
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


def preparation(params: Params) -> tuple[str, ActivationsConfig]:
    """The shared stage this defense reads: the activations of ``params.layer``."""
    return "activations", ActivationsConfig(layer=params.layer)


def defend(params: Params, model, data: DefenseData, train, prepared):
    """Filter the training data with Activation Clustering and retrain on what is kept.

    ``prepared`` is the :class:`~tasks.defenses.activations.Activations` of ``data.x``.
    """
    flagged, cluster = detect_poison(params, model, data.x, data.y, prepared.values, data.n_classes, seed=train.seed)
    flagged_by_clustering = int(flagged.sum())
    if params.ex_re_threshold is not None:
        flagged = exclusionary_reclassification(
            flagged, cluster, data.x, data.y, params.ex_re_threshold, train, data.n_classes
        )
    model, kept, metrics = filter_and_retrain(params.retrain, train, model, data, flagged)
    metrics["flagged_by_clustering"] = flagged_by_clustering
    metrics["classes_skipped"] = int(data.n_classes - analysable_classes(data.y, data.n_classes, params).sum())
    return model, kept, metrics
