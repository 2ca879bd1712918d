"""The trigger gallery: what each trigger does to a dataset's images, before a sweep pays for it.

One PNG: a row per sample image, the clean image in the first column and the same image under each
attack in the next ones: as a poison (train mode), as a cover sample where the attack adds them,
as a triggered test input, and the magnified difference where a trigger is too faint to see. Each
sunglasses panel is captioned with how the overlay was placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import TypeAdapter, ValidationError

from tasks.datasets import DATASETS, DatasetConfig, ImageDataset
from tasks.registry import AttackSpec


@dataclass(frozen=True)
class Gallery:
    """What :func:`render_gallery` drew.

    Attributes
    ----------
    path : Path of the PNG
    triggers : the attacks' labels, in order
    columns : each column's title after the clean one (attack label and mode)
    sample_index : indices into the dataset's test set of the images shown, one row each
    placements : ``{trigger: {placement: count}}`` over the shown images (empty for patches)
    size : (width, height) of the PNG in pixels
    """

    path: Path
    triggers: tuple[str, ...]
    columns: tuple[str, ...]
    sample_index: np.ndarray
    placements: dict[str, dict[str, int]]
    size: tuple[int, int]

    @property
    def n_panels(self) -> int:
        return len(self.sample_index) * (1 + len(self.columns))


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


def parse_attacks(entries: Sequence[str]) -> list[AttackSpec]:
    """The attacks of ``--trigger`` entries: a name, ``png:<path>``, or a search space's YAML entry
    (``{blend: {alpha: [0.1, 0.3]}}``, lists expanded). Raises SearchSpaceError naming the entry."""
    import yaml

    from orchestrator.search_space import _parse_method
    from tasks.poison import attack_spec
    from tasks.triggers import PNG_PREFIX, check_trigger_name

    specs = []
    for position, entry in enumerate(entries):
        if entry.startswith(PNG_PREFIX):
            check_trigger_name(entry)
            specs.append(AttackSpec(**attack_spec(entry)))
            continue
        parsed = yaml.safe_load(entry) if entry.lstrip().startswith("{") else entry
        specs += _parse_method(parsed, AttackSpec, "--trigger", ("trigger", position))
    return specs


def default_attacks(dataset: str) -> list[AttackSpec]:
    """The dataset's triggers (:func:`tasks.triggers.triggers_for`), then every other registered
    attack at its defaults (the BadNets patches and sunglasses only where they belong)."""
    from tasks.registry import registry
    from tasks.triggers import TRIGGERS, triggers_for

    names = [*triggers_for(dataset), *(name for name in registry().attacks if name not in TRIGGERS and name != "png")]
    return [AttackSpec(name=name) for name in names]


MAGNIFY_BELOW = 64  # a change whose largest pixel step (0-255) is under this is shown magnified too


def attack_columns(dataset: ImageDataset, spec: AttackSpec, clean: np.ndarray,
                   y: np.ndarray) -> tuple[list[tuple[str, np.ndarray, list[str]]], dict[str, int]]:
    """The gallery columns of one attack on images ``clean`` (n, h, w, 3) with labels ``y``.

    ``train`` (a poison), ``cover`` (where the attack adds covers), ``test`` (a triggered input; one
    ``train = test`` column where both stamps are alike), and ``|test - clean| x k`` when the change is
    too faint to see. An attack with parent stages of its
    own (label-consistent's proxy model) is drawn in test mode only: its training stamp needs them.
    Returns the columns and the placement counts over the shown images.
    """
    method, params = spec.method(), spec.validated()
    label = spec.label()
    modes = ["test"] if method.stages else ["train"]
    if method.adds_covers:
        modes.append("cover")
    if "test" not in modes:
        modes.append("test")
    columns, placements, stamped_test = [], {}, None
    for mode in modes:
        images, captions = [], []
        for index, image in enumerate(clean):  # one at a time, to caption each panel with its own placement
            stamped, metrics = method.stamp(params, image[None], mode=mode, rng=np.random.default_rng(index),
                                            seed=0, y=y[index:index + 1])
            images.append(stamped[0])
            placed = {name.removeprefix("placement_"): count for name, count in metrics.items()
                      if name.startswith("placement_")}
            captions.append(", ".join(how for how, count in placed.items() if count))
            if mode == "test":
                for how, count in placed.items():
                    placements[how] = placements.get(how, 0) + count
        images = np.stack(images)
        if mode == "test" and columns and columns[0][0].endswith("train") and np.array_equal(columns[0][1], images):
            columns[0] = (f"{label}\ntrain = test", images, captions)  # one stamp for both: one column
        else:
            columns.append((f"{label}\n{mode}", images, captions))
        if mode == "test":
            stamped_test = images
    difference = np.abs(stamped_test.astype(np.int16) - clean.astype(np.int16))
    largest = int(difference.max()) if difference.size else 0
    if 0 < largest < MAGNIFY_BELOW:
        factor = 255 // largest
        columns.append((f"{label}\n|test - clean| x{factor}", np.clip(difference * factor, 0, 255).astype(np.uint8),
                        [""] * len(clean)))
    return columns, placements


def render_gallery(dataset: ImageDataset, attacks: Sequence[AttackSpec | str], out: str | Path, n: int = 4,
                   seed: int = 0) -> Gallery:
    """Draw ``n`` test images of ``dataset`` clean and with each attack, into the PNG ``out``.

    Parameters
    ----------
    dataset : ImageDataset
    attacks : attacks at their parameters (:class:`~tasks.registry.AttackSpec`, or a trigger name or
        ``png:`` path); each gets a column per mode (:func:`attack_columns`)
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

    from tasks.poison import attack_spec

    specs = [a if isinstance(a, AttackSpec) else AttackSpec(**attack_spec(a)) for a in attacks]
    if n < 1 or not specs:
        raise ValueError(f"need n >= 1 and at least one attack, got n={n}, attacks={list(attacks)}")
    index = sample_images(dataset, n, seed)
    clean = np.asarray(dataset.x_test[index])
    columns, placements = [("clean", clean, [""] * len(index))], {}
    for spec in specs:
        drawn, placed = attack_columns(dataset, spec, clean, np.asarray(dataset.y_test[index]))
        columns += drawn
        if placed:
            placements[spec.label()] = placed

    height, width = clean.shape[1:3]
    panel = 1.6  # inches; images are shown without smoothing, so small ones stay pixel-exact
    figure, axes = plt.subplots(
        len(index), len(columns), figsize=(panel * len(columns), panel * len(index) * height / width + 0.6),
        squeeze=False, dpi=100,
    )  # fmt: skip
    for column, (title, images, captions) in enumerate(columns):
        axes[0, column].set_title(title.removeprefix("png:").split("/")[-1], fontsize=7)
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
    return Gallery(path=out, triggers=tuple(spec.label() for spec in specs), columns=tuple(c[0] for c in columns[1:]),
                   sample_index=index, placements=placements, size=size)
