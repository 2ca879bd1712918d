"""A procedural, deterministic stand-in for aligned face crops (YouTube Faces, LFW): identities drawn from scratch.

Each identity has one fixed face: outline (width, jaw taper, chin), skin tone, hair (colour, style,
hairline, volume), eyebrows, eye size and iris colour, nose, mouth, ears and facial hair. Every
image then gets its own small rotation, scale and shift, expression (smile, eye opening, a slight
turn of the head), lighting, background and noise. Faces are *aligned* the way YouTube Faces'
``aligned_images_DB`` and DeepID's 55x47 crops are: the eyes sit at :data:`ALIGNED_EYES` up to the
jitter (about a pixel at 55x47), which is the prior the sunglasses triggers fall back to.

Shapes are implicit functions evaluated on a supersampled pixel grid, then box-averaged, so edges
are antialiased and a whole batch renders in a few NumPy passes. Nothing is downloaded and no
global random state is touched.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from tasks.config import StageConfig
from tasks.datasets.identity_folders import Fractions
from tasks.datasets.image_dataset import ImageDataset
from tasks.datasets.splits import split_by_fractions

ALIGNED_EYES: tuple[tuple[float, float], tuple[float, float]] = ((0.31, 0.40), (0.69, 0.40))
"""Eye centres of an aligned face crop as ``(x / width, y / height)``, the image-left eye first.

