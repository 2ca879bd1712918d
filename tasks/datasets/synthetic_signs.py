"""A procedural, deterministic stand-in for GTSRB: 43 traffic-sign classes drawn from scratch.

Each class has one fixed design (shape, border and fill colours, glyph) modelled on its GTSRB
counterpart, drawn once per call at high resolution. Every image then gets its own geometry,
background, lighting, blur and noise, and is downsampled with antialiasing, so that the speed
limits stay confusable among themselves the way they are in GTSRB while the other classes differ.
Nothing is downloaded and no global random state is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field, field_validator, model_serializer, model_validator

from tasks.config import StageConfig
from tasks.datasets.image_dataset import ImageDataset, known_distinct_classes
from tasks.datasets.splits import split_stratified

SIGN_NAMES: tuple[str, ...] = (
    "speed_limit_20", "speed_limit_30", "speed_limit_50", "speed_limit_60", "speed_limit_70",
    "speed_limit_80", "end_speed_limit_80", "speed_limit_100", "speed_limit_120", "no_passing",
    "no_passing_vehicles_over_3_5_tons", "right_of_way_at_next_intersection", "priority_road",
    "yield", "stop", "no_vehicles", "vehicles_over_3_5_tons_prohibited", "no_entry",
    "general_caution", "dangerous_curve_left", "dangerous_curve_right", "double_curve",
    "bumpy_road", "slippery_road", "road_narrows_on_the_right", "road_work", "traffic_signals",
    "pedestrians", "children_crossing", "bicycles_crossing", "beware_of_ice_snow",
    "wild_animals_crossing", "end_of_all_speed_and_passing_limits", "turn_right_ahead",
    "turn_left_ahead", "ahead_only", "go_straight_or_right", "go_straight_or_left", "keep_right",
    "keep_left", "roundabout_mandatory", "end_of_no_passing",
    "end_no_passing_vehicles_over_3_5_tons",
)  # fmt: skip

RED, WHITE, BLACK = (200, 30, 40), (236, 236, 230), (25, 25, 28)
BLUE, GREY, GOLD = (25, 75, 170), (125, 125, 125), (240, 175, 20)
# Natural tones (sky, foliage, asphalt, brick, concrete, dusk) that backgrounds vary around.
_BACKGROUNDS = np.array(
    [[0.55, 0.70, 0.90], [0.30, 0.45, 0.25], [0.40, 0.40, 0.42], [0.55, 0.35, 0.25],
     [0.75, 0.73, 0.68], [0.20, 0.22, 0.30], [0.60, 0.62, 0.50], [0.15, 0.30, 0.15]]
)  # fmt: skip
_SUPERSAMPLE = 3  # warp at 3x the output size, then box-average: smooth, antialiased edges
_SPEEDS = {0: "20", 1: "30", 2: "50", 3: "60", 4: "70", 5: "80", 7: "100", 8: "120"}


class _Pen:
    """Draws in sign units, where the sign spans [-1, 1]; ``sub`` zooms into a glyph box."""

    def __init__(self, draw, centre, radius, mirror=False, dx=0.0, dy=0.0, scale=1.0):
        self.draw, self.centre, self.radius, self.mirror = draw, centre, radius, mirror
        self.dx, self.dy, self.scale = dx, dy, scale

    def sub(self, dx, dy, scale, mirror=False):
        return _Pen(self.draw, self.centre, self.radius, mirror, dx, dy, scale)

    def p(self, x, y):
        x = -x if self.mirror else x
        return (self.centre + (self.dx + x * self.scale) * self.radius,
                self.centre + (self.dy + y * self.scale) * self.radius)  # fmt: skip

    def line(self, pts, width, fill):
        w = max(1, round(width * self.scale * self.radius))
        self.draw.line([self.p(*q) for q in pts], fill=fill, width=w, joint="curve")

    def poly(self, pts, fill):
        self.draw.polygon([self.p(*q) for q in pts], fill=fill)

    def rect(self, x0, y0, x1, y1, fill):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def disk(self, x, y, r, fill=None, outline=None, width=0.0):
        (x0, y0), (x1, y1) = self.p(x - r, y - r), self.p(x + r, y + r)
        w = max(1, round(width * self.scale * self.radius)) if outline else 0
        self.draw.ellipse((min(x0, x1), y0, max(x0, x1), y1), fill=fill, outline=outline, width=w)

    def text(self, s, height, fill):
        size = max(4, round(height * self.scale * self.radius * 1.35))
        font = ImageFont.load_default(size=size)
        # Sign lettering is bold; a stroke thickens the default font so digits survive downsampling.
        self.draw.text(self.p(0, 0), s, fill, font, "mm", stroke_width=round(size * 0.06), stroke_fill=fill)

    def arrow(self, pts, width, fill, head=0.55):
        """A polyline ending in a triangular head that points along its last segment."""
        end = np.array(pts[-1], dtype=float)
        d = end - pts[-2]
        d /= np.hypot(*d)
        n = np.array([-d[1], d[0]]) * head * 0.55
        self.line(pts, width, fill)
        self.poly([tuple(end + d * head * 0.8), tuple(end + n), tuple(end - n)], fill)


def _arc(cx, cy, r, a0, a1, n=10):
    a = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + r * np.cos(a), cy + r * np.sin(a)))


def _car(p, x, y, s, c):  # seen from behind, as on the no-passing signs
    p.poly([(x - 0.32 * s, y - 0.55 * s), (x + 0.32 * s, y - 0.55 * s),
            (x + 0.48 * s, y - 0.1 * s), (x - 0.48 * s, y - 0.1 * s)], c)  # fmt: skip
    p.rect(x - 0.5 * s, y - 0.12 * s, x + 0.5 * s, y + 0.4 * s, c)
    for side in (-1, 1):
        p.rect(x + side * 0.45 * s, y + 0.4 * s, x + side * 0.22 * s, y + 0.62 * s, c)


def _truck(p, x, y, s, c):
    p.rect(x - 0.5 * s, y - 0.75 * s, x + 0.5 * s, y + 0.45 * s, c)
    for side in (-1, 1):
        p.rect(x + side * 0.45 * s, y + 0.45 * s, x + side * 0.2 * s, y + 0.7 * s, c)


def _person(p, x, y, s, c):
    p.disk(x + 0.05 * s, y - 0.8 * s, 0.17 * s, fill=c)
    p.line([(x, y - 0.55 * s), (x - 0.05 * s, y + 0.2 * s)], 0.22 * s, c)
    p.line([(x - 0.4 * s, y + 0.95 * s), (x - 0.05 * s, y + 0.2 * s), (x + 0.3 * s, y + 0.95 * s)], 0.17 * s, c)
    p.line([(x - 0.35 * s, y + 0.05 * s), (x, y - 0.4 * s), (x + 0.3 * s, y)], 0.14 * s, c)


def _diagonals(p, count):  # "end of restriction" stripes, upper right to lower left
    for o in np.linspace(-0.3, 0.3, count) if count > 1 else [0.0]:
        p.line([(0.62 + o, -0.62 + o), (-0.62 + o, 0.62 + o)], 0.18 if count == 1 else 0.045, BLACK)


def _glyph(label, pen):
    """Draw the content of sign ``label``; ``pen`` is centred on the sign."""
    t = pen.sub(0, 0.3, 0.42, mirror=label == 20)  # glyph box in a warning triangle's white area
    c = pen.sub(0, 0, 0.6, mirror=label in (34, 37, 39))  # glyph box in a circular sign
    if label in _SPEEDS:  # three digits must be smaller to fit, as on real signs
        c.text(_SPEEDS[label], 1.05 if label < 7 else 0.8, BLACK)
    elif label == 6:
        c.text("80", 1.05, GREY)
        _diagonals(pen, 1)
    elif label in (9, 41):
        _car(c, -0.42, 0, 0.7, BLACK if label == 9 else GREY)
        _car(c, 0.42, 0, 0.7, RED if label == 9 else GREY)
    elif label in (10, 42):
        _truck(c, -0.42, 0, 0.75, RED if label == 10 else GREY)
        _car(c, 0.45, 0.05, 0.65, BLACK if label == 10 else GREY)
    elif label == 11:
        t.line([(0, -1.05), (0, 1.0)], 0.34, BLACK)
        t.line([(-0.65, 0.05), (0.65, 0.05)], 0.2, BLACK)
    elif label == 12:
        pen.poly([(0, -0.68), (0.68, 0), (0, 0.68), (-0.68, 0)], GOLD)
    elif label == 14:
        pen.text("STOP", 0.42, WHITE)
    elif label == 16:
        c.rect(-0.85, -0.45, 0.3, 0.3, BLACK)
        c.rect(0.35, -0.2, 0.85, 0.3, BLACK)
        for x in (-0.6, -0.25, 0.6):
            c.disk(x, 0.42, 0.17, fill=BLACK)
    elif label == 17:
        pen.rect(-0.68, -0.17, 0.68, 0.17, WHITE)
    elif label == 18:
        t.poly([(-0.16, -1.0), (0.16, -1.0), (0.07, 0.4), (-0.07, 0.4)], BLACK)
        t.disk(0, 0.78, 0.16, fill=BLACK)
    elif label in (19, 20):
        t.arrow([(0.35, 1.0), (0.35, 0.3)] + _arc(-0.45, 0.3, 0.8, 0, -65), 0.22, BLACK)
    elif label == 21:
        t.arrow([(-0.3, 1.0)] + _arc(0.3, 0.6, 0.6, 180, 250) + _arc(0.3, -0.65, 0.6, 110, 180), 0.2, BLACK)
    elif label == 22:
        xs = np.linspace(-1, 1, 21)
        t.poly([(x, 0.85 - 0.55 * abs(np.sin(np.pi * x))) for x in xs] + [(1, 1), (-1, 1)], BLACK)
    elif label == 23:
        _car(t, 0, -0.55, 0.8, BLACK)
        for side in (-1, 1):
            t.line([(side * (0.25 + 0.15 * np.sin(4 * y)), y) for y in np.linspace(0, 1, 9)], 0.1, BLACK)
    elif label == 24:
        t.line([(-0.45, 1.0), (-0.45, -1.0)], 0.18, BLACK)
        t.line([(0.45, 1.0), (0.45, 0.2), (0.1, -0.3), (0.1, -1.0)], 0.18, BLACK)
    elif label == 25:
        _person(t, -0.1, 0, 1, BLACK)
        t.line([(0.05, -0.3), (0.55, 0.35), (0.6, 0.8)], 0.1, BLACK)
        t.poly([(0.35, 1.0), (1.0, 1.0), (0.75, 0.55)], BLACK)
    elif label == 26:  # amber, not trigger yellow, in the middle light
        t.rect(-0.38, -1.05, 0.38, 1.05, BLACK)
        for y, col in ((-0.65, RED), (0, (225, 125, 20)), (0.65, (20, 150, 60))):
            t.disk(0, y, 0.26, fill=col)
    elif label == 27:
        _person(t, 0, 0, 1, BLACK)
    elif label == 28:  # an adult and a child
        _person(t, -0.4, 0.05, 0.95, BLACK)
        _person(t, 0.45, 0.35, 0.65, BLACK)
    elif label == 29:
        for x in (-0.52, 0.52):
            t.disk(x, 0.45, 0.38, outline=BLACK, width=0.1)
        t.line([(-0.52, 0.45), (-0.1, -0.15), (0.52, 0.45), (0.3, -0.15), (-0.1, -0.15)], 0.1, BLACK)
        t.line([(0.3, -0.15), (0.22, -0.45), (0.42, -0.45)], 0.1, BLACK)
    elif label == 30:
        for a in np.radians([90, 30, 150]):
            d = np.array([np.cos(a), np.sin(a)])
            t.line([tuple(-0.9 * d), tuple(0.9 * d)], 0.1, BLACK)
            for s in (-0.5, 0.5):
                for b in np.radians([-40, 40]):
                    twig = 0.6 * s * np.array([np.cos(a + b), np.sin(a + b)])
                    t.line([tuple(s * d), tuple(s * d + twig)], 0.08, BLACK)
    elif label == 31:
        t.line([(-0.55, 0.1), (0.3, -0.1)], 0.38, BLACK)
        for leg in ([(-0.5, 0.15), (-0.85, 0.9)], [(-0.4, 0.15), (-0.1, 0.9)], [(0.2, -0.05), (0.45, 0.9)]):
            t.line(leg, 0.12, BLACK)
        t.line([(0.3, -0.1), (0.55, -0.6), (0.85, -0.5)], 0.18, BLACK)
        t.line([(0.3, -1.0), (0.45, -0.65), (0.55, -0.65), (0.65, -1.0)], 0.07, BLACK)
    elif label in (33, 34):
        c.arrow([(-0.35, 0.95), (-0.35, 0.1)] + _arc(0.1, 0.1, 0.45, 180, 270) + [(0.45, -0.35)], 0.24, WHITE)
    elif label == 35:
        c.arrow([(0, 0.95), (0, -0.55)], 0.26, WHITE)
    elif label in (36, 37):
        c.arrow([(-0.2, 0.95), (-0.2, -0.55)], 0.22, WHITE, head=0.5)
        c.arrow([(-0.2, 0.45), (0.15, 0.0), (0.45, 0.0)], 0.2, WHITE, head=0.5)
    elif label in (38, 39):
        c.arrow([(-0.55, -0.55), (0.35, 0.35)], 0.26, WHITE)
    elif label == 40:
        for a in (0, 120, 240):
            c.arrow(_arc(0, 0, 0.62, a + 200, a + 290, 6), 0.2, WHITE, head=0.45)
    if label in (32, 41, 42):
        _diagonals(pen, 5)


def _template(label, size):
    """Sign ``label`` drawn on a transparent ``size``-pixel square, premultiplied RGBa, radius 0.48 * size."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    pen = _Pen(ImageDraw.Draw(image), size / 2, 0.48 * size)
    h = np.sqrt(3) / 2
    triangle = [(0, -h), (1, h), (-1, h)]
    inner = [(0.66 * x, 0.289 + 0.66 * (y - 0.289)) for x, y in triangle]  # shrunk about the centroid
    octagon = [(np.cos(a), np.sin(a)) for a in np.radians(np.arange(22.5, 360, 45))]
    if label in (6, 32, 41, 42):
        pen.disk(0, 0, 1, fill=WHITE, outline=GREY, width=0.05)
    elif label in range(33, 41):
        pen.disk(0, 0, 1, fill=BLUE, outline=WHITE, width=0.05)
    elif label == 12:
        pen.poly([(0, -1), (1, 0), (0, 1), (-1, 0)], BLACK)
        pen.poly([(0, -0.95), (0.95, 0), (0, 0.95), (-0.95, 0)], WHITE)
    elif label == 13:
        pen.poly([(x, -y) for x, y in triangle], RED)
        pen.poly([(x, -y) for x, y in inner], WHITE)
    elif label == 14:
        pen.poly(octagon, WHITE)
        pen.poly([(0.93 * x, 0.93 * y) for x, y in octagon], RED)
    elif label == 17:
        pen.disk(0, 0, 1, fill=RED)
    elif label in (11, *range(18, 32)):
        pen.poly(triangle, RED)
        pen.poly(inner, WHITE)
    else:
        pen.disk(0, 0, 1, fill=RED)
        pen.disk(0, 0, 0.78, fill=WHITE)
    _glyph(label, pen)
    # Premultiplied, so that warping and box-averaging blend edges with transparency correctly.
    return image.convert("RGBa")


