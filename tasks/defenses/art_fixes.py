"""The one place where bdsweep corrects ART 1.20 (SPEC §2). Each fix has a test that fails on plain ART."""

from __future__ import annotations

import warnings

import numpy as np

with warnings.catch_warnings():
    # ART warns at import that PyTorch is absent; bdsweep does not use ART's PyTorch parts.
    warnings.filterwarnings("ignore", message="PyTorch not found")
    from art.defences.detector.poison import ActivationDefence as _ArtActivationDefence
    from art.utils import segment_by_class


class ActivationDefence(_ArtActivationDefence):
    """ART's ``ActivationDefence`` that counts classes from the labels it is given.

    ART segments data into ``classifier.nb_classes`` classes and then reduces and clusters every
    one of them, so a class with fewer samples than ``nb_dims`` (or none at all, e.g. a source class
    poisoned at 100 %) crashes PCA. Counting classes from the one-hot labels lets the caller hand in
    only the classes that can be analysed, relabelled ``0 .. k-1``. Labels are passed on as indices
    because ART's ``segment_by_class`` cannot read a one-hot matrix of width 1 (one class left).
    """

    def _segment_by_class(self, data, features):
        return segment_by_class(data, np.argmax(features, axis=1), features.shape[1])

    def analyze_clusters(self, **kwargs):
        """ART's analysis, with ``relative-size`` and ``silhouette-scores`` replaced by working versions.

        ART 1.20's relative-size analysis asks ``cluster_id in (array([]),)`` when no cluster is
        small, which NumPy >= 2.2 refuses (truth value of an empty array); its silhouette analysis
        marks the small cluster as the *clean* one and leaves the other class members uninitialised
        (``np.empty``), so a whole suspicious class ends up flagged.
        """
        self.set_params(**kwargs)
        if self.cluster_analysis not in ("relative-size", "silhouette-scores"):
            return super().analyze_clusters()
        if not self.clusters_by_class:
            self.cluster_activations()
        use_silhouette = self.cluster_analysis == "silhouette-scores"
        assigned_clean, poisonous, report = [], [], {"cluster_analysis": self.cluster_analysis}
        for index, (clusters, reduced) in enumerate(zip(self.clusters_by_class, self.red_activations_by_class)):
            small = small_clusters(clusters, self.nb_clusters)
            score = None
            if use_silhouette and len(small):
                score = cohesion(reduced, clusters)
                if score <= SILHOUETTE_THRESHOLD:
                    small = np.array([], dtype=int)
            assigned_clean.append((~np.isin(clusters, small)).astype(int))
            poisonous.append(np.isin(np.arange(self.nb_clusters), small).astype(int))
            report[f"Class_{index}"] = {"suspicious_clusters": small.tolist(), "silhouette": score}
        self.assigned_clean_by_class = np.asarray(assigned_clean, dtype=object)
        self.poisonous_clusters = np.asarray(poisonous)
        return report, self.assigned_clean_by_class


# ART's defaults for the two analyses (ClusteringAnalyzer.analyze_by_relative_size / _silhouette_score).
SIZE_THRESHOLD = 0.35
SILHOUETTE_THRESHOLD = 0.1


def small_clusters(clusters: np.ndarray, nb_clusters: int) -> np.ndarray:
    """Cluster ids holding less than ``SIZE_THRESHOLD`` of a class (shares rounded to 2 places, as ART)."""
    sizes = np.bincount(clusters, minlength=nb_clusters)
    shares = np.round(sizes / max(sizes.sum(), 1), 2)
    return np.flatnonzero((shares < SIZE_THRESHOLD) & (sizes > 0))


def cohesion(reduced: np.ndarray, clusters: np.ndarray) -> float:
    """Mean silhouette of a class's clustering (rounded to 4 places, as ART); 0 when it is one cluster."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(clusters)) < 2:
        return 0.0
    return round(float(silhouette_score(reduced, clusters)), 4)