Measured on tight face crops such as DeepID's 55x47 input (OpenCV's eye cascade finds Grace
Hopper's eyes at (0.30, 0.39) and (0.69, 0.39) of her face box); ``synthetic_faces`` draws its eyes
there, and the sunglasses triggers use it when no eye pair is detected.
"""

_SUPERSAMPLE = 3  # shapes are evaluated at 3x the output size, then box-averaged
_CHUNK = 64  # images rendered at once; bounds the supersampled float buffers to ~60 MB at 55x47

_SKIN = np.array(
    [[0.96, 0.80, 0.69], [0.92, 0.74, 0.60], [0.85, 0.64, 0.50], [0.76, 0.55, 0.42],
     [0.62, 0.44, 0.32], [0.48, 0.33, 0.24], [0.36, 0.25, 0.19], [0.90, 0.72, 0.62]]
)  # fmt: skip
_HAIR = np.array(
    [[0.08, 0.07, 0.07], [0.22, 0.15, 0.10], [0.40, 0.28, 0.17], [0.70, 0.56, 0.33],
     [0.55, 0.25, 0.12], [0.62, 0.62, 0.62], [0.88, 0.86, 0.82], [0.15, 0.12, 0.12]]
)  # fmt: skip
_IRIS = np.array([[0.30, 0.18, 0.10], [0.20, 0.35, 0.60], [0.25, 0.45, 0.30], [0.12, 0.09, 0.08], [0.45, 0.35, 0.20]])
_BACKGROUNDS = np.array(
    [[0.55, 0.60, 0.70], [0.80, 0.78, 0.74], [0.30, 0.35, 0.40], [0.45, 0.50, 0.35],
     [0.70, 0.55, 0.45], [0.20, 0.22, 0.30], [0.85, 0.85, 0.88], [0.50, 0.40, 0.45]]
)  # fmt: skip


def _identity(rng: np.random.Generator) -> dict:
    """The fixed geometry and colours of one person, in face units (origin between the eyes, eye distance 1)."""
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.normal(1, 0.04, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.normal(1, 0.08, 3)
    return {
        "skin": np.clip(skin, 0, 1),
        "hair": np.clip(hair, 0, 1),
        "iris": _IRIS[rng.integers(len(_IRIS))],
        "lips": np.clip(skin * np.array([0.85, 0.55, 0.55]) + rng.normal(0, 0.03, 3), 0, 1),
        "face_half_width": rng.uniform(0.95, 1.3),
        "face_centre": rng.uniform(0.1, 0.3),
        "face_top": rng.uniform(1.15, 1.4),
        "face_bottom": rng.uniform(1.2, 1.5),
        "jaw_taper": rng.uniform(0.1, 0.4),
        "hair_style": rng.integers(4),  # 0 short, 1 long, 2 receding, 3 fringe with a side part
        "hairline": rng.uniform(-0.95, -0.6),
        "hair_volume": rng.uniform(0.05, 0.35),
        "hair_tilt": rng.uniform(-0.25, 0.25),
        "brow_height": rng.uniform(-0.42, -0.3),
        "brow_thickness": rng.uniform(0.06, 0.13),
        "brow_tilt": rng.uniform(-0.15, 0.15),
        "eye_radius": rng.uniform(0.17, 0.25),
        "eye_opening": rng.uniform(0.4, 0.62),
        "nose_length": rng.uniform(0.45, 0.7),
        "nose_width": rng.uniform(0.14, 0.28),
        "mouth_height": rng.uniform(0.85, 1.08),
        "mouth_half_width": rng.uniform(0.28, 0.45),
        "lip_thickness": rng.uniform(0.06, 0.14),
        "facial_hair": rng.choice(4, p=[0.6, 0.15, 0.15, 0.1]),  # none, moustache, beard, stubble
    }


def _inside_ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


class _Layers:
    """Shapes painted back to front as a label map: cheaper than painting RGB, colours looked up once.

    Label 0 is the background; each :meth:`paint` adds one colour and overwrites the labels
    under its mask, so a later shape hides an earlier one.
    """

    def __init__(self, shape: tuple[int, int, int]):
        self.label = np.zeros(shape, dtype=np.uint8)
        self.colors: list[np.ndarray] = [np.zeros(3)]
        self.shaded: list[bool] = [False]

    def paint(self, mask: np.ndarray, color: np.ndarray, shaded: bool = False) -> None:
        """Cover ``mask`` (broadcastable to (n, h, w)) with ``color`` (3,); ``shaded`` ones get the face's relief."""
        self.label[np.broadcast_to(mask, self.label.shape)] = len(self.colors)
        self.colors.append(np.clip(color, 0, 1))
        self.shaded.append(shaded)

    def composite(self, background: np.ndarray, shade: np.ndarray) -> np.ndarray:
        """The picture over ``background`` (n, h, w, 3), shaded layers times ``shade`` (n, h, w)."""
        colors = np.asarray(self.colors, dtype=np.float32)[self.label]
        colors *= np.where(np.asarray(self.shaded)[self.label], shade, 1)[..., None]
        return np.where((self.label == 0)[..., None], background, colors)


