"""Data sources named in specs.

``sklearn:<name>`` loads one of scikit-learn's bundled datasets (public data,
shipped with the package: nothing is downloaded). In a run every party that
needs it loads it in its own process and keeps only its own part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secure_ml.errors import DataError

#: name -> (loader name in sklearn.datasets, task)
SKLEARN_DATASETS = {
    "breast_cancer": ("load_breast_cancer", "binary"),
}


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray  # float32, (n, d)
    labels: np.ndarray  # (n,)
    feature_names: tuple[str, ...]
    task: str  # "binary"


def parse_source(source: str) -> tuple[str, str]:
    """Split ``scheme:name`` and check the scheme and name are known."""
    scheme, _, name = source.partition(":")
    if scheme != "sklearn" or name not in SKLEARN_DATASETS:
        known = ", ".join(f"sklearn:{n}" for n in SKLEARN_DATASETS)
        raise DataError(f"[data] source = {source!r}: must be one of {known}")
    return scheme, name


def load_source(source: str) -> Dataset:
    """Load a built-in dataset by its spec name."""
    _, name = parse_source(source)
    import sklearn.datasets

    loader, task = SKLEARN_DATASETS[name]
    bunch = getattr(sklearn.datasets, loader)()
    return Dataset(
        features=np.asarray(bunch.data, dtype=np.float32),
        labels=np.asarray(bunch.target),
        feature_names=tuple(str(n) for n in bunch.feature_names),
        task=task,
    )
