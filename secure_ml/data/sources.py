"""Shared data sources named in ``[data] source``.

- ``sklearn:<name>``: one of scikit-learn's bundled datasets (public, shipped
  with the package: nothing is downloaded);
- ``torchvision:<MNIST|FashionMNIST|CIFAR10>:<root>``: an image dataset in its
  standard on-disk format under a local root (download disabled; the root is
  party-local and not part of the spec hash).

In a run every party that needs the source loads it in its own process and
keeps only its own part (see ``secure_ml.data.local``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secure_ml.errors import DataError
from secure_ml.spec import shown

#: name -> (loader in sklearn.datasets, task)
SKLEARN_DATASETS = {
    "breast_cancer": ("load_breast_cancer", "binary"),
    "digits": ("load_digits", "multiclass"),
    "wine": ("load_wine", "multiclass"),
    "iris": ("load_iris", "multiclass"),
    "diabetes": ("load_diabetes", "regression"),
    # the same digits as 1x8x8 images in [0, 1], for convolutional models
    "digits_images": ("load_digits", "multiclass"),
}
SCHEMES = ("sklearn", "torchvision")


@dataclass(frozen=True)
class Dataset:
    """A whole public dataset, already split into train and test rows."""

    x_train: torch.Tensor  # float32 (n, *sample_shape)
    y_train: torch.Tensor  # int64 class ids, or float32 targets for regression
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str  # binary | multiclass | regression
    n_classes: int  # 1 for regression

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def describe_sources() -> str:
    names = [f"sklearn:{n}" for n in SKLEARN_DATASETS]
    return ", ".join([*names, "torchvision:<MNIST|FashionMNIST|CIFAR10>:<root>"])


def check_source(source: str) -> None:
    """Raise DataError unless ``source`` names a known source."""
    scheme, _, rest = source.partition(":")
    if scheme == "sklearn" and rest in SKLEARN_DATASETS:
        return
    if scheme == "torchvision" and rest.count(":") >= 1:
        from secure_ml.data.images import IMAGE_DATASETS

        if rest.split(":", 1)[0] in IMAGE_DATASETS:
            return
    raise DataError(f"[data] source = {shown(source)}: must be one of {describe_sources()}")


def load_source(source: str, *, test_fraction: float, seed: int) -> Dataset:
    """Load a shared source; sklearn data is split into train/test rows by ``seed``."""
    check_source(source)
    scheme, _, rest = source.partition(":")
    if scheme == "torchvision":
        name, root = rest.split(":", 1)
        return _torchvision(name, root)
    return _sklearn(rest, test_fraction=test_fraction, seed=seed)


def _sklearn(name: str, *, test_fraction: float, seed: int) -> Dataset:
    import sklearn.datasets

    from secure_ml.data.partition import split_rows

    loader, task = SKLEARN_DATASETS[name]
    bunch = getattr(sklearn.datasets, loader)()
    x = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32))
    if name == "digits_images":
        x = x.reshape(-1, 1, 8, 8) / 16.0  # sklearn's pixels are 0..16
    if task == "regression":
        y = torch.from_numpy(np.asarray(bunch.target, dtype=np.float32))
        n_classes = 1
    else:
        y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
        n_classes = int(y.max()) + 1
    train, test = split_rows(len(y), test_fraction=test_fraction, seed=seed)
    return Dataset(x[train], y[train], x[test], y[test], task, n_classes)


def _torchvision(name: str, root: str) -> Dataset:
    from secure_ml.data.images import load_images

    train = load_images(name, root, train=True)
    test = load_images(name, root, train=False)
    return Dataset(
        train.images, train.labels, test.images, test.labels, "multiclass", train.n_classes
    )
