"""``strip``: an input filter that rejects test inputs whose prediction survives superimposition.

Y. Gao, C. Xu, D. Wang, S. Chen, D. C. Ranasinghe, S. Nepal, "STRIP: A Defence Against Trojan
Attacks on Deep Neural Networks", ACSAC 2019. A trigger decides the prediction whatever image it
is laid over, so the copies of a triggered input superimposed on clean images are all classified
alike and the entropy of their class probabilities is low; a clean input's copies are not. Each
input is superimposed (``x + x_clean``, clipped to [0, 255], as the authors' ``cv2.addWeighted(x,
1, x_clean, 1, 0)``) on ``n_overlays`` clean images; the entropy of each copy's class probabilities
is averaged over the copies; an input below the ``frr`` quantile of that statistic on clean
calibration images is rejected.

Where ART 1.20.1's ``STRIP`` goes wrong (SPEC §2), this one does not: the entropy is over classes
(ART's runs over the copies, so a trojaned input can score higher than a clean one); a rejection
is "not served", never a class (ART's all-zero row is class 0 to an argmax); copies are predicted
in large batches, not one image at a time; and the overlays are drawn without replacement from the
trial's seed, out of a part of the clean tuning set disjoint from the calibration images.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.methods import Calibration, CleanData, Context, InputFilter, Metric

IMAGES_PER_PREDICTION = 2048  # superimposed copies per predict call: large enough to run at predict's rate
FEW_CALIBRATION_IMAGES = 200  # a threshold set on fewer clean images is flagged in the report


class StripParams(StageConfig):
    """Parameters of ``strip``."""

    n_overlays: int = Field(100, ge=1, le=10_000, description="clean images each input is superimposed on")
    frr: float = Field(0.05, gt=0, lt=1, description="share of clean calibration images the threshold rejects")


def overlay_entropy(model, x: np.ndarray, overlays: np.ndarray) -> np.ndarray:
    """Mean entropy (nats) of the class probabilities of ``x``'s copies superimposed on ``overlays``.

    Parameters
    ----------
    model : Keras model mapping uint8-range images to class probabilities (n, n_classes)
    x : uint8 (n, h, w, c)
    overlays : uint8 (m, h, w, c)

    Returns float64 (n,): for input i, the mean over j of -sum_k p_k log p_k, p = model(clip(x_i +
    overlays_j, 0, 255)).
    """
    x, overlays = np.asarray(x), np.asarray(overlays)
    per_slice = max(1, IMAGES_PER_PREDICTION // len(overlays))
    entropy = np.empty(len(x))
    for start in range(0, len(x), per_slice):
        inputs = x[start:start + per_slice]
        copies = np.minimum(inputs[:, None].astype(np.uint16) + overlays[None], 255).astype(np.uint8)
        probabilities = np.asarray(model.predict_on_batch(copies.reshape(-1, *x.shape[1:])), dtype=np.float64)
        terms = -probabilities * np.log(np.clip(probabilities, 1e-12, 1.0))
        entropy[start:start + len(inputs)] = terms.sum(axis=1).reshape(len(inputs), len(overlays)).mean(axis=1)
    return entropy


class Strip(InputFilter):
    """STRIP (Gao et al. 2019): reject inputs whose superimposed copies the model classifies alike."""

    name = "strip"
    Params = StripParams
    metrics = (
        Metric("threshold", float, "mean overlay entropy (nats) below which an input is rejected"),
        Metric("calibration_n", int, "clean tuning images the threshold was set on"),
        Metric("overlays_used", int, "clean tuning images inputs are superimposed on (n_overlays, or half "
                                     "the tuning set when it is smaller)"),
    )

    def calibrate(self, params: StripParams, model, data: CleanData, context: Context) -> Calibration:
        if len(data.x_tune) < 2:
            raise ValueError(f"strip needs at least 2 clean tuning images, one to overlay and one to "
                             f"calibrate on; the tuning set has {len(data.x_tune)}")
        order = np.random.default_rng(context.seed).permutation(len(data.x_tune))
        n_overlays = min(params.n_overlays, len(order) // 2)
        overlays, calibration = data.x_tune[order[:n_overlays]], data.x_tune[order[n_overlays:]]
        threshold = float(np.quantile(overlay_entropy(model, calibration, overlays), params.frr))
        return Calibration(arrays={"overlays": overlays, "threshold": np.array(threshold)},
                           metrics={"threshold": threshold, "calibration_n": len(calibration),
                                    "overlays_used": n_overlays})

    def screen(self, params: StripParams, calibration: Calibration, model, x: np.ndarray, context: Context):
        entropy = overlay_entropy(model, x, calibration.arrays["overlays"])
        return entropy >= float(calibration.arrays["threshold"]), -entropy

    def accept(self, params: StripParams, calibration: Calibration, model, x: np.ndarray, context: Context):
        return self.screen(params, calibration, model, x, context)[0]
