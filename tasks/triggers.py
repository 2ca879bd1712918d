"""Backdoor triggers and how they are stamped onto images (thesis §4.1).

Every trigger has one method, ``apply(x) -> (x_poisoned, placement)``: a triggered copy of the
uint8 images and a count of how each image's trigger was placed (empty when there is nothing to
decide). The poison stage records the counts.

- The GTSRB triggers are small patches placed around the middle of the image, because
  traffic-sign images are centred and a sticker on the sign is what an attacker can place in the
  real world (the thesis rejected triggers outside the sign for that reason).
- The face triggers are sunglasses, an RGBA overlay scaled, rotated and placed over the eyes of
  each face. The thesis placed them by hand (insertface.com); here the eyes come from OpenCV's
  bundled Haar eye cascade, or, when it finds no plausible pair, from the aligned-face prior
  :data:`~tasks.datasets.synthetic_faces.ALIGNED_EYES`. ``placement`` counts ``haar`` and ``prior``.
- ``png:/path/to/overlay.png`` names a user's RGBA image placed like the sunglasses: its lens (or
  eye) centres must lie at 1/4 and 3/4 of its width, half-way down (:data:`OVERLAY_EYES`).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from tasks.datasets.synthetic_faces import ALIGNED_EYES
from tasks.errors import TriggerError
from tasks.file_identity import file_sha256

YELLOW = (255, 255, 0)
WHITE = (255, 255, 255)

# ART's add_pattern_bd draws four pixels in a 3x3 box: (0,2), (1,1), (2,0), (2,2) relative to its
# top-left corner. The thesis used that pattern, moved from the corner to the sign.
_ART_PATTERN = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=bool)

PNG_PREFIX = "png:"
OVERLAY_EYES: tuple[tuple[float, float], tuple[float, float]] = ((0.25, 0.5), (0.75, 0.5))
"""Where an overlay's eye (lens) centres are, as ``(x / width, y / height)``: the anchors placed on the eyes."""



