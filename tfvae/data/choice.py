"""Data by name: which dataset a name means (`auto`), whether a file holds usable values.

The command line's `--dataset` is a name or a path; this turns it into `tfvae.data.datasets`
calls and refuses what would train silently on the wrong thing (values outside [0, 1]).
Nothing here imports TensorFlow until data is loaded, so names are checked at once.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Sequence

from tfvae.config import DATASETS

logger = logging.getLogger(__name__)

__all__ = [
    "NAMED_DATASETS",
    "ARRAY_SUFFIXES",
    "dataset_name_problem",
    "dataset_kind",
    "choose_dataset",
    "check_dataset_file",
    "check_unit_range",
    "load_data",
]

NAMED_DATASETS = ("auto", *DATASETS)  # auto: MNIST when present or downloadable
ARRAY_SUFFIXES = (".npy", ".npz")


def dataset_name_problem(name: str) -> Optional[str]:
    """What is wrong with `name` as a dataset (a named one or an array file), or None."""
    if name in NAMED_DATASETS or name.endswith(ARRAY_SUFFIXES):
        return None
    return (
        f"unknown dataset {name!r}: expected one of {', '.join(NAMED_DATASETS)} "
        f"or a path to a .npy/.npz file"
    )


def dataset_kind(dataset: str) -> str:
    """The named dataset a file holds (Keras' mnist.npz is `mnist`), else `dataset` itself."""
    if dataset.endswith(".npz") and os.path.isfile(dataset):
        from tfvae.data.datasets import is_keras_mnist

        return "mnist" if is_keras_mnist(dataset) else dataset
    return dataset


def choose_dataset(
    dataset: str, data_dir: Optional[str], note: Callable[[str], None] = logger.warning
) -> str:
    """`auto`: MNIST when present or downloadable, else (saying so through `note`) the
    embedded digits; any other name is itself."""
    if dataset != "auto":
        return dataset
    from tfvae.data.datasets import find_mnist
    from tfvae.data.download import DownloadError

    try:
        find_mnist(data_dir)
    except DownloadError as e:
        note(f"MNIST is not available, training on the embedded 8x8 digits instead: {e}")
        return "default"
    return "mnist"


def check_dataset_file(dataset: str) -> None:
    """An array-file dataset must exist (checked before TensorFlow is imported)."""
    if dataset.endswith(ARRAY_SUFFIXES) and not os.path.isfile(dataset):
        # ValueError: bad input, like a wrong name (a resume would meet it again)
        raise ValueError(f"--dataset: file not found: {dataset!r} (expected a .npy/.npz file)")


def load_data(
    dataset: str,
    data_dir: Optional[str],
    seed: int,
    binarization: str = "static",
    note: Callable[[str], None] = logger.warning,
    image_shape: Optional[Sequence[int]] = None,
):
    """The `tfvae.data.datasets.Data` a dataset name or array file means (`choose_dataset`),
    an array file's values checked to lie in [0, 1]; `image_shape`, if given, replaces the
    data's own (a flat array file's is square images where D allows, else one row)."""
    from tfvae.data.datasets import load_dataset

    check_dataset_file(dataset)
    name = choose_dataset(dataset, data_dir, note)
    data = load_dataset(
        name, data_dir, binarization=binarization, seed=seed, image_shape=image_shape
    )
    if dataset.endswith(ARRAY_SUFFIXES):
        check_unit_range(dataset, data)
    return data


def check_unit_range(path: str, data) -> None:
    """Refuses array files outside [0, 1]: the decoders (the Bernoulli's support, the
    Gaussian's variance bounds) are made for it, and 8-bit pixels would train silently."""
    import numpy as np

    splits = [x for x in (data.x_train, data.x_test) if x.size]  # an empty one: said later
    if not splits:
        return
    low, high = min(float(x.min()) for x in splits), max(float(x.max()) for x in splits)
    if low >= 0 and high <= 1:
        return
    pixels = (
        low >= 0
        and high <= 255
        and all(np.array_equal(x, np.round(x)) for x in (data.x_train, data.x_test))
    )
    fix = (
        "divide by 255 (np.save(path, x / 255))"
        if pixels
        else "rescale it, e.g. (x - x.min()) / (x.max() - x.min())"
    )
    raise ValueError(
        f"--dataset {path!r} has values in [{low:g}, {high:g}]"
        f"{' (8-bit pixels?)' if pixels else ''}; tfvae expects data in [0, 1]: {fix}"
    )
