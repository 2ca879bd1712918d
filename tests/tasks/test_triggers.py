import numpy as np
import pytest

from tasks.triggers import TRIGGERS, apply_trigger


def test_every_gtsrb_trigger_is_registered():
    assert set(TRIGGERS) == {"yellow_square", "white_square", "big_yellow_square", "yellow_pattern", "white_pattern"}


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