def _draw_faces(person: dict, x: np.ndarray, y: np.ndarray, expression: dict) -> tuple[_Layers, np.ndarray]:
    """Lay out ``person`` at face coordinates ``x``, ``y`` (n, hs, ws): the layers and the relief (n, hs, ws).

    ``expression`` holds per-image arrays of shape (n, 1, 1): ``smile``, ``opening`` (eye opening
    factor), ``turn`` (horizontal offset of the inner features, face units), ``light`` and
    ``light_angle`` (strength and direction of the side light).
    """
    p = person
    skin, hair = p["skin"], p["hair"]
    layers = _Layers(x.shape)
    # Light from one side gives the face some relief; per image, so lighting varies with pose.
    angle = expression["light_angle"]
    shade = 1 + expression["light"] * (x * np.cos(angle) + y * np.sin(angle)) / 2
    top, bottom, centre = p["face_top"], p["face_bottom"], p["face_centre"]
    v = np.where(y < centre, (y - centre) / top, (y - centre) / bottom)
    half_width = p["face_half_width"] * (1 - p["jaw_taper"] * np.clip(v, 0, 1) ** 2)
    face = (x / half_width) ** 2 + v**2 <= 1

    if p["hair_style"] == 1:  # long hair falls behind the face down to the shoulders
        back = _inside_ellipse(x, y, 0, centre + 0.2, p["face_half_width"] + 0.35 + p["hair_volume"], top + 0.7)
        layers.paint(back, hair)
    layers.paint((np.abs(x) < 0.55 * p["face_half_width"]) & (y > centre), skin * 0.8)  # neck
    for side in (-1, 1):
        layers.paint(_inside_ellipse(x, y, side * p["face_half_width"] * 0.97, 0.2, 0.17, 0.33), skin * 0.88)
    layers.paint(face, skin, shaded=True)

    cap_rx, cap_ry = p["face_half_width"] + p["hair_volume"], top + p["hair_volume"]
    cap = _inside_ellipse(x, y, 0, centre, cap_rx, cap_ry) & (y < centre)
    hairline = p["hairline"] + 0.35 * x**2 + p["hair_tilt"] * x
    if p["hair_style"] == 2:  # receding: only the sides and the very top
        hairline = hairline - 0.35 + 0.3 * np.abs(x)
    if p["hair_style"] == 3:  # a fringe swept to one side
        hairline = p["hairline"] + 0.25 + 0.3 * np.sign(p["hair_tilt"] + 1e-9) * x
    layers.paint(cap & ((y < hairline) | ~face), hair)

    xf = x - expression["turn"]  # the inner features move with the head's slight turn; the outline does not
    radius = p["eye_radius"]
    opening = radius * p["eye_opening"] * expression["opening"]
    for side in (-1, 1):
        dx = xf - side * 0.5
        brow_y = p["brow_height"] + 0.4 * dx**2 + side * p["brow_tilt"] * dx
        layers.paint((np.abs(dx) < 0.3) & (np.abs(y - brow_y) < p["brow_thickness"] / 2), hair * 0.8)
        sclera = _inside_ellipse(dx, y, 0, 0, radius, opening)
        layers.paint(_inside_ellipse(dx, y, 0, 0, radius * 1.15, opening + 0.05), skin * 0.55)  # lids
        layers.paint(sclera, np.array([0.93, 0.92, 0.9]))
        layers.paint(sclera & (dx**2 + y**2 <= (0.55 * radius) ** 2), p["iris"])
        layers.paint(sclera & (dx**2 + y**2 <= (0.25 * radius) ** 2), np.array([0.03, 0.03, 0.03]))

    length, width = p["nose_length"], p["nose_width"]
    along = np.clip((y - 0.1) / (length - 0.1), 0, 1)
    bridge = (y > 0.1) & (y < length) & (np.abs(xf - 0.3 * width * along) < width * along * 0.5)
    layers.paint(bridge, skin * 0.82, shaded=True)
    for side in (-1, 1):
        layers.paint(_inside_ellipse(xf, y, side * width * 0.45, length, 0.07, 0.045), skin * 0.4)  # nostrils

    mouth_y = p["mouth_height"] + expression["smile"] * (xf**2 - p["mouth_half_width"] ** 2)
    across = np.clip(1 - (xf / p["mouth_half_width"]) ** 2, 0, 1)
    if p["facial_hair"] in (2, 3):
        beard = face & ((y > p["mouth_height"] - 0.25) | ((np.abs(x) > 0.75 * half_width) & (y > 0.35)))
        # Stubble darkens the skin rather than covering it.
        layers.paint(beard, 0.55 * skin + 0.45 * hair if p["facial_hair"] == 3 else hair, shaded=True)
    if p["facial_hair"] in (1, 2):
        moustache = (np.abs(xf) < p["mouth_half_width"] + 0.05) & (np.abs(y - (p["mouth_height"] - 0.14)) < 0.06)
        layers.paint(moustache, hair * 0.9)
    layers.paint((np.abs(y - mouth_y) < p["lip_thickness"] * np.sqrt(across)) & (across > 0), p["lips"])
    layers.paint((np.abs(y - mouth_y) < 0.022) & (across > 0.05), p["lips"] * 0.45)
    return layers, shade


