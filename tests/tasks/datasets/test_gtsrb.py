"""GTSRB on disk: tiny copies of the official and the Kaggle layouts, written here, read back."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from pydantic import TypeAdapter

from tasks.datasets import DatasetConfig, class_names, gtsrb, load_dataset
from tasks.datasets.synthetic_signs import SIGN_NAMES
from tasks.errors import DatasetError

N_CLASSES = 43
PER_CLASS = 3
OFFICIAL_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
KAGGLE_HEADER = "Width,Height,Roi.X1,Roi.Y1,Roi.X2,Roi.Y2,ClassId,Path"
BORDER = (0, 0, 255)  # outside every ROI; no class colour has blue above 60
WIDTH, HEIGHT, ROI = 16, 14, (3, 2, 12, 11)  # x1, y1, x2, y2, inclusive


def class_colour(label: int, track: int = 0) -> tuple[int, int, int]:
    """Red and green name the class; blue (60 + 10 * track) tells images of one class apart."""
    return (10 + 5 * label, 200 - 4 * label, 60 + 10 * track)


def labels_of(x: np.ndarray) -> np.ndarray:
    """The class whose colour the top-left pixel of each image has (red channel = 10 + 5 * label)."""
    return np.rint((x[:, 0, 0, 0].astype(float) - 10) / 5).astype(np.int64)


def write_sign(path, label: int, roi=ROI, track: int = 0) -> str:
    """A WIDTH x HEIGHT image: the class colour inside ``roi`` (inclusive), BORDER outside."""
    pixels = np.full((HEIGHT, WIDTH, 3), BORDER, dtype=np.uint8)
    x1, y1, x2, y2 = roi
    pixels[y1 : y2 + 1, x1 : x2 + 1] = class_colour(label, track)
    Image.fromarray(pixels).save(path)
    return path.name


def roi_row(name: str, label: int, sep: str, roi=ROI) -> str:
    fields = [WIDTH, HEIGHT, *roi, label]
    return sep.join(map(str, [name, *fields] if sep == ";" else [*fields, name]))


def write_official(root, per_class: int = PER_CLASS, n_test: int = N_CLASSES) -> None:
    """Final_Training/Images/000NN/*.ppm + GT-000NN.csv; Final_Test/Images/*.ppm + GT-final_test.csv."""
    for label in range(N_CLASSES):
        folder = root / "Final_Training" / "Images" / f"{label:05d}"
        folder.mkdir(parents=True)
        names = [write_sign(folder / f"{track:05d}_00000.ppm", label, track=track) for track in range(per_class)]
        rows = [roi_row(name, label, ";") for name in names]
        (folder / f"GT-{label:05d}.csv").write_text("\n".join([OFFICIAL_HEADER, *rows]) + "\n")
    images = root / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = [roi_row(write_sign(images / f"{i:05d}.ppm", i % N_CLASSES), i % N_CLASSES, ";") for i in range(n_test)]
    (images / "GT-final_test.csv").write_text("\n".join([OFFICIAL_HEADER, *rows]) + "\n")


def write_kaggle(root, per_class: int = PER_CLASS, n_test: int = N_CLASSES) -> None:
    """Train.csv, Test.csv (comma-separated, Path relative to root), Train/<ClassId>/*.png, Test/*.png."""
    train_rows, test_rows = [], []
    for label in range(N_CLASSES):
        folder = root / "Train" / str(label)
        folder.mkdir(parents=True)
        for track in range(per_class):
            name = write_sign(folder / f"{label:05d}_{track:05d}_00000.png", label, track=track)
            train_rows.append(roi_row(f"Train/{label}/{name}", label, ","))
    (root / "Test").mkdir()
    for i in range(n_test):
        name = write_sign(root / "Test" / f"{i:05d}.png", i % N_CLASSES)
        test_rows.append(roi_row(f"Test/{name}", i % N_CLASSES, ","))
    (root / "Train.csv").write_text("\n".join([KAGGLE_HEADER, *train_rows]) + "\n")
    (root / "Test.csv").write_text("\n".join([KAGGLE_HEADER, *test_rows]) + "\n")


@pytest.fixture(scope="module")
def official_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    write_official(root)
    return root


@pytest.fixture
def official(official_master, tmp_path):
    """A private copy of the official layout, free to damage."""
    return shutil.copytree(official_master, tmp_path / "gtsrb")


@pytest.fixture(scope="module")
def kaggle_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle")
    write_kaggle(root)
    return root


@pytest.fixture
def kaggle(kaggle_master, tmp_path):
    return shutil.copytree(kaggle_master, tmp_path / "gtsrb")


def config(root, **overrides) -> gtsrb.Config:
    return gtsrb.Config(**{"root": str(root), "image_size": 8, **overrides})


def assert_clean_signs(x: np.ndarray, y: np.ndarray) -> None:
    """Every image is one flat class colour: the ROI was kept whole and the (blue) border dropped."""
    assert x.dtype == np.uint8 and x.shape[1:] == (8, 8, 3)
    assert (x == x[:, :1, :1, :]).all()
    np.testing.assert_array_equal(labels_of(x), y)
    expected = np.array([class_colour(label)[:2] for label in y], dtype=np.uint8)
    np.testing.assert_array_equal(x[:, 0, 0, :2], expected)
    assert np.isin(x[:, 0, 0, 2], [60 + 10 * track for track in range(PER_CLASS)]).all()


def test_official_layout_crops_rois_and_holds_out_a_stratified_tune_set(official_master):
    data = load_dataset(TypeAdapter(DatasetConfig).validate_python(
        {"name": "gtsrb", "root": str(official_master), "image_size": 8, "tune_fraction": 1 / 3}
    ))  # fmt: skip
    assert data.class_names == SIGN_NAMES and data.n_classes == N_CLASSES
    assert (len(data.y_train), len(data.y_tune), len(data.y_test)) == (2 * N_CLASSES, N_CLASSES, N_CLASSES)
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=N_CLASSES), 2)
    np.testing.assert_array_equal(np.bincount(data.y_tune, minlength=N_CLASSES), 1)
    np.testing.assert_array_equal(data.y_test, np.arange(N_CLASSES))
    for x, y in ((data.x_train, data.y_train), (data.x_tune, data.y_tune), (data.x_test, data.y_test)):
        assert_clean_signs(x, y)
    assert class_names(config(official_master)) == SIGN_NAMES


def test_roi_crop_keeps_the_roi_at_any_position(tmp_path):
    write_official(tmp_path, per_class=1, n_test=1)
    # An off-centre 4x3 ROI touching the right edge; the image's other pixels are BORDER.
    roi = (12, 5, 15, 7)
    write_sign(tmp_path / "Final_Test" / "Images" / "00000.ppm", 14, roi=roi)
    (tmp_path / "Final_Test" / "Images" / "GT-final_test.csv").write_text(
        f"{OFFICIAL_HEADER}\n{roi_row('00000.ppm', 14, ';', roi=roi)}\n"
    )
    data = gtsrb.load_dataset(config(tmp_path, image_size=12, tune_fraction=0.0))
    # 12 of the 16x14 pixels are the sign: any border pixel kept would blend blue into the output.
    assert (data.x_test == class_colour(14)).all() and data.y_test.tolist() == [14]


@pytest.mark.parametrize("where", ["Final_Test", "."])
def test_official_test_csv_may_sit_next_to_the_images_folder(official, where):
    (official / "Final_Test" / "Images" / "GT-final_test.csv").rename(official / where / "GT-final_test.csv")
    data = gtsrb.load_dataset(config(official))
    assert_clean_signs(data.x_test, data.y_test)


def test_root_may_hold_the_extracted_gtsrb_folder(official_master, tmp_path):
    shutil.copytree(official_master, tmp_path / "GTSRB")
    data = gtsrb.load_dataset(config(tmp_path, tune_fraction=0.0))
    assert len(data.y_train) == N_CLASSES * PER_CLASS and len(data.y_tune) == 0


def test_kaggle_layout_through_a_file_uri(kaggle_master):
    data = gtsrb.load_dataset(config(f"file://{kaggle_master}", tune_fraction=1 / 3, layout="kaggle"))
    assert (len(data.y_train), len(data.y_tune), len(data.y_test)) == (2 * N_CLASSES, N_CLASSES, N_CLASSES)
    np.testing.assert_array_equal(np.bincount(data.y_tune, minlength=N_CLASSES), 1)
    for x, y in ((data.x_train, data.y_train), (data.x_tune, data.y_tune), (data.x_test, data.y_test)):
        assert_clean_signs(x, y)
    auto = gtsrb.load_dataset(config(kaggle_master, tune_fraction=1 / 3))
    assert auto.fingerprint == data.fingerprint


def test_same_seed_same_split_other_seed_other_split(official_master):
    first = gtsrb.load_dataset(config(official_master, tune_fraction=1 / 3, seed=1))
    again = gtsrb.load_dataset(config(official_master, tune_fraction=1 / 3, seed=1))
    other = gtsrb.load_dataset(config(official_master, tune_fraction=1 / 3, seed=2))
    assert first.fingerprint == again.fingerprint != other.fingerprint


def rewrite_csv(path, drop_column=None, replace=None) -> None:
    lines = path.read_text().splitlines()
    sep = ";" if ";" in lines[0] else ","
    rows = [line.split(sep) for line in lines]
    if drop_column:
        column = rows[0].index(drop_column)
        rows = [row[:column] + row[column + 1 :] for row in rows]
    if replace:
        column, value = replace
        rows[1][rows[0].index(column)] = value
    path.write_text("\n".join(sep.join(row) for row in rows) + "\n")


def truncate(path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


OFFICIAL_DAMAGE = {
    "missing class folder": (
        lambda r: shutil.rmtree(r / "Final_Training/Images/00005"), r"Images/00005: directory not found"),
    "class folder without images": (
        lambda r: [p.unlink() for p in (r / "Final_Training/Images/00007").glob("*.ppm")],
        r"Images/00007: no images of class 7 \(speed_limit_100\)$"),
    "emptied class folder": (
        lambda r: [p.unlink() for p in (r / "Final_Training/Images/00008").iterdir()],
        r"Images/00008: no images of class 8 \(speed_limit_120\)$"),
    "CSV listing no image": (
        lambda r: (r / "Final_Training/Images/00008/GT-00008.csv").write_text(OFFICIAL_HEADER + "\n"),
        r"Images/00008: no images of class 8 \(speed_limit_120\) listed in GT-00008.csv"),
    "CSV without a column": (
        lambda r: rewrite_csv(r / "Final_Training/Images/00003/GT-00003.csv", drop_column="Roi.X2"),
        r"GT-00003.csv: missing column\(s\) Roi.X2"),
    "CSV with a bad value": (
        lambda r: rewrite_csv(r / "Final_Training/Images/00003/GT-00003.csv", replace=("Roi.Y1", "two")),
        r"GT-00003.csv: Roi.Y1: line 2: not an integer \('two'\)"),
    "CSV with another class": (
        lambda r: rewrite_csv(r / "Final_Training/Images/00003/GT-00003.csv", replace=("ClassId", "4")),
        r"GT-00003.csv: ClassId: line 2: 4 in the folder of class 3"),
    "ClassId out of range": (
        lambda r: rewrite_csv(r / "Final_Test/Images/GT-final_test.csv", replace=("ClassId", "43")),
        r"GT-final_test.csv: ClassId: line 2: 43 is not in \[0, 43\)"),
    "empty ROI": (
        lambda r: rewrite_csv(r / "Final_Test/Images/GT-final_test.csv", replace=("Roi.X2", "1")),
        r"GT-final_test.csv: Roi: line 2: empty region of interest"),
    "missing test labels": (
        lambda r: (r / "Final_Test/Images/GT-final_test.csv").unlink(),
        r"Final_Test/Images/GT-final_test.csv: file not found"),
    "missing test images": (
        lambda r: shutil.rmtree(r / "Final_Test"), r"Final_Test/Images: directory not found"),
    "truncated image": (
        lambda r: truncate(r / "Final_Training/Images/00009/00001_00000.ppm", 10),
        r"00009/00001_00000.ppm: unreadable or truncated image"),
    "image listed but absent": (
        lambda r: (r / "Final_Test/Images/00002.ppm").unlink(), r"00002.ppm: unreadable or truncated image"),
}  # fmt: skip


@pytest.mark.parametrize("damage", OFFICIAL_DAMAGE)
def test_damaged_official_copy_names_the_path(official, damage):
    change, message = OFFICIAL_DAMAGE[damage]
    change(official)
    with pytest.raises(DatasetError, match=message):
        gtsrb.load_dataset(config(official))


KAGGLE_DAMAGE = {
    "Test.csv without Path": (
        lambda r: rewrite_csv(r / "Test.csv", drop_column="Path"), r"Test.csv: missing column\(s\) Path"),
    "missing Train.csv": (lambda r: (r / "Train.csv").unlink(), r"Train.csv: file not found"),
    "class folder without images": (
        lambda r: [p.unlink() for p in (r / "Train/4").glob("*.png")], r"Train/4: no images of class 4 \(speed_limit_70\)$"),
    "class absent from Train.csv": (
        lambda r: (r / "Train.csv").write_text(
            "\n".join(line for line in (r / "Train.csv").read_text().splitlines() if "Train/11/" not in line) + "\n"),
        r"Train/11: no images of class 11 \(right_of_way_at_next_intersection\) listed in Train.csv"),
    "truncated image": (
        lambda r: truncate(r / "Test/00003.png", 30), r"Test/00003.png: unreadable or truncated image"),
}  # fmt: skip


@pytest.mark.parametrize("damage", KAGGLE_DAMAGE)
def test_damaged_kaggle_copy_names_the_path(kaggle, damage):
    change, message = KAGGLE_DAMAGE[damage]
    change(kaggle)
    with pytest.raises(DatasetError, match=message):
        gtsrb.load_dataset(config(kaggle, layout="kaggle"))


def test_unreadable_images_may_be_skipped(official):
    truncate(official / "Final_Training/Images/00009/00001_00000.ppm", 10)
    truncate(official / "Final_Test/Images/00020.ppm", 30)
    data = gtsrb.load_dataset(config(official, skip_unreadable=True, tune_fraction=0.0))
    assert len(data.y_train) == N_CLASSES * PER_CLASS - 1 and (data.y_train == 9).sum() == PER_CLASS - 1
    assert len(data.y_test) == N_CLASSES - 1 and 20 not in data.y_test
    assert_clean_signs(data.x_train, data.y_train)
    assert_clean_signs(data.x_test, data.y_test)


def test_missing_root_and_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="absent: directory not found"):
        gtsrb.load_dataset(config(tmp_path / "absent"))
    (tmp_path / "Final_Test").mkdir()
    with pytest.raises(DatasetError, match="neither the official GTSRB layout"):
        gtsrb.load_dataset(config(tmp_path))
    with pytest.raises(DatasetError, match="Final_Training/Images: directory not found"):
        gtsrb.load_dataset(config(tmp_path, layout="official"))
