"""Datasets: a registry of loaders, each turning a validated config into an :class:`ImageDataset`.

Adding a dataset means adding a module with a ``Config`` (a :class:`~tasks.config.StageConfig` with
a ``name`` literal), ``load_dataset(config) -> ImageDataset`` and ``class_names(config)`` (cheap: no
image is read, so a search space can name classes and be checked before any work), and one line
in ``DATASETS``. A dataset read from a ``root`` folder derives its ``Config`` from
:class:`~tasks.datasets.on_disk.OnDiskConfig`, so that the loader keys it by the root's listing.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from tasks.datasets import digits, gtsrb, lfw, synthetic_faces, synthetic_signs, youtube_faces
from tasks.datasets.image_dataset import ImageDataset
from tasks.datasets.on_disk import OnDiskConfig, root_listing

DATASETS = {
    "synthetic_signs": synthetic_signs,
    "gtsrb": gtsrb,
    "youtube_faces": youtube_faces,
    "lfw": lfw,
    "digits": digits,
    "synthetic_faces": synthetic_faces,
}

DatasetConfig = Annotated[
    Union[tuple(module.Config for module in DATASETS.values())],  # noqa: UP007 (built at run time)
    Field(discriminator="name"),
]


def load_dataset(config) -> ImageDataset:
    """Stage ``dataset``: build or read the dataset that ``config.name`` names."""
    return DATASETS[config.name].load_dataset(config)


def class_names(config) -> tuple[str, ...]:
    """The class names of the dataset ``config`` describes, index i naming class i."""
    return DATASETS[config.name].class_names(config)


def with_root_listing(config):
    """``config`` with ``root_listing`` set from its root on disk now; a config without a root as it is.

    Called once per search space, on the driver. Raises DatasetError naming the root (missing,
    unlistable, empty) or an empty image file under it.
    """
    if not isinstance(config, OnDiskConfig):
        return config
    return config.model_copy(update={"root_listing": root_listing(config.root, getattr(config, "skip_unreadable", False))})


__all__ = ["DATASETS", "DatasetConfig", "ImageDataset", "class_names", "load_dataset", "with_root_listing"]