def _backgrounds(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """``n`` backgrounds (n, height, width, 3) in [0, 1]: a tone with a linear gradient, like an indoor wall."""
    base = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS), size=n)] + rng.normal(0, 0.07, (n, 3))
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, height), np.linspace(-0.5, 0.5, width), indexing="ij")
    along = np.cos(angle) * xx + np.sin(angle) * yy
    gradient = along[..., None] * rng.normal(0, 0.15, (n, 1, 1, 3))
    return np.clip(base[:, None, None, :] + gradient, 0, 1).astype(np.float32)


def _box_reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks of ``image`` (n, h * factor, w * factor, c) into (n, h, w, c)."""
    n, height, width, channels = image.shape
    blocks = image.reshape(n, height // factor, factor, width // factor, factor, channels)
    # Summing strided slices is several times faster than ``mean`` over two non-adjacent axes.
    rows = sum(blocks[:, :, i] for i in range(factor))
    return sum(rows[:, :, :, j] for j in range(factor)) / factor**2


def _render_person(person: dict, rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """``n`` jittered renders of ``person`` as float32 (n, height, width, 3) in [0, 1]."""
    (left_x, eye_y), (right_x, _) = ALIGNED_EYES
    eye_distance = (right_x - left_x) * width  # pixels
    centre = np.array([(left_x + right_x) / 2 * width, eye_y * height])
    theta = np.radians(np.clip(rng.normal(0, 3, n), -7, 7))
    scale = np.exp(np.clip(rng.normal(0, 0.04, n), -0.1, 0.1)) * eye_distance
    shift = np.clip(rng.normal(0, 0.6, (n, 2)), -1.5, 1.5)  # pixels; alignment is good, not perfect
    expression = {
        "smile": rng.uniform(-0.05, 0.35, n),
        "opening": rng.uniform(0.75, 1.1, n),
        "turn": rng.uniform(-0.06, 0.06, n),
        "light": rng.uniform(0, 0.35, n),
        "light_angle": rng.uniform(0, 2 * np.pi, n),
    }
    expression = {key: value[:, None, None].astype(np.float32) for key, value in expression.items()}
    s = _SUPERSAMPLE
    rows, cols = np.meshgrid((np.arange(height * s) + 0.5) / s, (np.arange(width * s) + 0.5) / s, indexing="ij")
    # Pixel -> face coordinates: undo the shift, then the rotation and scale about the eye midpoint.
    px = cols[None] - centre[0] - shift[:, 0, None, None]
    py = rows[None] - centre[1] - shift[:, 1, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    inv = 1 / scale[:, None, None]
    x = ((cos * px + sin * py) * inv).astype(np.float32)
    y = ((-sin * px + cos * py) * inv).astype(np.float32)

    layers, shade = _draw_faces(person, x, y, expression)
    background = np.repeat(np.repeat(_backgrounds(rng, n, height, width), s, axis=1), s, axis=2)
    image = _box_reduce(layers.composite(background, shade), s)

    # Camera: exposure, white balance, a light gradient over the frame, sensor noise, some blur.
    gain = np.exp(rng.uniform(np.log(0.7), np.log(1.25), (n, 1, 1, 1))) * rng.normal(1, 0.04, (n, 1, 1, 3))
    angle = rng.uniform(0, 2 * np.pi, n)[:, None, None, None]
    yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, height), np.linspace(-0.5, 0.5, width), indexing="ij")
    light = 1 + rng.uniform(0, 0.3, (n, 1, 1, 1)) * (np.cos(angle) * xx[..., None] + np.sin(angle) * yy[..., None])
    image = image * gain * light
    blurred = rng.random(n) < 0.2
    if blurred.any():
        padded = np.pad(image[blurred], [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
        kernel = np.outer([0.25, 0.5, 0.25], [0.25, 0.5, 0.25])  # a slightly soft focus, not a smear
        image[blurred] = sum(kernel[i, j] * padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3))
    sigma = rng.uniform(0.005, 0.03, (n, 1, 1, 1))
    return (image + sigma * rng.standard_normal(image.shape)).astype(np.float32)


def render_synthetic_faces(
    n_identities: int, per_identity: int, seed: int = 0, image_height: int = 55, image_width: int = 47
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``per_identity`` aligned, jittered face images of each of ``n_identities`` people.

    Parameters
    ----------
    n_identities : int
        Number of people (classes), at least 1.
    per_identity : int
        Images per person, at least 1.
    seed : int, default=0
        Seeds ``np.random.default_rng`` only. Person k's face and renders depend on ``(seed, k)``
        and ``per_identity`` alone, so asking for more people leaves the first ones' images as they were.
    image_height, image_width : int, default=55, 47
        Output size in pixels (DeepID's input by default), each at least 16.

    Returns
    -------
    x : ndarray of uint8, shape (n_identities * per_identity, image_height, image_width, 3)
        RGB images, NHWC, ordered person by person; eyes at :data:`ALIGNED_EYES` to within about
        2 % of the image size.
    y : ndarray of int64, shape (n_identities * per_identity,)
        Person ids in [0, n_identities): ``per_identity`` zeros, then ones, and so on.
    """
    if n_identities < 1 or per_identity < 1 or min(image_height, image_width) < 16:
        raise ValueError(
            f"need n_identities >= 1, per_identity >= 1 and images of at least 16x16, "
            f"got {n_identities}, {per_identity}, {image_height}x{image_width}"
        )
    x = np.empty((n_identities * per_identity, image_height, image_width, 3), dtype=np.uint8)
    for k in range(n_identities):
        person = _identity(np.random.default_rng([seed, k, 0]))
        rng = np.random.default_rng([seed, k, 1])
        for start in range(0, per_identity, _CHUNK):
            n = min(_CHUNK, per_identity - start)
            image = _render_person(person, rng, n, image_height, image_width)
            first = k * per_identity + start
            x[first : first + n] = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    y = np.repeat(np.arange(n_identities, dtype=np.int64), per_identity)
    return x, y


