import numpy as np
import pytest
from PIL import Image

from tasks.datasets.image_files import decode_images, open_root, read_csv
from tasks.errors import DatasetError


def write_image(path, color, size=(10, 8)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def test_decode_crops_and_resizes_in_order(tmp_path):
    filesystem, _ = open_root(str(tmp_path))
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    image[5:10, 5:10] = (255, 0, 0)
    Image.fromarray(image).save(tmp_path / "a.ppm")
    paths = [str(tmp_path / "a.ppm"), write_image(tmp_path / "b.png", (0, 0, 255))]
    x, ok = decode_images(filesystem, paths, (4, 4), crops=np.array([[5, 5, 9, 9], [0, 0, 9, 7]]), workers=2)
    assert x.shape == (2, 4, 4, 3) and x.dtype == np.uint8 and ok.all()
    assert (x[0] == (255, 0, 0)).all() and (x[1] == (0, 0, 255)).all()


def test_truncated_image_names_its_path_unless_skipped(tmp_path):
    filesystem, _ = open_root(str(tmp_path))
    good = write_image(tmp_path / "good.png", (9, 9, 9))
    (tmp_path / "bad.jpg").write_bytes(open(good, "rb").read()[:30])
    paths = [good, str(tmp_path / "bad.jpg"), good]
    with pytest.raises(DatasetError, match="bad.jpg: unreadable or truncated image"):
        decode_images(filesystem, paths, (4, 4))
    x, ok = decode_images(filesystem, paths, (4, 4), skip_unreadable=True)
    assert ok.tolist() == [True, False, True] and len(x) == 2 and (x == 9).all()


def test_missing_root_and_csv_columns(tmp_path):
    with pytest.raises(DatasetError, match="directory not found"):
        open_root(str(tmp_path / "absent"))
    (tmp_path / "gt.csv").write_text("Filename;Width\na.ppm;3\n")
    filesystem, _ = open_root(str(tmp_path))
    with pytest.raises(DatasetError, match=r"gt.csv: missing column\(s\) ClassId"):
        read_csv(filesystem, str(tmp_path / "gt.csv"), ["Filename", "ClassId"], sep=";")


def test_skipping_keeps_order_across_chunks(tmp_path):
    # 150 images span three decoding chunks; unreadable ones sit at chunk edges and in between.
    filesystem, _ = open_root(str(tmp_path))
    paths = [write_image(tmp_path / f"{i:03d}.png", (i, 255 - i, 7)) for i in range(150)]
    bad = [0, 63, 64, 100, 149]
    for i in bad:
        (tmp_path / f"{i:03d}.png").write_bytes(b"broken")
    x, ok = decode_images(filesystem, paths, (2, 2), skip_unreadable=True, workers=2)
    expected = [i for i in range(150) if i not in bad]
    assert np.flatnonzero(ok).tolist() == expected and len(x) == len(expected)
    np.testing.assert_array_equal(x[:, 0, 0, 0], expected)
    np.testing.assert_array_equal(x[:, 1, 1, 1], [255 - i for i in expected])
