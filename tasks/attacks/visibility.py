"""How visible a trigger is: distances between the images an attack changed and their originals."""

from __future__ import annotations

import numpy as np

from tasks.methods import VISIBILITY_METRICS


def _ssim(original: np.ndarray, changed: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    side = min(original.shape[:2])
    window = min(7, side if side % 2 else side - 1)  # scikit-image's default, or the largest odd window that fits
    return float(structural_similarity(original, changed, channel_axis=-1, data_range=255, win_size=window))


def visibility(original: np.ndarray, changed: np.ndarray) -> dict[str, float]:
    """The :data:`~tasks.methods.VISIBILITY_METRICS` of ``changed`` against ``original``.

    Parameters
    ----------
    original, changed : uint8 (n, h, w, c), the same shape

    Returns
    -------
    dict
        ``linf`` and ``l2`` on the 0-255 scale (L2 over every pixel and channel of an image), PSNR in
        dB (+inf for an image left unchanged, stored as such) and SSIM (scikit-image, data range 255),
        each as the mean over the images and the worst image (``_max`` for distances, ``_min`` for
        similarities). NaN for every metric when there are no images.
    """
    original, changed = np.asarray(original), np.asarray(changed)
    if original.shape != changed.shape:
        raise ValueError(f"original {original.shape} and changed {changed.shape} images differ in shape")
    if len(original) == 0:
        return {metric.name: float("nan") for metric in VISIBILITY_METRICS}
    difference = changed.astype(np.float64) - original.astype(np.float64)
    flat = difference.reshape(len(difference), -1)
    linf = np.abs(flat).max(axis=1)
    l2 = np.sqrt((flat ** 2).sum(axis=1))
    mse = (flat ** 2).mean(axis=1)
    with np.errstate(divide="ignore"):
        psnr = np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.where(mse > 0, mse, 1)), np.inf)
    ssim = np.array([_ssim(a, b) for a, b in zip(original, changed)])  # scikit-image has no batched SSIM
    return {
        "linf_mean": float(linf.mean()), "linf_max": float(linf.max()),
        "l2_mean": float(l2.mean()), "l2_max": float(l2.max()),
        "psnr_mean": float(psnr.mean()), "psnr_min": float(psnr.min()),
        "ssim_mean": float(ssim.mean()), "ssim_min": float(ssim.min()),
    }