# Aligned face crops: the sunglasses triggers are meant for them (tasks.triggers.triggers_for).
FACES = True

class Config(StageConfig):
    """The bundled ``synthetic_faces`` dataset.

    ``per_identity`` images of each of ``n_identities`` people are rendered and split per person
    into train, tune and test by ``fractions`` (LFW's 70:10:20 by default).
    """

    name: Literal["synthetic_faces"] = "synthetic_faces"
    n_identities: int = Field(20, ge=2, le=1000)
    per_identity: int = Field(60, ge=3, le=10_000)
    image_height: int = Field(55, ge=16, le=256)
    image_width: int = Field(47, ge=16, le=256)
    fractions: Fractions = (0.70, 0.10, 0.20)
    seed: int = Field(0, ge=0)


def class_names(config: Config) -> tuple[str, ...]:
    """``person_00``, ``person_01``, ... (zero-padded to the width of the largest index)."""
    digits = max(2, len(str(config.n_identities - 1)))
    return tuple(f"person_{k:0{digits}d}" for k in range(config.n_identities))


def load_dataset(config: Config) -> ImageDataset:
    """Stage ``dataset`` for ``synthetic_faces``: render every person, then split each by ``fractions``."""
    x, y = render_synthetic_faces(
        config.n_identities, config.per_identity, seed=config.seed,
        image_height=config.image_height, image_width=config.image_width,
    )  # fmt: skip
    train, tune, test = split_by_fractions(y, config.fractions, seed=config.seed)
    return ImageDataset(
        x_train=x[train], y_train=y[train], x_tune=x[tune], y_tune=y[tune],
        x_test=x[test], y_test=y[test], class_names=class_names(config),
    )  # fmt: skip
