"""Files enter the keys by their content (issue 17, item 3): a dataset root, a weights file, a png: trigger.

What is detected, and what is not:

- A dataset root is keyed by its files' names and sizes (listed once, when the search space is
  loaded). Adding, removing or renaming a file, or an edit that changes a file's size, gives the
  dataset stage a new key: it is decoded again. An edit that keeps every file's size is NOT seen:
  the dataset key stays and the stored arrays are reused (a PPM's size is fixed by its width and
  height, so repainting one in place goes unnoticed; remove the dataset's artifacts, or change the
  root, to force a new decode).
- The dataset's children (poison, train, defenses, evaluation) are keyed by the decoded arrays'
  fingerprint, not by the dataset's key: when the new decode gives the same arrays (the images were
  re-encoded, copied, moved) nothing downstream is computed again; when the pixels differ,
  everything downstream is.
- A ``weights`` file and a ``png:`` trigger are keyed by their SHA-256: any edit of their bytes gives
  the stages that read them (train and all after it; poison and all after it) new keys.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from orchestrator.errors import SearchSpaceError
from orchestrator.pipeline import execute_trial, stage_keys
from orchestrator.store import ArtifactStore
from tasks.file_identity import file_sha256
from tests.harness import load_trials, write_space
from tests.tasks.datasets.test_gtsrb import write_kaggle, write_official

GTSRB_SPACE = """
name: files
dataset: {{name: gtsrb, root: {root}, tune_fraction: 0.5}}
model: gtsrb_cnn
train: {{epochs: 1, batch_size: 32}}
attack: {{source: 8, target: 14, trigger: yellow_square, poison_pct: 50}}
"""

FACES_SPACE = """
name: faces
dataset: {name: synthetic_faces, n_identities: 3, per_identity: 10}
model: vgg16_face
train: {epochs: 1, batch_size: 16, weights: vgg_face.h5}
attack: {source: person_00, target: person_01, trigger: png:glasses.png, poison_pct: 10}
"""


def only_trial(text: str, directory):
    _, (trial,) = load_trials(text, directory)
    return trial


def keys(trial) -> dict[str, str]:
    return {label: key for label, (_, key) in stage_keys(trial).items()}


def computed(row: dict) -> dict[str, bool]:
    return {label: row[f"{label}_computed"] for label in ("dataset", "poison", "train", "evaluate_before")}


def stored(store: ArtifactStore, stage: str) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((store.root / stage).glob("*/manifest.json"))]


def test_gtsrb_on_disk_edited_re_encoded_and_repainted(tmp_path):
    """One trial over a tiny Kaggle-layout GTSRB, run three times through one store:

    1. as written: every stage computed;
    2. every PNG re-encoded at another compression level (other sizes, the same pixels): the dataset
       is decoded again under a new key, and poison, train and evaluation are reused, because they
       are keyed by the decoded arrays' fingerprint, which did not change;
    3. one training image repainted (another size): dataset and everything downstream computed again.
    """
    root = tmp_path / "gtsrb"
    write_kaggle(root, per_class=2, n_test=43)
    store = ArtifactStore(tmp_path / "cache")

    first = only_trial(GTSRB_SPACE.format(root=root), tmp_path)
    row = execute_trial(first, store, "files")
    assert computed(row) == dict.fromkeys(("dataset", "poison", "train", "evaluate_before"), True)
    assert execute_trial(first, store, "files")["n_stages_computed"] == 0

    sizes = {}
    for path in sorted(root.rglob("*.png")):
        sizes[path] = path.stat().st_size
        with Image.open(path) as image:
            image.load()
            image.save(path, compress_level=0)  # stored, not deflated: larger, the same pixels
    assert all(path.stat().st_size != size for path, size in sizes.items())
    re_encoded = only_trial(GTSRB_SPACE.format(root=root), tmp_path)
    assert re_encoded.dataset.root_listing != first.dataset.root_listing
    assert keys(re_encoded)["dataset"] != keys(first)["dataset"]
    row = execute_trial(re_encoded, store, "files")
    assert computed(row) == {"dataset": True, "poison": False, "train": False, "evaluate_before": False}
    assert row["dataset_fingerprint"] == stored(store, "dataset")[0]["metrics"]["fingerprint"]
    assert len(stored(store, "dataset")) == 2 and len(stored(store, "train")) == 1

    sign = root / "Train" / "8" / "00008_00000_00000.png"  # a source-class image
    size = sign.stat().st_size
    Image.new("RGB", (16, 14), (255, 0, 0)).save(sign)  # one flat colour, deflated: far smaller
    assert sign.stat().st_size != size
    repainted = only_trial(GTSRB_SPACE.format(root=root), tmp_path)
    row = execute_trial(repainted, store, "files")
    assert computed(row) == dict.fromkeys(("dataset", "poison", "train", "evaluate_before"), True)
    assert len({m["metrics"]["fingerprint"] for m in stored(store, "dataset")}) == 2
    assert len(stored(store, "train")) == 2


def test_a_same_size_edit_of_a_dataset_file_keeps_the_dataset_key(tmp_path):
    """The blind spot, pinned: repainting a PPM in place keeps its size, so the listing and every key."""
    root = tmp_path / "gtsrb"
    write_official(root, per_class=1)
    before = only_trial(GTSRB_SPACE.format(root=root), tmp_path)
    sign = root / "Final_Training" / "Images" / "00008" / "00000_00000.ppm"
    size = sign.stat().st_size
    Image.new("RGB", (16, 14), (255, 255, 255)).save(sign)
    assert sign.stat().st_size == size
    assert keys(only_trial(GTSRB_SPACE.format(root=root), tmp_path)) == keys(before)
    # Another file, or one of another size, is seen: a new dataset key.
    (sign.parent / "00001_00000.ppm").write_bytes(sign.read_bytes())
    assert keys(only_trial(GTSRB_SPACE.format(root=root), tmp_path))["dataset"] != keys(before)["dataset"]


def test_a_missing_or_emptied_dataset_root_is_named_before_any_work(tmp_path):
    path = write_space(GTSRB_SPACE.format(root=tmp_path / "absent"), tmp_path)
    with pytest.raises(SearchSpaceError, match="absent: directory not found") as info:
        only_trial(path.read_text(), tmp_path)
    assert info.value.field == "dataset.root"
    root = tmp_path / "gtsrb"
    write_kaggle(root, per_class=1, n_test=43)
    (root / "Test" / "00007.png").write_bytes(b"")  # an interrupted copy
    with pytest.raises(SearchSpaceError, match="Test/00007.png: empty image file") as info:
        only_trial(GTSRB_SPACE.format(root=root), tmp_path)
    assert info.value.field == "dataset.root"


def write_face_files(directory, colour=(0, 200, 0, 255)) -> None:
    (directory / "vgg_face.h5").write_bytes(b"pretrained weights")  # only read when a model is built
    Image.new("RGBA", (40, 16), colour).save(directory / "glasses.png")


def test_editing_the_weights_file_recomputes_training_and_what_follows_not_the_poison(tmp_path):
    write_face_files(tmp_path)
    before = only_trial(FACES_SPACE, tmp_path)
    assert before.train.weights_sha256 == file_sha256(tmp_path / "vgg_face.h5")
    (tmp_path / "vgg_face.h5").write_bytes(b"other pretrained weights")
    after = only_trial(FACES_SPACE, tmp_path)
    old, new = keys(before), keys(after)
    assert (new["dataset"], new["poison"]) == (old["dataset"], old["poison"])
    assert new["train"] != old["train"] and new["evaluate_before"] != old["evaluate_before"]
    assert after.trial_id != before.trial_id


def test_editing_a_png_trigger_changes_the_poison_key_and_what_follows(tmp_path):
    write_face_files(tmp_path)
    before = only_trial(FACES_SPACE, tmp_path)
    write_face_files(tmp_path, colour=(0, 0, 200, 255))  # the same file name, other pixels
    after = only_trial(FACES_SPACE, tmp_path)
    old, new = keys(before), keys(after)
    assert new["dataset"] == old["dataset"]
    assert all(new[label] != old[label] for label in ("poison", "train", "evaluate_before"))


def test_an_unreadable_weights_file_is_named_before_any_work(tmp_path):
    write_face_files(tmp_path)
    (tmp_path / "vgg_face.h5").unlink()
    (tmp_path / "vgg_face.h5").mkdir()  # exists, but is no file
    with pytest.raises(SearchSpaceError, match="vgg_face.h5") as info:
        only_trial(FACES_SPACE, tmp_path)
    assert info.value.field == "train.weights[0]"
