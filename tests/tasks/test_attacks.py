"""Each attack of issue 18, in process: determinism, modes, labels and counts, and a planted case per formula."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.attacks.adaptive_patch import patch_layers
from tasks.attacks.blend import piece_masks
from tasks.attacks.label_consistent import corner_trigger, pgd
from tasks.attacks.patterns import cartoon_pattern, noise_pattern
from tasks.attacks.sig import sine_rows
from tasks.attacks.visibility import visibility
from tasks.attacks.wanet import bicubic_matrix, grid_sample, warping_field
from tasks.poison import AttackConfig, poison_dataset
from tasks.registry import registry
from tests.conftest import make_dataset

NEW_ATTACKS = ("blend", "adaptive_blend", "adaptive_patch", "sig", "wanet")  # label_consistent: below, it trains a proxy


def stamp(name: str, x: np.ndarray, mode: str = "train", seed: int = 0, **params):
    method = registry().attacks[name]
    y = np.zeros(len(x), dtype=np.int64)
    return method.stamp(method.Params(**params), x, mode=mode, rng=np.random.default_rng(seed), seed=seed, y=y)[0]


def images(n: int = 6, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_an_attack_is_deterministic_by_seed_and_keeps_shape_and_dtype(name):
    x = images()
    for mode in ("train", "test", "cover"):
        first, again = stamp(name, x, mode), stamp(name, x, mode)
        assert first.dtype == np.uint8 and first.shape == x.shape
        np.testing.assert_array_equal(first, again)
    assert not np.array_equal(stamp(name, x), x)


def test_the_modes_differ_where_the_attack_says_they_do():
    x = images()
    assert not np.array_equal(stamp("blend", x, "train"), stamp("blend", x, "test", test_alpha=0.5))
    np.testing.assert_array_equal(stamp("blend", x, "train"), stamp("blend", x, "test"))  # test_alpha defaults to alpha
    assert not np.array_equal(stamp("sig", x, "train"), stamp("sig", x, "test"))  # delta 20 against 40
    assert not np.array_equal(stamp("wanet", x, "train"), stamp("wanet", x, "cover"))  # covers: extra noise
    np.testing.assert_array_equal(stamp("wanet", x, "train"), stamp("wanet", x, "test"))  # one field
    assert not np.array_equal(stamp("wanet", x, seed=0), stamp("wanet", x, seed=1))  # the field follows the seed


def test_a_blend_of_a_constant_image_is_the_weighted_mean_of_image_and_pattern():
    x = np.full((2, 8, 8, 3), 100, dtype=np.uint8)
    pattern = noise_pattern(8, 8, seed=0)
    expected = np.round(0.75 * 100 + 0.25 * pattern.astype(float)).astype(np.uint8)
    out = stamp("blend", x, alpha=0.25, pattern="noise")
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(stamp("blend", x, alpha=0.0), x)
    np.testing.assert_array_equal(stamp("blend", x, alpha=1.0, pattern="cartoon")[1], cartoon_pattern(8, 8))


def test_sig_adds_the_row_profile_to_every_row_and_channel():
    x = np.full((1, 4, 32, 3), 128, dtype=np.uint8)
    out = stamp("sig", x, delta=20, frequency=6).astype(float)
    profile = 20 * np.sin(2 * np.pi * np.arange(32) * 6 / 32)
    assert np.abs(profile).max() > 19  # the planted profile is not degenerate
    np.testing.assert_array_equal(out[0, 2, :, 1], np.round(128 + profile))
    assert (out[0] == out[0, :1]).all()  # every row alike
    np.testing.assert_allclose(sine_rows(32, 20, 6), profile, atol=1e-4)
    bright = np.full((1, 4, 32, 3), 250, dtype=np.uint8)
    assert stamp("sig", bright, "test").max() == 255  # clipped, not wrapped


def test_wanet_at_s_zero_is_the_identity_and_its_field_is_normalised_and_clamped():
    x = images(3, 16)
    np.testing.assert_array_equal(stamp("wanet", x, s=0.0), x)
    identity = warping_field(16, 16, k=4, s=0.0, grid_rescale=1, seed=0)
    np.testing.assert_allclose(identity[0, :, 0], np.linspace(-1, 1, 16))  # x runs along the width
    np.testing.assert_allclose(identity[:, 0, 1], np.linspace(-1, 1, 16))
    field = warping_field(16, 16, k=4, s=8.0, grid_rescale=1, seed=0)
    assert np.abs(field).max() <= 1 and not np.allclose(field, identity)
    # Bicubic with aligned corners interpolates: the k x k samples are kept at the grid's corners.
    matrix = bicubic_matrix(4, 16)
    np.testing.assert_allclose(matrix.sum(axis=1), 1)
    np.testing.assert_allclose(matrix[[0, -1]], np.eye(4)[[0, -1]])
    # A shift by one pixel to the right, written as a grid, moves every column one to the left.
    shifted = identity.copy()
    shifted[..., 0] = np.clip(shifted[..., 0] + 2 / 15, -1, 1)
    np.testing.assert_array_equal(grid_sample(x, shifted)[:, :, :-1], x[:, :, 1:])


def test_adaptive_blend_covers_and_poisons_carry_part_of_the_pattern_test_inputs_all():
    x = np.zeros((8, 16, 16, 3), dtype=np.uint8)
    pattern = noise_pattern(16, 16, seed=0)
    params = dict(pattern="noise", pieces=16, mask_rate=0.5, alpha=1.0, test_alpha=1.0)
    for mode in ("train", "cover"):
        out = stamp("adaptive_blend", x, mode, **params)
        carried = (out == pattern).all(axis=-1).reshape(8, 4, 4, 4, 4).all(axis=(2, 4))  # per 4x4 piece
        assert (carried.sum(axis=(1, 2)) == 8).all()  # half of the 16 pieces on every sample
        assert len({c.tobytes() for c in carried}) > 1  # a different half per sample
    np.testing.assert_array_equal(stamp("adaptive_blend", x, "test", **params)[3], pattern)
    masks = piece_masks(5, 10, 10, 4, 1, np.random.default_rng(0))
    assert masks.shape == (5, 10, 10, 1) and (masks.reshape(5, -1).mean(axis=1) == 0.75).all()


def test_adaptive_patch_training_samples_carry_a_subset_of_the_patches_test_inputs_all():
    x = np.zeros((10, 32, 32, 3), dtype=np.uint8)
    colors, where = patch_layers(32, 32, patches=4, size=0.15)
    assert not (where.sum(axis=0) > 1).any()  # patches do not overlap
    for mode in ("train", "cover"):
        out = stamp("adaptive_patch", x, mode, alpha=1.0)
        present = np.array([[(out[i][where[p, ..., 0]] == colors[p][where[p, ..., 0]]).all() for p in range(4)]
                            for i in range(10)])
        assert (present.sum(axis=1) == 2).all()
    test = stamp("adaptive_patch", x, "test")
    np.testing.assert_array_equal(test[0], colors.sum(axis=0))


def test_label_consistent_stamps_four_corners_and_pgd_stays_within_eps_and_raises_the_loss():
    import keras

    signs = corner_trigger(12, 12)
    assert (signs[1:4, 1:4] != 0).all() and (signs[-4:-1, -4:-1] != 0).all() and signs[5:7, 5:7].sum() == 0
    x = np.full((1, 12, 12, 3), 128, dtype=np.uint8)
    out = stamp_with_proxy(x, None, "test", amplitude=255)
    assert out[0, 1, 1].tolist() == [255] * 3 and out[0, 1, 2].tolist() == [0] * 3 and out[0, 6, 6].tolist() == [128] * 3

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(4, activation="softmax")])
    data = make_dataset(n_classes=4, per_class=8, size=12)
    hard = pgd(model, data.x_train, data.y_train, eps=16, steps=5)
    assert np.abs(hard - data.x_train).max() <= 16 + 1e-3 and hard.min() >= 0 and hard.max() <= 255
    loss = keras.losses.SparseCategoricalCrossentropy()
    assert float(loss(data.y_train, model(hard))) > float(loss(data.y_train, model(data.x_train.astype("float32"))))


def stamp_with_proxy(x, model, mode, **params):
    from tasks.train import TrainedModel

    method = registry().attacks["label_consistent"]
    proxy = TrainedModel(model=model, keep=np.arange(0), metrics={})
    return method.stamp(method.Params(**params), x, mode=mode, rng=np.random.default_rng(0), seed=0,
                        y=np.zeros(len(x), dtype=np.int64), parents=(proxy,))[0]


@pytest.mark.parametrize(("trigger", "source", "pct", "base", "labels"), [
    ("blend", 1, 50, "source", "dirty"),
    ("blend", "all", 10, "all", "dirty"),
    ("sig", "all", 50, "target", "clean"),
    ("wanet", "all", 10, "all", "dirty"),
    ({"adaptive_patch": {"cover_pct": 5}}, "all", 5, "all", "dirty"),
])
def test_counts_labels_and_what_poison_pct_is_a_percent_of(trigger, source, pct, base, labels):
    from tasks.poison import plan_poisoning

    data = make_dataset(n_classes=4, per_class=20)
    config = AttackConfig(source=source, target=3, trigger=trigger, poison_pct=pct)
    poisoned = poison_dataset(config, data)
    x, y, is_poison, is_cover = poisoned.training_roles(data)
    n_base = {"source": (data.y_train == 1).sum(), "all": len(data.y_train), "target": (data.y_train == 3).sum()}[base]
    assert poisoned.n_poisoned == is_poison.sum() == round(pct / 100 * n_base)
    assert plan_poisoning(config.method(), config.params(), pct, None if source == "all" else source, 3, data.y_train).base == base
    original = data.y_train
    assert (y[is_poison] == 3).all()
    if labels == "clean":
        assert (original[is_poison] == 3).all() and (y == original).all()
    else:
        assert (original[is_poison] != 3).all()
    assert (y[is_cover] == original[is_cover]).all() and (original[is_cover] != 3).all() and not (is_poison & is_cover).any()
    assert len(x) == len(data.y_train)  # replaced in place
    expected_test = (data.y_test != 3) if source == "all" else (data.y_test == source)
    assert len(poisoned.y_test_triggered) == expected_test.sum()
    if config.trigger.name == "wanet":
        assert is_cover.sum() == 2 * poisoned.n_poisoned
    if config.trigger.name == "adaptive_patch":
        assert is_cover.sum() == round(0.05 * len(data.y_train))


def test_visibility_of_an_unchanged_image_is_infinite_psnr_and_ssim_one():
    x = images(4, 16)
    same = visibility(x, x)
    assert same["psnr_min"] == float("inf") and same["ssim_min"] == pytest.approx(1) and same["linf_max"] == 0
    changed = x.copy()
    changed[0, 0, 0, 0] = 255 - changed[0, 0, 0, 0] if changed[0, 0, 0, 0] < 128 else 0
    seen = visibility(x, changed)
    assert seen["linf_max"] == abs(int(changed[0, 0, 0, 0]) - int(x[0, 0, 0, 0])) and seen["psnr_mean"] == float("inf")
    assert seen["psnr_min"] < 100 and seen["ssim_min"] < 1
    nothing = visibility(x[:0], x[:0])
    assert all(np.isnan(value) for value in nothing.values())


def test_the_poison_stage_records_visibility_train_and_test_apart():
    data = make_dataset(n_classes=4, per_class=20, size=16)
    config = AttackConfig(source="all", target=3, trigger={"sig": {"delta": 10, "test_delta": 40}}, poison_pct=50)
    poisoned = poison_dataset(config, data)
    metrics = poisoned.metrics
    assert metrics["attack_linf_max"] <= 10.5 and metrics["attack_test_linf_max"] > 20
    assert metrics["attack_psnr_min"] > metrics["attack_test_psnr_min"]
