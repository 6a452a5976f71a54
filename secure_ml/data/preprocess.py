"""Preprocessing a party applies to its own columns, without pooling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_STD = 1e-8


@dataclass(frozen=True)
class Standardiser:
    """Per-column mean and standard deviation, fitted on training rows."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardiser:
        std = x.std(axis=0)
        return cls(mean=x.mean(axis=0), std=np.where(std < _MIN_STD, 1.0, std))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32)
