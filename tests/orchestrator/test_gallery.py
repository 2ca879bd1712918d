"""The trigger gallery: one PNG with every trigger of a dataset, and the thin CLI over it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.gallery import dataset_config, render_gallery, sample_images
from tasks.datasets import load_dataset
from tasks.triggers import triggers_for
from tests.conftest import make_dataset


@pytest.fixture(scope="module")
def faces():
    return load_dataset(dataset_config("synthetic_faces").model_copy(update={"per_identity": 10}))


def test_face_gallery_shows_every_sunglasses_trigger(faces, tmp_path):
    gallery = render_gallery(faces, triggers_for("synthetic_faces"), tmp_path / "out" / "faces.png", n=3)
    assert gallery.triggers == ("green_sunglasses", "black_sunglasses")
    assert gallery.columns == ("green_sunglasses\ntrain = test", "black_sunglasses\ntrain = test")
    assert gallery.n_panels == 3 * (1 + len(gallery.columns))
    with Image.open(gallery.path) as image:
        assert image.format == "PNG" and image.size == gallery.size
    assert gallery.size[0] == 3 * 160, "a 1.6-inch column at 100 dpi for clean and for each trigger"
    for name in gallery.triggers:
        assert sum(gallery.placements[name].values()) == 3, "every shown image was placed once"
    assert len(set(faces.y_test[gallery.sample_index])) == 3, "samples come from different people"


def test_patch_gallery_has_a_column_per_trigger_and_no_placement(tmp_path):
    dataset = make_dataset(n_classes=5, per_class=10, size=32)
    gallery = render_gallery(dataset, triggers_for("digits"), tmp_path / "digits.png", n=2)
    assert len(gallery.triggers) == 5 and gallery.n_panels == 2 * 6
    assert gallery.placements == {}
    assert gallery.size[0] == 6 * 160


def test_every_attack_shows_its_modes_covers_and_a_magnified_faint_change(tmp_path):
    from orchestrator.gallery import default_attacks, parse_attacks

    dataset = make_dataset(n_classes=5, per_class=10, size=32)
    specs = parse_attacks(["{blend: {alpha: [0.05, 0.3]}}", "wanet", "sig", "label_consistent"])
    gallery = render_gallery(dataset, specs, tmp_path / "attacks.png", n=2)
    assert gallery.triggers == ("blend(alpha=0.05)", "blend(alpha=0.3)", "wanet", "sig", "label_consistent")
    columns = set(gallery.columns)
    assert {"blend(alpha=0.05)\ntrain = test", "wanet\ntrain = test", "wanet\ncover", "sig\ntrain", "sig\ntest",
            "label_consistent\ntest"} <= columns
    assert any(c.startswith("blend(alpha=0.05)\n|test - clean| x") for c in columns)  # faint: magnified
    assert not any(c.startswith("blend(alpha=0.3)\n|test") for c in columns)
    names = [spec.name for spec in default_attacks("digits")]
    assert {"yellow_square", "blend", "sig", "wanet", "adaptive_blend", "adaptive_patch", "label_consistent"} <= set(names)
    assert "green_sunglasses" not in names and "png" not in names


def test_samples_cover_classes_and_fill_up_when_there_are_few():
    dataset = make_dataset(n_classes=3, per_class=10)
    index = sample_images(dataset, 5, seed=0)
    assert len(index) == len(set(index.tolist())) == 5
    assert set(dataset.y_test[index]) == {0, 1, 2}
    np.testing.assert_array_equal(sample_images(dataset, 5, seed=0), index)


def test_dataset_config_needs_a_root_exactly_for_datasets_on_disk():
    assert dataset_config("digits").name == "digits"
    assert dataset_config("lfw", "/data/lfw").root == "/data/lfw"
    with pytest.raises(ValueError, match="give its folder with --root"):
        dataset_config("youtube_faces")
    with pytest.raises(ValueError, match="bundled"):
        dataset_config("synthetic_faces", "/data")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        dataset_config("mnist")


def test_cli_writes_the_gallery_and_reports_placements(tmp_path):
    out = tmp_path / "g.png"
    result = CliRunner().invoke(app, ["triggers", "--dataset", "digits", "--out", str(out), "--n", "2"])
    assert result.exit_code == 0, result.output
    from orchestrator.gallery import default_attacks

    assert f"wrote {out} ({len(default_attacks('digits'))} attacks in " in result.output
    with Image.open(out) as image:
        assert image.format == "PNG"


def test_cli_errors_exit_2(tmp_path):
    runner = CliRunner()
    missing_root = runner.invoke(app, ["triggers", "--dataset", "gtsrb", "--out", str(tmp_path / "g.png")])
    assert missing_root.exit_code == 2 and "--root" in missing_root.output
    absent = runner.invoke(app, ["triggers", "--dataset", "lfw", "--root", str(tmp_path / "no"), "--out", str(tmp_path / "g.png")])
    assert absent.exit_code == 2 and "directory not found" in absent.output
    bad_trigger = runner.invoke(
        app, ["triggers", "--dataset", "digits", "--trigger", "purple", "--out", str(tmp_path / "g.png")]
    )
    assert bad_trigger.exit_code == 2 and "unknown attack 'purple'" in " ".join(bad_trigger.output.replace("│", " ").split())
    assert not (tmp_path / "g.png").exists()
