"""The trigger gallery: what each trigger does to a dataset's images, before a sweep pays for it.

One PNG: a row per sample image, the clean image in the first column and the same image with each
trigger in the next ones, each poisoned panel captioned with how its trigger was placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import TypeAdapter, ValidationError

from tasks.datasets import DATASETS, DatasetConfig, ImageDataset
from tasks.triggers import get_trigger


@dataclass(frozen=True)
class Gallery:
    """What :func:`render_gallery` drew.

    Attributes
    ----------
    path : Path of the PNG
    triggers : trigger names, one column each after the clean one
    sample_index : indices into the dataset's test set of the images shown, one row each
    placements : ``{trigger: {placement: count}}`` over the shown images (empty for patches)
    size : (width, height) of the PNG in pixels
    """

    path: Path
    triggers: tuple[str, ...]
    sample_index: np.ndarray
    placements: dict[str, dict[str, int]]
    size: tuple[int, int]

    @property
    def n_panels(self) -> int:
        return len(self.sample_index) * (1 + len(self.triggers))


def dataset_config(name: str, root: str | None = None) -> Any:
    """The default config of dataset ``name``, reading from ``root`` when it is one on disk.

    Raises
    ------
    ValueError
        An unknown name, a missing ``root`` for a dataset on disk, or a ``root`` for a bundled one.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    takes_root = "root" in DATASETS[name].Config.model_fields
    if takes_root and root is None:
        raise ValueError(f"{name} is read from disk: give its folder with --root")
    if not takes_root and root is not None:
        raise ValueError(f"{name} is bundled (generated or shipped with a package) and takes no --root")
    try:
        return TypeAdapter(DatasetConfig).validate_python({"name": name, **({"root": root} if root else {})})
    except ValidationError as error:
        raise ValueError(f"{name}: {error.errors()[0]['msg']}") from None


def sample_images(dataset: ImageDataset, n: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted by class) of ``n`` test images from as many different classes as possible."""
    rng = np.random.default_rng(seed)
    classes = np.unique(dataset.y_test)
    chosen = rng.choice(classes, size=min(n, len(classes)), replace=False)
    picks = [rng.choice(np.flatnonzero(dataset.y_test == label)) for label in np.sort(chosen)]
    if n > len(picks):  # fewer classes than rows: fill with other images
        rest = np.setdiff1d(np.arange(len(dataset.y_test)), picks)
        picks += list(rng.choice(rest, size=min(n - len(picks), len(rest)), replace=False))
    return np.asarray(picks, dtype=np.int64)


def render_gallery(dataset: ImageDataset, triggers: Sequence[str], out: str | Path, n: int = 4, seed: int = 0) -> Gallery:
    """Draw ``n`` test images of ``dataset`` clean and with each of ``triggers``, into the PNG ``out``.

    Parameters
    ----------
    dataset : ImageDataset
    triggers : names accepted by :func:`tasks.triggers.get_trigger` (``png:`` paths included)
    out : path of the PNG to write (its folder is created)
    n : number of sample images (rows), at least 1
    seed : picks the sample images

    Returns
    -------
    Gallery
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is the only output
    import matplotlib.pyplot as plt

    if n < 1 or not triggers:
        raise ValueError(f"need n >= 1 and at least one trigger, got n={n}, triggers={list(triggers)}")
    index = sample_images(dataset, n, seed)
    clean = np.asarray(dataset.x_test[index])
    columns, placements = [("clean", clean, [""] * len(index))], {}
    for name in triggers:
        trigger, poisoned, captions = get_trigger(name), [], []
        for image in clean:  # one at a time, to caption each panel with its own placement
            stamped, placement = trigger.apply(image[None])
            poisoned.append(stamped[0])
            captions.append(", ".join(how for how, count in placement.items() if count))
            for how, count in placement.items():
                placements.setdefault(name, {}).setdefault(how, 0)
                placements[name][how] += count
        columns.append((name, np.stack(poisoned), captions))

    height, width = clean.shape[1:3]
    panel = 1.6  # inches; images are shown without smoothing, so small ones stay pixel-exact
    figure, axes = plt.subplots(
        len(index), len(columns), figsize=(panel * len(columns), panel * len(index) * height / width + 0.4),
        squeeze=False, dpi=100,
    )  # fmt: skip
    for column, (title, images, captions) in enumerate(columns):
        axes[0, column].set_title(title.removeprefix("png:").split("/")[-1], fontsize=8)
        for row in range(len(index)):
            axis = axes[row, column]
            axis.imshow(images[row], interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if captions[row]:
                axis.set_xlabel(captions[row], fontsize=7)
    for row, sample in enumerate(index):
        axes[row, 0].set_ylabel(dataset.class_names[dataset.y_test[sample]], fontsize=7)
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    size = tuple(int(v) for v in figure.canvas.get_width_height())
    plt.close(figure)
    return Gallery(path=out, triggers=tuple(triggers), sample_index=index, placements=placements, size=size)
