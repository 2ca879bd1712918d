from pathlib import Path

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image

from tasks.datasets.synthetic_faces import ALIGNED_EYES, render_synthetic_faces
from tasks.errors import TriggerError
from tasks.triggers import (
    OVERLAY_EYES,
    TRIGGERS,
    EyeOverlayTrigger,
    apply_trigger,
    check_trigger_name,
    detect_eyes,
    draw_sunglasses,
    get_trigger,
    place_overlay,
    triggers_for,
)

GTSRB_TRIGGERS = {"yellow_square", "white_square", "big_yellow_square", "yellow_pattern", "white_pattern"}
FACE_TRIGGERS = {"green_sunglasses", "black_sunglasses"}


def test_every_thesis_trigger_is_registered_for_its_datasets():
    assert set(TRIGGERS) == GTSRB_TRIGGERS | FACE_TRIGGERS
    for dataset in ("gtsrb", "synthetic_signs", "digits"):
        assert set(triggers_for(dataset)) == GTSRB_TRIGGERS
    for dataset in ("youtube_faces", "lfw", "synthetic_faces"):
        assert set(triggers_for(dataset)) == FACE_TRIGGERS


@pytest.mark.parametrize("name", sorted(GTSRB_TRIGGERS))
def test_patches_report_no_placement(name):
    poisoned, placement = TRIGGERS[name].apply(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert placement == {}
    np.testing.assert_array_equal(poisoned, apply_trigger(np.zeros((2, 32, 32, 3), dtype=np.uint8), name))


@pytest.mark.parametrize(
    "name, size, color",
    [("yellow_square", 2, (255, 255, 0)), ("white_square", 2, (255, 255, 255)), ("big_yellow_square", 4, (255, 255, 0))],
)
def test_squares_are_painted_at_the_centre(name, size, color):
    x = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    poisoned = apply_trigger(x, name)
    changed = np.any(poisoned != 0, axis=-1)
    rows, cols = np.nonzero(changed[0])
    assert changed.sum() == 3 * size * size
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16 - size // 2, 15 + size // 2, 16 - size // 2, 15 + size // 2)
    assert tuple(poisoned[0, rows[0], cols[0]]) == color
    assert not x.any(), "the input must not be modified"


def test_patterns_are_arts_four_pixel_checkerboard():
    from art.attacks.poisoning.perturbations import add_pattern_bd

    x = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    ours = np.any(apply_trigger(x, "white_pattern")[0] != 0, axis=-1)
    art = add_pattern_bd(np.zeros((1, 32, 32), dtype=np.float32), distance=2, pixel_value=1)[0] > 0
    assert ours.sum() == art.sum() == 4
    # Same shape, moved from ART's corner to the centre of the sign.
    ours_box = ours[np.ix_(np.any(ours, 1), np.any(ours, 0))]
    art_box = art[np.ix_(np.any(art, 1), np.any(art, 0))]
    np.testing.assert_array_equal(ours_box, art_box)
    rows, cols = np.nonzero(ours)
    assert 13 <= rows.min() and rows.max() <= 18 and 13 <= cols.min() and cols.max() <= 18


def test_trigger_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        apply_trigger(np.zeros((1, 8, 8, 3), dtype=np.float32), "yellow_square")


# --- face triggers -------------------------------------------------------------------------------

# Grace Hopper's portrait ships with matplotlib: a real face with known eye positions. Her eyes in
# the 222x222 face box below, as fractions of it, measured by hand on the full image.
HOPPER_FACE_BOX = (155, 105, 377, 327)
HOPPER_EYES = np.array([[0.302, 0.392], [0.671, 0.374]])


def hopper_face(width: int, height: int) -> np.ndarray:
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as image:
        face = image.convert("RGB").crop(HOPPER_FACE_BOX).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(face)


def uniform_overlay(color, alpha, width=40, height=16) -> np.ndarray:
    overlay = np.zeros((height, width, 4), dtype=np.float32)
    overlay[..., :3] = np.asarray(color, dtype=np.float32) / 255
    overlay[..., 3] = alpha
    return overlay


def test_sunglasses_are_two_see_through_lenses_in_an_opaque_frame():
    overlay = draw_sunglasses(lens=(40, 190, 70), frame=(15, 95, 35), lens_alpha=0.92, width=200)
    assert overlay.shape == (80, 200, 4) and overlay.dtype == np.float32
    alpha = overlay[..., 3]
    assert alpha.min() == 0 and alpha.max() == 1
    for ax, ay in OVERLAY_EYES:  # lens centres, where the eyes go
        row, col = int(ay * 80), int(ax * 200)
        assert alpha[row, col] == pytest.approx(0.92, abs=0.01)
        np.testing.assert_allclose(overlay[row, col, :3] * 255, (40, 190, 70), atol=1)
    assert alpha[0, 0] == 0 and alpha[-1, 100] == 0, "outside the glasses stays transparent"
    edge = alpha[40, : int(0.25 * 200)]
    assert ((edge > 0.05) & (edge < 0.95)).any(), "edges are antialiased (partial alpha)"


def test_prior_placement_when_no_eyes_are_found():
    x = np.full((3, 55, 47, 3), 128, dtype=np.uint8)  # a blank image: no eyes to detect
    trigger = EyeOverlayTrigger(uniform_overlay((255, 0, 0), 1.0))
    poisoned, placement = trigger.apply(x)
    assert placement == {"haar": 0, "prior": 3}
    assert not (x != 128).any(), "the input is not modified"
    changed = np.any(poisoned[0] != 128, axis=-1)
    rows, cols = np.nonzero(changed)
    (lx, ly), (rx, _) = np.array(ALIGNED_EYES) * [47, 55]
    eye_distance = rx - lx
    # The overlay spans twice the eye distance, centred between the prior's eyes.
    assert cols.min() == pytest.approx((lx + rx) / 2 - eye_distance, abs=1)
    assert cols.max() + 1 == pytest.approx((lx + rx) / 2 + eye_distance, abs=1)
    assert (rows.min() + rows.max() + 1) / 2 == pytest.approx(ly, abs=1)


def test_alpha_compositing_blends_overlay_and_image():
    x = np.full((1, 55, 47, 3), 100, dtype=np.uint8)
    poisoned, _ = EyeOverlayTrigger(uniform_overlay((200, 0, 40), 0.25)).apply(x)
    (lx, ly), _ = np.array(ALIGNED_EYES) * [47, 55]
    inside = poisoned[0, int(ly), int(lx)]
    np.testing.assert_allclose(inside, [0.25 * 200 + 0.75 * 100, 0.75 * 100, 0.25 * 40 + 0.75 * 100], atol=1)
    np.testing.assert_array_equal(poisoned[0, 0, 0], [100, 100, 100])


@pytest.mark.parametrize("width, height", [(47, 55), (94, 110), (128, 150)])
def test_haar_cascade_finds_a_real_faces_eyes(width, height):
    eyes = detect_eyes(hopper_face(width, height))
    assert eyes is not None
    np.testing.assert_allclose(eyes / [width, height], HOPPER_EYES, atol=0.04)


def test_sunglasses_land_on_detected_eyes():
    face = hopper_face(94, 110)
    poisoned, placement = get_trigger("black_sunglasses").apply(face[None])
    assert placement == {"haar": 1, "prior": 0}
    dark = np.all(poisoned[0] < 40, axis=-1) & ~np.all(face < 40, axis=-1)
    for (ex, ey) in HOPPER_EYES * [94, 110]:
        # Each eye is covered by a lens: the pixels around it turned dark.
        lens = dark[int(ey) - 3 : int(ey) + 4, int(ex) - 3 : int(ex) + 4]
        assert lens.mean() > 0.8, (ex, ey, lens.mean())


def test_overlay_follows_a_tilted_eye_line():
    image = np.full((110, 110, 3), 255, dtype=np.uint8)
    overlay = uniform_overlay((0, 0, 0), 0.0)
    overlay[6:10, 8:12, 3] = 1.0  # a dot on the left anchor (0.25, 0.5) of a 40x16 overlay
    overlay[6:10, 28:32, 3] = 1.0  # and one on the right anchor (0.75, 0.5)
    eyes = np.array([[35.0, 40.0], [75.0, 60.0]])  # 26.6 degrees down to the right
    placed = np.all(place_overlay(image, overlay, eyes) < 128, axis=-1)
    rows, cols = np.nonzero(placed)
    left, right = cols < 55, cols >= 55
    np.testing.assert_allclose([cols[left].mean() + 0.5, rows[left].mean() + 0.5], eyes[0], atol=1)
    np.testing.assert_allclose([cols[right].mean() + 0.5, rows[right].mean() + 0.5], eyes[1], atol=1)


def test_synthetic_faces_eyes_are_detected_near_the_prior():
    x, _ = render_synthetic_faces(4, 3, seed=0)
    poisoned, placement = get_trigger("green_sunglasses").apply(x)
    assert placement["haar"] + placement["prior"] == len(x)
    assert placement["haar"] >= 10, placement
    for image in x:
        eyes = detect_eyes(image)
        if eyes is not None:
            np.testing.assert_allclose(eyes / [47, 55], ALIGNED_EYES, atol=0.08)
    assert (poisoned != x).any(axis=(1, 2, 3)).all()


def test_user_png_is_placed_like_the_sunglasses(tmp_path: Path):
    overlay = uniform_overlay((10, 200, 250), 1.0)
    overlay[:, :, 3] = 0.5
    path = tmp_path / "glasses.png"
    Image.fromarray(np.rint(overlay * 255).astype(np.uint8), "RGBA").save(path)
    x = np.full((2, 55, 47, 3), 90, dtype=np.uint8)
    ours, placement = get_trigger(f"png:{path}").apply(x)
    expected, _ = EyeOverlayTrigger(np.rint(overlay * 255) / 255).apply(x)
    assert placement == {"haar": 0, "prior": 2}
    np.testing.assert_array_equal(ours, expected)


def test_user_png_errors_name_the_file(tmp_path: Path):
    with pytest.raises(TriggerError, match="not found") as missing:
        get_trigger(f"png:{tmp_path / 'nope.png'}")
    assert missing.value.source == str(tmp_path / "nope.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(TriggerError, match="not a readable image"):
        get_trigger(f"png:{broken}")
    with pytest.raises(ValueError, match="png:<path to a .png file>"):
        check_trigger_name("png:glasses.jpg")
    with pytest.raises(ValueError, match="unknown trigger 'purple_glasses'"):
        check_trigger_name("purple_glasses")
