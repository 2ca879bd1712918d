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
