"""A file's SHA-256 and a folder listing's digest: what the content identity of user files is made of."""

from __future__ import annotations

import hashlib

import pytest

from tasks.file_identity import file_sha256, listing_digest


def test_file_sha256_is_the_sha256_of_the_bytes_across_read_blocks(tmp_path):
    path = tmp_path / "weights.h5"
    data = bytes(range(256)) * (5 * 4096 + 17)  # about 5 MiB: several 1 MiB blocks and a partial one
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_file_sha256_of_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "absent.h5")


def test_listing_digest_depends_on_names_and_sizes_not_order():
    listing = [("Train/0/a.png", 120), ("Train.csv", 3000)]
    digest = listing_digest(listing)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert listing_digest(reversed(listing)) == digest
    assert listing_digest([("Train/0/a.png", 121), ("Train.csv", 3000)]) != digest
    assert listing_digest([("Train/0/b.png", 120), ("Train.csv", 3000)]) != digest
    assert listing_digest(listing[:1]) != digest


# --- png: triggers --------------------------------------------------------------------------------

def test_a_png_trigger_is_identified_by_its_bytes_and_a_registered_one_by_its_name(tmp_path):
    from PIL import Image

    from tasks.errors import TriggerError
    from tasks.triggers import trigger_file_digest

    path = tmp_path / "glasses.png"
    Image.new("RGBA", (40, 16), (0, 200, 0, 255)).save(path)
    digest = trigger_file_digest(f"png:{path}")
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert trigger_file_digest("green_sunglasses") is None and trigger_file_digest("yellow_square") is None
    Image.new("RGBA", (40, 16), (0, 0, 200, 255)).save(path)  # edited in place, same name
    assert trigger_file_digest(f"png:{path}") not in (None, digest)
    with pytest.raises(TriggerError, match="trigger image not found") as info:
        trigger_file_digest(f"png:{tmp_path / 'absent.png'}")
    assert info.value.source == str(tmp_path / "absent.png")


# --- weights files --------------------------------------------------------------------------------

# content_hash of TrainConfig canonical JSON before weights_sha256 existed (commit 7497411).
TRAIN_KEYS_BEFORE = [
    ({"model": "gtsrb_cnn"}, "0ce93e3f24522681"),
    ({"model": "vgg16_face", "weights": "/w/vgg_face.h5"}, "fc5a700021820ba6"),
]


@pytest.mark.parametrize("fields, key_before", TRAIN_KEYS_BEFORE)
def test_weights_sha256_enters_the_train_config_json_only_when_set(fields, key_before):
    from orchestrator.hashing import content_hash
    from tasks.train import TrainConfig

    config = TrainConfig(**fields)
    assert "weights_sha256" not in config.model_dump(mode="json")
    assert content_hash(config.model_dump(mode="json")) == key_before
    if config.weights is not None:
        hashed = TrainConfig(**fields, weights_sha256="a" * 64)
        assert hashed.model_dump(mode="json")["weights_sha256"] == "a" * 64
        assert TrainConfig.model_validate(hashed.model_dump(mode="json")) == hashed


def test_weights_sha256_needs_a_weights_file_and_is_a_sha256():
    from pydantic import ValidationError

    from tasks.train import TrainConfig

    with pytest.raises(ValidationError, match="digest of train.weights"):
        TrainConfig(model="vgg16_face", random_init=True, weights_sha256="a" * 64)
    with pytest.raises(ValidationError):
        TrainConfig(model="vgg16_face", weights="/w.h5", weights_sha256="not a digest")


def test_a_worker_refuses_a_weights_file_that_changed_after_the_space_was_loaded(tmp_path):
    """The driver's digest keys the artifact: training on other bytes would store them under its key."""
    from tasks.errors import ModelError
    from tasks.train import TrainConfig, check_weights_unchanged

    path = tmp_path / "vgg_face.h5"
    path.write_bytes(b"weights as loaded")
    config = TrainConfig(model="vgg16_face", weights=str(path), weights_sha256=file_sha256(path))
    check_weights_unchanged(config)
    check_weights_unchanged(TrainConfig(model="vgg16_face", weights=str(path)))  # no digest: nothing to compare
    path.write_bytes(b"weights edited later")
    with pytest.raises(ModelError, match="changed since the search space was loaded") as info:
        check_weights_unchanged(config)
    assert (info.value.source, info.value.field) == (str(path), "train.weights")