def _warp(template, rng, size):
    """Place ``template`` on a transparent square: scale, rotation, skew, shift. Returns (size, size, 4) floats."""
    big = size * _SUPERSAMPLE
    k = rng.uniform(0.65, 0.9) * big / (0.96 * template.width)  # sign diameter over image side
    theta = np.radians(rng.uniform(-10, 10))
    aspect, shear = np.exp(rng.normal(0, 0.04)), rng.normal(0, 0.04)  # mild off-axis viewing
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    inv = np.linalg.inv(k * rot @ np.array([[aspect, shear], [0, 1 / aspect]]))
    offset = template.width / 2 - inv @ (big / 2 + rng.uniform(-0.06, 0.06, 2) * big)
    data = (inv[0, 0], inv[0, 1], offset[0], inv[1, 0], inv[1, 1], offset[1])
    warped = template.transform((big, big), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR)
    return np.asarray(warped.reduce(_SUPERSAMPLE), dtype=np.float32) / 255


def _backgrounds(rng, n, size, grid=5):
    """``n`` backgrounds (n, size, size, 3) in [0, 1]: solid, gradient or blotchy, around natural tones."""
    base = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS), size=n)] + rng.normal(0, 0.08, (n, 3))
    kind = rng.integers(3, size=n)[:, None, None, None]
    ramp, angle = np.linspace(-0.5, 0.5, grid), rng.uniform(0, 2 * np.pi, n)[:, None, None]
    along = np.cos(angle) * ramp[None, None, :] + np.sin(angle) * ramp[None, :, None]
    gradient = along[..., None] * rng.normal(0, 0.35, (n, 1, 1, 3))
    blotches = rng.normal(0, 0.1, (n, grid, grid, 3))
    cells = base[:, None, None, :] + np.where(kind == 1, gradient, np.where(kind == 2, blotches, 0.0))
    # Bilinear upsampling as a matrix keeps gradients linear and the batch two matrix products.
    up = np.maximum(0, 1 - np.abs(np.linspace(0, grid - 1, size)[:, None] - np.arange(grid)))
    smooth = (up @ cells.transpose(0, 3, 1, 2) @ up.T).transpose(0, 2, 3, 1).astype(np.float32)
    return smooth + 0.03 * rng.standard_normal((n, size, size, 3), dtype=np.float32)


