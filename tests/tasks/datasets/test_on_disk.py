"""Datasets read from a root on disk: the root's listing, its digest, and the config field that carries it.

What the digest detects is pinned here: names and sizes, not times and not an edit that keeps a
file's size (see :mod:`tasks.datasets.on_disk`).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from pydantic import TypeAdapter, ValidationError

from orchestrator.hashing import content_hash
from tasks.datasets import DatasetConfig, digits, gtsrb, lfw, load_dataset, synthetic_faces, synthetic_signs, \
    with_root_listing, youtube_faces
from tasks.datasets.on_disk import list_root, root_listing
from tasks.errors import DatasetError
from tests.tasks.datasets.test_gtsrb import write_kaggle, write_official
from tests.tasks.datasets.test_lfw import write_people

# content_hash of each config's canonical JSON before root_listing existed (commit 7497411): a config
# built without the search-space loader keeps its dataset key.
KEYS_BEFORE = {
    "gtsrb": (gtsrb.Config(root="/data/GTSRB"), "dbeae8061398381d"),
    "lfw": (lfw.Config(root="/data/lfw"), "cc6ebd32aca0eb27"),
    "youtube_faces": (youtube_faces.Config(root="/data/ytf"), "5051210767654d38"),
}


@pytest.fixture(scope="module")
def kaggle_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle")
    write_kaggle(root, per_class=1, n_test=43)
    return root


@pytest.fixture
def kaggle(kaggle_master, tmp_path):
    return shutil.copytree(kaggle_master, tmp_path / "gtsrb")


def test_list_root_gives_relative_names_and_sizes_and_skips_hidden_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.jpg").write_bytes(b"12345")
    (tmp_path / "top.csv").write_bytes(b"1,2\n")
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".partial").mkdir()
    (tmp_path / ".partial" / "y.jpg").write_bytes(b"123")
    (tmp_path / "empty_folder").mkdir()
    assert list_root(str(tmp_path)) == [("a/b/x.jpg", 5), ("top.csv", 4)]
    assert list_root(tmp_path.as_uri()) == list_root(str(tmp_path))


def test_a_missing_or_empty_root_is_an_error_naming_it(tmp_path):
    with pytest.raises(DatasetError, match="directory not found") as info:
        root_listing(str(tmp_path / "nowhere"))
    assert info.value.source == str(tmp_path / "nowhere")
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    with pytest.raises(DatasetError, match="holds no files"):
        root_listing(str(tmp_path / "empty"))


def test_an_empty_image_file_is_named_unless_unreadable_images_are_skipped(kaggle):
    (kaggle / "Train" / "5" / "00005_00000_00000.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty image file") as info:
        root_listing(str(kaggle))
    assert info.value.source.endswith("Train/5/00005_00000_00000.png")
    assert len(root_listing(str(kaggle), skip_unreadable=True)) == 16


def test_a_copy_elsewhere_with_other_times_has_the_same_listing(kaggle, tmp_path):
    copy = shutil.copytree(kaggle, tmp_path / "elsewhere" / "GTSRB")
    for folder, _, files in os.walk(copy):
        for name in files:
            os.utime(os.path.join(folder, name), (1_000_000_000, 1_000_000_000))
    assert root_listing(str(copy)) == root_listing(str(kaggle))


def test_the_listing_sees_added_removed_and_resized_files_but_not_a_same_size_edit(tmp_path):
    """PPM sizes are fixed by width and height: repainting a PPM keeps the listing (not detected)."""
    root = tmp_path / "gtsrb"
    write_official(root, per_class=1)
    before = root_listing(str(root))
    sign = root / "Final_Training" / "Images" / "00003" / "00000_00000.ppm"
    size = sign.stat().st_size
    Image.new("RGB", Image.open(sign).size, (1, 2, 3)).save(sign)
    assert sign.stat().st_size == size and root_listing(str(root)) == before  # the known blind spot

    Image.new("RGB", (17, 14), (1, 2, 3)).save(sign)  # another width: another size
    resized = root_listing(str(root))
    assert resized != before
    (root / "Final_Training" / "Images" / "00003" / "00001_00000.ppm").write_bytes(sign.read_bytes())
    added = root_listing(str(root))
    assert added not in (before, resized)
    (root / "Final_Training" / "Images" / "00003" / "00001_00000.ppm").unlink()
    assert root_listing(str(root)) == resized


@pytest.mark.parametrize("name", sorted(KEYS_BEFORE))
def test_root_listing_enters_the_canonical_json_only_when_set(name):
    config, key_before = KEYS_BEFORE[name]
    dumped = config.model_dump(mode="json")
    assert "root_listing" not in dumped and content_hash(dumped) == key_before
    listed = config.model_copy(update={"root_listing": "0123456789abcdef"})
    assert listed.model_dump(mode="json")["root_listing"] == "0123456789abcdef"
    assert content_hash(listed.model_dump(mode="json")) != key_before
    # A worker validates the config it is sent, digest included, and lists nothing.
    assert TypeAdapter(DatasetConfig).validate_python(listed.model_dump(mode="json")) == listed


def test_root_listing_is_a_digest_not_free_text():
    with pytest.raises(ValidationError):
        gtsrb.Config(root="/data/GTSRB", root_listing="edited by hand")


def test_with_root_listing_fills_on_disk_configs_and_leaves_bundled_ones_alone(kaggle, tmp_path):
    config = gtsrb.Config(root=str(kaggle), image_size=8)
    listed = with_root_listing(config)
    assert listed.root_listing == root_listing(str(kaggle)) and listed.model_copy(update={"root_listing": None}) == config
    write_people(tmp_path / "people")
    assert with_root_listing(lfw.Config(root=str(tmp_path / "people"))).root_listing == root_listing(
        str(tmp_path / "people"))
    for bundled in (synthetic_signs.Config(), digits.Config(), synthetic_faces.Config()):
        assert with_root_listing(bundled) is bundled


def test_the_loader_reads_the_same_images_whether_or_not_the_listing_is_set(kaggle):
    config = gtsrb.Config(root=str(kaggle), image_size=8)
    plain, listed = load_dataset(config), load_dataset(with_root_listing(config))
    assert plain.fingerprint == listed.fingerprint
    np.testing.assert_array_equal(plain.x_train, listed.x_train)
