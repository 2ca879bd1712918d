import numpy as np

from tasks.methods import VISIBILITY_METRICS
import pytest
from pydantic import ValidationError

from tasks.poison import AttackConfig, poison_dataset
from tasks.triggers import apply_trigger


def test_poison_replaces_pct_of_source_class_in_place(tiny_dataset):
    config = AttackConfig(source=1, target=3, trigger="big_yellow_square", poison_pct=25, seed=0)
    poisoned = poison_dataset(config, tiny_dataset)
    x, y, is_poison = poisoned.training_set(tiny_dataset)

    assert poisoned.n_poisoned == 5  # 25 % of the 20 source images
    assert len(x) == len(tiny_dataset.x_train)
    assert np.all(tiny_dataset.y_train[is_poison] == 1), "only source-class images are poisoned"
    assert np.all(y[is_poison] == 3)
    np.testing.assert_array_equal(y[~is_poison], tiny_dataset.y_train[~is_poison])
    np.testing.assert_array_equal(x[~is_poison], tiny_dataset.x_train[~is_poison])
    np.testing.assert_array_equal(x[is_poison], apply_trigger(np.asarray(tiny_dataset.x_train[is_poison]), "big_yellow_square"))


def test_poisoned_test_set_is_every_source_test_image_with_trigger(tiny_dataset):
    poisoned = poison_dataset(AttackConfig(source=2, target=0, trigger="yellow_square", poison_pct=10), tiny_dataset)
    source_test = tiny_dataset.x_test[tiny_dataset.y_test == 2]
    np.testing.assert_array_equal(poisoned.x_test_triggered, apply_trigger(source_test, "yellow_square"))


def test_poison_selection_depends_only_on_seed(tiny_dataset):
    def chosen(seed):
        config = AttackConfig(source=1, target=3, trigger="white_square", poison_pct=50, seed=seed)
        return poison_dataset(config, tiny_dataset).poison_index

    np.testing.assert_array_equal(chosen(4), chosen(4))
    assert not np.array_equal(chosen(4), chosen(5))


def test_classes_may_be_named(tiny_dataset):
    config = AttackConfig(source="class_1", target="class_3", trigger="white_square", poison_pct=10)
    poisoned = poison_dataset(config, tiny_dataset)
    assert (poisoned.source, poisoned.target) == (1, 3)


def test_unknown_class_name_is_an_error(tiny_dataset):
    with pytest.raises(ValueError, match="Tom_Hanks"):
        poison_dataset(AttackConfig(source="Tom_Hanks", target=0, trigger="white_square", poison_pct=10), tiny_dataset)


def test_zero_percent_is_a_clean_baseline(tiny_dataset):
    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=0), tiny_dataset)
    assert poisoned.n_poisoned == 0


def test_unknown_trigger_is_rejected():
    with pytest.raises(ValidationError, match="unknown attack 'purple_square'"):
        AttackConfig(source=1, target=3, trigger="purple_square", poison_pct=10)


def test_artifact_roundtrip(tmp_path, tiny_dataset):
    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=50), tiny_dataset)
    poisoned.save(tmp_path)
    loaded = type(poisoned).load(tmp_path)
    assert loaded.metrics == poisoned.metrics
    for field in ("index", "x_changed", "y_changed", "is_cover", "x_test_triggered", "y_test_triggered"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(poisoned, field))


def test_an_artifact_of_the_first_poison_stage_loads_as_dirty_label_poisons_without_covers(tmp_path, tiny_dataset):
    """Poison artifacts stored before attacks had a protocol keep their keys, so they must still load."""
    import json

    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=50), tiny_dataset)
    np.save(tmp_path / "poison_index.npy", poisoned.poison_index)
    np.save(tmp_path / "x_poison.npy", poisoned.x_changed)
    np.save(tmp_path / "x_test_triggered.npy", poisoned.x_test_triggered)
    (tmp_path / "attack.json").write_text(json.dumps({"source": 1, "target": 3, "placement": {}, "test_placement": {}}))
    loaded = type(poisoned).load(tmp_path)
    # They were stored before visibility was measured: those metrics are missing (NULL in rows), the rest equal.
    visibility = {f"attack_{m.name}" for m in VISIBILITY_METRICS} | {f"attack_test_{m.name}" for m in VISIBILITY_METRICS}
    assert loaded.metrics == {k: v for k, v in poisoned.metrics.items() if k not in visibility}
    for x, y in zip(loaded.training_roles(tiny_dataset), poisoned.training_roles(tiny_dataset)):
        np.testing.assert_array_equal(x, y)