class Trigger(Protocol):
    def apply(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """A triggered copy of uint8 images ``x`` (n, h, w, 3) and the count of each placement used."""


def _check_images(x: np.ndarray) -> None:
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (n, h, w, 3), got {x.dtype} {x.shape}")


@dataclass(frozen=True)
class PatchTrigger:
    """A fixed-colour patch of pixels placed at the centre of every image.

    Attributes
    ----------
    mask : ndarray of bool, shape (h, w)
        Which pixels of the patch's bounding box are painted.
    color : tuple of 3 ints in [0, 255]
    """

    mask: np.ndarray
    color: tuple[int, int, int]

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """Return a copy of ``x`` (uint8, shape (n, height, width, 3)) with the patch painted on.

        The placement count is empty: the centre is the only place a patch goes.
        """
        _check_images(x)
        height, width = x.shape[1:3]
        patch_h, patch_w = self.mask.shape
        top, left = (height - patch_h) // 2, (width - patch_w) // 2
        poisoned = np.array(x, copy=True)
        region = poisoned[:, top : top + patch_h, left : left + patch_w]
        region[:, self.mask] = np.asarray(self.color, dtype=np.uint8)
        return poisoned, {}


def draw_sunglasses(
    lens: tuple[int, int, int], frame: tuple[int, int, int], lens_alpha: float, width: int = 256
) -> np.ndarray:
    """Sunglasses as a straight-alpha RGBA overlay following :data:`OVERLAY_EYES`.

    Two rounded lenses, a bridge and the start of the temples, in units of the eye distance:
    the overlay is 2 eye distances wide and 0.8 high, each lens 0.84 x 0.6, so the glasses cover
    the eyes and brows' lower edge as real ones do.

    Parameters
    ----------
    lens, frame : tuple of 3 ints in [0, 255]
        RGB of the lenses and of the frame.
    lens_alpha : float in [0, 1]
        Opacity of the lenses (the frame is opaque).
    width : int, default=256
        Overlay width in pixels; drawn at 4x and box-averaged, so edges carry partial alpha.

    Returns
    -------
    ndarray of float32, shape (round(0.4 * width), width, 4)
        RGB in [0, 1] and alpha in [0, 1] (straight, not premultiplied).
    """
    scale = 4
    unit = width * scale / 2  # pixels per eye distance at the drawing resolution
    height = round(0.4 * width) * scale
    image = Image.new("RGBA", (width * scale, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)

    def box(cx, cy, half_w, half_h):  # eye-distance units, origin between the eyes
        return (width * scale / 2 + (cx - half_w) * unit, height / 2 + (cy - half_h) * unit,
                width * scale / 2 + (cx + half_w) * unit, height / 2 + (cy + half_h) * unit)  # fmt: skip

    rim = round(0.06 * unit)
    for side in (-1, 1):
        lens_box = box(side * 0.5, 0.0, 0.42, 0.3)
        draw.rounded_rectangle(lens_box, radius=0.22 * unit, fill=(*frame, 255))
        inner = (lens_box[0] + rim, lens_box[1] + rim, lens_box[2] - rim, lens_box[3] - rim)
        draw.rounded_rectangle(inner, radius=0.18 * unit, fill=(*lens, round(255 * lens_alpha)))
        draw.rectangle(box(side * 0.96, -0.2, 0.04, 0.05), fill=(*frame, 255))  # temples
    draw.rectangle(box(0.0, -0.2, 0.1, 0.035), fill=(*frame, 255))  # bridge
    drawn = np.asarray(image, dtype=np.float32) / 255
    # Average premultiplied colour, then divide by the averaged alpha: averaging straight colour
    # would darken the edges with the transparent pixels' black.
    premultiplied = np.concatenate([drawn[..., :3] * drawn[..., 3:], drawn[..., 3:]], axis=-1)
    reduced = premultiplied.reshape(height // scale, scale, width, scale, 4).mean(axis=(1, 3))
    alpha = reduced[..., 3:]
    color = np.where(alpha > 0, reduced[..., :3] / np.maximum(alpha, 1e-6), 0)
    return np.concatenate([color, alpha], axis=-1).astype(np.float32)


def _overlay_from_png(path: str) -> np.ndarray:
    """A user's PNG as a straight-alpha RGBA float32 overlay (h, w, 4); TriggerError if it cannot be read."""
    try:
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255
    except FileNotFoundError:
        raise TriggerError(path, None, "trigger image not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise TriggerError(path, None, f"not a readable image: {error}") from None
    if min(rgba.shape[:2]) < 4:
        raise TriggerError(path, None, f"trigger image is {rgba.shape[1]}x{rgba.shape[0]}; need at least 4x4 pixels")
    return rgba


@functools.cache
def _eye_cascade():
    import cv2

    from tasks.runtime import cpu_budget

    # OpenCV starts one thread per core; a trial may use only the CPUs Ray gave it.
    cv2.setNumThreads(cpu_budget())
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    if cascade.empty():  # opencv-python 5 wheels no longer ship the cascades (pyproject pins < 5)
        raise RuntimeError(f"OpenCV's haarcascade_eye.xml is missing from {cv2.data.haarcascades}")
    return cascade


# Working widths (pixels) the eye cascade runs at, in order, until a plausible pair is found: it
# was trained on 20x20 eyes, so 55x47 crops must be enlarged and 250x250 LFW frames may be shrunk.
_DETECTION_WIDTHS = (150, 200, 260)


def detect_eyes(image: np.ndarray) -> np.ndarray | None:
    """The eye centres OpenCV's Haar eye cascade finds in one aligned face image, or None.

    Among all detections, a pair is plausible when the eyes are 0.2-0.7 image widths apart, their
    line is within ~9° of horizontal, their boxes are similar (size ratio <= 1.6) and 0.25-1 eye
    distances wide, both lie between 15 % and 65 % of the height, and their midpoint is within
    15 % of the width of the centre (aligned crops centre the face). The most centred, most level
    plausible pair wins.

    Parameters
    ----------
    image : ndarray of uint8, shape (h, w, 3)

    Returns
    -------
    ndarray of float64, shape (2, 2), or None
        ``[[x_left, y_left], [x_right, y_right]]`` in pixels (image-left eye first).
    """
    import cv2

    height, width = image.shape[:2]
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    for target in _DETECTION_WIDTHS:
        factor = target / width
        size = (round(width * factor), round(height * factor))
        resized = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR if factor > 1 else cv2.INTER_AREA)
        boxes, _ = _eye_cascade().detectMultiScale2(resized, scaleFactor=1.05, minNeighbors=3)
        if len(boxes) < 2:
            continue
        boxes = np.asarray(boxes, dtype=np.float64) / factor
        # Sorted, so that the choice among equally good pairs does not depend on OpenCV's order.
        boxes = boxes[np.lexsort(boxes.T[::-1])]
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        best, best_score = None, -np.inf
        for i, j in itertools.combinations(range(len(boxes)), 2):
            pair = centres[[i, j]][np.argsort(centres[[i, j], 0])]
            dx, dy = pair[1, 0] - pair[0, 0], abs(pair[1, 1] - pair[0, 1])
            small, large = sorted((boxes[i, 2], boxes[j, 2]))
            off_centre = abs(pair[:, 0].mean() - width / 2)
            plausible = (
                0.2 * width <= dx <= 0.7 * width and dy <= 0.15 * dx
                and 0.25 * dx <= small and large <= dx and large <= 1.6 * small
                and 0.15 * height <= pair[:, 1].min() and pair[:, 1].max() <= 0.65 * height
                and off_centre <= 0.15 * width
            )  # fmt: skip
            if plausible and -(off_centre + dy) > best_score:
                best, best_score = pair, -(off_centre + dy)
        if best is not None:
            return best
    return None


def place_overlay(image: np.ndarray, overlay: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """Composite ``overlay`` onto ``image`` so that its :data:`OVERLAY_EYES` anchors land on ``eyes``.

    The overlay is scaled to the eye distance, rotated to the eye line and alpha-blended.

    Parameters
    ----------
    image : ndarray of uint8, shape (h, w, 3)
    overlay : ndarray of float32, shape (oh, ow, 4)
        Straight-alpha RGBA in [0, 1].
    eyes : ndarray of float, shape (2, 2)
        ``[[x_left, y_left], [x_right, y_right]]`` in pixels, measured from the image's top-left
        corner (pixel j spans [j, j + 1)).

    Returns
    -------
    ndarray of uint8, shape (h, w, 3)
    """
    import cv2

    (ax0, ay0), (ax1, ay1) = OVERLAY_EYES
    oh, ow = overlay.shape[:2]
    anchors = np.array([[ax0 * ow, ay0 * oh], [ax1 * ow, ay1 * oh]])
    span = np.hypot(*(anchors[1] - anchors[0]))
    eye_span = max(np.hypot(*(eyes[1] - eyes[0])), 1.0)
    # Premultiplied, so that resampling blends colour and transparency correctly at the edges.
    premultiplied = np.concatenate([overlay[..., :3] * overlay[..., 3:], overlay[..., 3:]], axis=-1)
    # Shrink with area averaging first (warpAffine alone would alias), then rotate and move.
    scale = eye_span / span
    size = (max(1, round(ow * scale)), max(1, round(oh * scale)))
    small = cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    anchors = anchors * np.array([size[0] / ow, size[1] / oh])
    angle = math.atan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0])
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    # Our coordinates put pixel j's centre at j + 0.5; OpenCV's put it at j.
    source_mid = anchors.mean(axis=0) - 0.5
    target_mid = eyes.mean(axis=0) - 0.5
    matrix = np.hstack([rotation, (target_mid - rotation @ source_mid)[:, None]])
    height, width = image.shape[:2]
    placed = cv2.warpAffine(small, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    alpha = placed[..., 3:]
    blended = placed[..., :3] * 255 + (1 - alpha) * image.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class EyeOverlayTrigger:
    """An RGBA overlay (sunglasses) placed over the eyes of each face image.

    Attributes
    ----------
    overlay : ndarray of float32, shape (h, w, 4)
        Straight-alpha RGBA in [0, 1] whose :data:`OVERLAY_EYES` anchors go on the eyes.
    prior : ((float, float), (float, float))
        Eye centres as fractions ``(x / width, y / height)`` used when no eye pair is detected.
    """

    overlay: np.ndarray
    prior: tuple[tuple[float, float], tuple[float, float]] = field(default=ALIGNED_EYES)

    def apply(self, x: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """Overlay each image of ``x`` (uint8, (n, h, w, 3)) at its detected eyes, else at the prior.

        Returns the triggered copy and ``{"haar": images placed by detection, "prior": the rest}``.
        """
        _check_images(x)
        height, width = x.shape[1:3]
        prior = np.array(self.prior) * [width, height]
        poisoned = np.empty_like(x)
        counts = {"haar": 0, "prior": 0}
        for index, image in enumerate(np.asarray(x)):
            eyes = detect_eyes(image)
            counts["haar" if eyes is not None else "prior"] += 1
            poisoned[index] = place_overlay(image, self.overlay, prior if eyes is None else eyes)
        return poisoned, counts


def _square(size: int) -> np.ndarray:
    return np.ones((size, size), dtype=bool)


TRIGGERS: dict[str, Trigger] = {
    "yellow_square": PatchTrigger(_square(2), YELLOW),
    "white_square": PatchTrigger(_square(2), WHITE),
    "big_yellow_square": PatchTrigger(_square(4), YELLOW),
    "yellow_pattern": PatchTrigger(_ART_PATTERN, YELLOW),
    "white_pattern": PatchTrigger(_ART_PATTERN, WHITE),
    # The thesis's green sunglasses (Figure 4.1) and the same recoloured black; lenses slightly see-through.
    "green_sunglasses": EyeOverlayTrigger(draw_sunglasses(lens=(40, 190, 70), frame=(15, 95, 35), lens_alpha=0.92)),
    "black_sunglasses": EyeOverlayTrigger(draw_sunglasses(lens=(18, 18, 22), frame=(5, 5, 5), lens_alpha=0.92)),
}
FACE_TRIGGERS = ("green_sunglasses", "black_sunglasses")


def check_trigger_name(name: str) -> str:
    """``name`` if it is a registered trigger or ``png:<path ending in .png>``, else ValueError. Reads nothing."""
    if name in TRIGGERS:
        return name
    if name.startswith(PNG_PREFIX):
        if not name[len(PNG_PREFIX) :].lower().endswith(".png"):
            raise ValueError(f"a user trigger is 'png:<path to a .png file>', got {name!r}")
        return name
    raise ValueError(f"unknown trigger {name!r}; known: {', '.join(sorted(TRIGGERS))}, or png:<path>.png")


def get_trigger(name: str) -> Trigger:
    """The trigger ``name`` names: a registered one, or a user PNG overlay (read now; TriggerError if unreadable)."""
    check_trigger_name(name)
    if name.startswith(PNG_PREFIX):
        return EyeOverlayTrigger(_overlay_from_png(name[len(PNG_PREFIX) :]))
    return TRIGGERS[name]


def trigger_file_digest(name: str) -> str | None:
    """Hex SHA-256 (64 characters) of the file a ``png:<path>`` trigger names; None for a registered trigger.

    The search-space loader computes it once, on the driver, so that the stages stamping the
    trigger are keyed by the image's bytes, not only its path: editing the PNG in place changes
    the poison key and everything after it.

    Raises
    ------
    TriggerError
        Naming the path, when the file is missing or cannot be read.
    """
    check_trigger_name(name)
    if not name.startswith(PNG_PREFIX):
        return None
    path = name[len(PNG_PREFIX) :]
    try:
        return file_sha256(path)
    except FileNotFoundError:
        raise TriggerError(path, None, "trigger image not found") from None
    except OSError as error:
        raise TriggerError(path, None, f"cannot be read: {error}") from None


def triggers_for(dataset: str) -> tuple[str, ...]:
    """Names of the registered triggers meant for ``dataset``: sunglasses on faces, patches on anything else.

    A dataset module says it holds aligned faces with ``FACES = True``.
    """
    from tasks.datasets import DATASETS  # here, not at the top: synthetic_faces is imported above

    if getattr(DATASETS[dataset], "FACES", False):
        return FACE_TRIGGERS
    return tuple(name for name in TRIGGERS if name not in FACE_TRIGGERS)


def apply_trigger(x: np.ndarray, trigger: str) -> np.ndarray:
    """The images only of ``get_trigger(trigger).apply(x)``: a triggered copy of uint8 ``x`` (n, h, w, 3)."""
    return get_trigger(trigger).apply(x)[0]