def _blur(x, weight):
    """Separable 3-tap blur [w, 1 - 2w, w] of each image; a ``weight`` (n,) of 0 leaves it as is."""
    w = weight[:, None, None, None].astype(np.float32)
    pad = np.pad(x, [(0, 0), (1, 1), (0, 0), (0, 0)], mode="edge")
    x = (1 - 2 * w) * x + w * (pad[:, :-2] + pad[:, 2:])
    pad = np.pad(x, [(0, 0), (0, 0), (1, 1), (0, 0)], mode="edge")
    return (1 - 2 * w) * x + w * (pad[:, :, :-2] + pad[:, :, 2:])


def render_synthetic_signs(
    n_per_class: int | Sequence[int], seed: int = 0, image_size: int = 32, labels: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render jittered images of GTSRB-like sign classes, class after class.

    Parameters
    ----------
    n_per_class : int or sequence of int
        Images per class, at least 1: one count for every class, or one count per entry of ``labels``.
    seed : int, default=0
        Seed of the only random generator used (``np.random.default_rng``); the same arguments
        always give the same bytes, and all 43 classes at one count give the bytes they always gave.
    image_size : int, default=32
        Side of the square images in pixels.
    labels : sequence of int, optional
        Which of the 43 sign designs to draw, in this order; all of them by default.

    Returns
    -------
    x : ndarray of uint8, shape (sum of the counts, image_size, image_size, 3)
    y : ndarray of int64, shape (sum of the counts,)
        Positions in ``labels`` (class ids in [0, 43) indexing ``SIGN_NAMES`` by default): the first
        class's count of zeros, then ones, and so on.
    """
    labels = list(range(len(SIGN_NAMES))) if labels is None else list(labels)
    if not labels or not all(isinstance(label, (int, np.integer)) and 0 <= label < len(SIGN_NAMES) for label in labels):
        raise ValueError(f"labels must be sign ids in [0, {len(SIGN_NAMES)}), at least one, got {labels}")
    counts = [n_per_class] * len(labels) if np.isscalar(n_per_class) else list(n_per_class)
    if len(counts) != len(labels) or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in counts) or image_size < 8:
        raise ValueError(
            f"need one integer count >= 1 per class and image_size >= 8, got counts {counts} for {len(labels)} "
            f"classes and image_size {image_size}"
        )
    rng = np.random.default_rng(seed)
    size, starts = image_size, np.concatenate([[0], np.cumsum(counts)])
    x = np.empty((starts[-1], size, size, 3), dtype=np.uint8)
    for position, (label, n) in enumerate(zip(labels, counts)):
        template = _template(label, round(size * _SUPERSAMPLE * 0.95))
        sign = np.stack([_warp(template, rng, size) for _ in range(n)])
        rgb, alpha = sign[..., :3], sign[..., 3:]  # premultiplied: transparent pixels are black
        fade = rng.uniform(0, 0.2, (n, 1, 1, 1)).astype(np.float32)  # sun-bleached, dirty signs
        rgb = (rgb + fade * (rgb.mean(axis=-1, keepdims=True) - rgb)) * rng.normal(1, 0.06, (n, 1, 1, 3))
        image = rgb + (1 - alpha) * _backgrounds(rng, n, size)
        # Dull, dim shots are common in GTSRB; a log-uniform gain skews towards them.
        contrast = rng.uniform(0.8, 1.1, (n, 1, 1, 1))
        gain = np.exp(rng.uniform(np.log(0.65), np.log(1.2), (n, 1, 1, 1))) * rng.normal(1, 0.05, (n, 1, 1, 3))
        image = (((image - 0.5) * contrast + 0.5) * gain).astype(np.float32)
        image = _blur(image, np.where(rng.random(n) < 0.2, rng.uniform(0.08, 0.22, n), 0.0))
        sigma = rng.uniform(0.005, 0.025, (n, 1, 1, 1)).astype(np.float32)
        image += sigma * rng.standard_normal(image.shape, dtype=np.float32)
        x[starts[position] : starts[position + 1]] = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    y = np.repeat(np.arange(len(labels), dtype=np.int64), counts)
    return x, y


class Config(StageConfig):
    """The bundled ``synthetic_signs`` dataset.

    ``per_class`` images of each class are rendered for training, of which ``tune_fraction``
    (stratified) becomes the clean tuning set, as the thesis held out 10 % of GTSRB's training set;
    ``test_per_class`` more, from an independent seed, form the test set.

    ``classes`` keeps only the named signs (in that order, so class ``i`` is ``classes[i]``) and
    ``class_sizes`` renders a different number of training images (before the tune split) for the
    named classes: together they give a small dataset whose source class is as large as GTSRB's,
    so that a poison percentage poisons as many images as it did in the thesis.
    """

    name: Literal["synthetic_signs"] = "synthetic_signs"
    per_class: int = Field(120, ge=2, le=10_000)
    test_per_class: int = Field(40, ge=1, le=10_000)
    tune_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    image_size: int = Field(32, ge=16, le=256)
    seed: int = Field(0, ge=0)
    classes: tuple[str, ...] | None = Field(None, min_length=2)
    class_sizes: dict[str, Annotated[int, Field(ge=2, le=100_000)]] = Field(default_factory=dict)

    @field_validator("classes")
    @classmethod
    def _known_distinct_classes(cls, classes):
        return known_distinct_classes(classes, SIGN_NAMES, "sign class")

    @model_validator(mode="after")
    def _sized_classes_are_kept(self):
        kept = self.classes or SIGN_NAMES
        for name in self.class_sizes:
            if name not in kept:
                where = "in classes" if self.classes else "a sign class"
                raise ValueError(f"class_sizes names {name!r}, which is not {where}")
        return self

    @model_serializer(mode="wrap")
    def _omit_unused_options(self, handler):
        # Left out when unused, so that every config written before these options existed keeps its
        # canonical JSON, hence its artifact keys and its cache.
        dumped = handler(self)
        if self.classes is None:
            dumped.pop("classes", None)
        if not self.class_sizes:
            dumped.pop("class_sizes", None)
        return dumped


def class_names(config: Config) -> tuple[str, ...]:
    """The sign names of ``config.classes``, or all 43 GTSRB class names; index i names class i."""
    return config.classes or SIGN_NAMES


def _training_counts(config: Config) -> list[int]:
    return [config.class_sizes.get(name, config.per_class) for name in class_names(config)]


def load_dataset(config: Config) -> ImageDataset:
    """Stage ``dataset`` for ``synthetic_signs``: render, then split train into train and tune."""
    names = class_names(config)
    labels = [SIGN_NAMES.index(name) for name in names]
    train_seed, test_seed = np.random.SeedSequence(config.seed).generate_state(2)
    x, y = render_synthetic_signs(
        _training_counts(config), seed=int(train_seed), image_size=config.image_size, labels=labels
    )
    x_test, y_test = render_synthetic_signs(
        config.test_per_class, seed=int(test_seed), image_size=config.image_size, labels=labels
    )
    kept, tune = split_stratified(y, config.tune_fraction, seed=config.seed)
    return ImageDataset(
        x_train=x[kept], y_train=y[kept], x_tune=x[tune], y_tune=y[tune],
        x_test=x_test, y_test=y_test, class_names=names,
    )  # fmt: skip