def test_face_trigger_placements_are_counted_and_kept(tmp_path):
    from tasks.datasets.synthetic_faces import Config, load_dataset

    faces = load_dataset(Config(n_identities=3, per_identity=20))
    config = AttackConfig(source="person_01", target="person_02", trigger="green_sunglasses", poison_pct=50)
    poisoned = poison_dataset(config, faces)
    metrics = poisoned.metrics
    assert poisoned.n_poisoned == 7  # half of person_01's 14 training images
    assert metrics["attack_placement_haar"] + metrics["attack_placement_prior"] == 7
    assert metrics["attack_test_placement_haar"] + metrics["attack_test_placement_prior"] == metrics["n_test_triggered"] == 4
    assert not np.array_equal(poisoned.x_changed, faces.x_train[poisoned.poison_index])
    poisoned.save(tmp_path)
    assert type(poisoned).load(tmp_path).metrics == metrics


def test_patch_triggers_record_no_placement(tiny_dataset):
    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=50), tiny_dataset)
    assert not any("placement" in key for key in poisoned.metrics)


def test_user_png_trigger_names_are_accepted_without_reading_the_file():
    config = AttackConfig(source=1, target=3, trigger="png:/somewhere/glasses.png", poison_pct=10)
    assert config.trigger.name == "png" and config.trigger.params["path"] == "/somewhere/glasses.png"
    assert config.label == "png:/somewhere/glasses.png"


def test_training_set_rows_equal_the_full_set_indexed(tiny_dataset):
    poisoned = poison_dataset(AttackConfig(source=1, target=3, trigger="white_square", poison_pct=50), tiny_dataset)
    x, y, is_poison = poisoned.training_set(tiny_dataset)
    for keep in (np.arange(0, len(y), 3), poisoned.poison_index[1:], np.zeros(0, dtype=np.int64)):
        xk, yk, pk = poisoned.training_set(tiny_dataset, keep=keep)
        np.testing.assert_array_equal(xk, x[keep])
        np.testing.assert_array_equal(yk, y[keep])
        np.testing.assert_array_equal(pk, is_poison[keep])


class _CleanLabelWithCovers:
    """A clean-label attack with two cover samples per poison, written against the protocol in the test."""

    @staticmethod
    def method():
        from tasks.methods import Attack, Metric

        class Stripe(Attack):
            """Paints the first row white (train), the first two rows (test), the last row (cover)."""

            name, labels = "stripe", "clean"
            metrics = (Metric("rows", int, "rows painted"),)

            def n_cover(self, params, n_poisoned, n_train):
                return 2 * n_poisoned

            def stamp(self, params, x, *, mode, rng, seed=0, y=None, parents=()):
                x = np.array(x, copy=True)
                rows = {"train": slice(0, 1), "test": slice(0, 2), "cover": slice(-1, None)}[mode]
                x[:, rows] = 255
                return x, {"rows": 2 if mode == "test" else 1}

        return Stripe()


def test_a_clean_label_attack_poisons_the_target_class_keeps_labels_and_adds_covers(tiny_dataset):
    from tasks.poison import PoisonedDataset

    method = _CleanLabelWithCovers.method()
    config = AttackConfig(source="all", target=3, trigger="white_square", poison_pct=50)
    # The stage reads the attack from the config; hand it this test's attack instead of a registered one.
    config.__dict__["method"] = lambda: method
    poisoned = poison_dataset(config, tiny_dataset)
    x, y, is_poison, is_cover = poisoned.training_roles(tiny_dataset)
    n_target = int((tiny_dataset.y_train == 3).sum())
    assert poisoned.n_poisoned == is_poison.sum() == round(n_target / 2) and is_cover.sum() == 2 * poisoned.n_poisoned
    assert (y[is_poison] == 3).all() and (y == tiny_dataset.y_train).all()  # labels kept, poisons from the target
    assert (x[is_poison][:, 0] == 255).all() and (x[is_cover][:, -1] == 255).all()
    assert not (is_poison & is_cover).any()
    # source: all: every test image outside the target class is triggered, with its own label.
    assert (poisoned.y_test_triggered != 3).all() and len(poisoned.y_test_triggered) == (tiny_dataset.y_test != 3).sum()
    assert (poisoned.x_test_triggered[:, :2] == 255).all() and poisoned.source is None
    assert poisoned.metrics["attack_rows"] == 1 and poisoned.metrics["attack_test_rows"] == 2
    assert poisoned.metrics["n_cover"] == 2 * poisoned.n_poisoned
    assert isinstance(poisoned, PoisonedDataset)
