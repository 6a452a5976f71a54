"""Standardisation without pooling.

Vertical partitions: each owner scales its own columns with its own training
statistics (``Standardiser.fit``). Horizontal partitions: the global mean and
variance come from per-owner sums added on shares (``global_standardiser`` in
``secure_ml.protocols.train``); only the totals are opened, to the data owners.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_MIN_STD = 1e-6


@dataclass(frozen=True)
class Standardiser:
    """Per-column mean and standard deviation."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardiser:
        x = x.double()
        return cls.from_moments(x.sum(0), (x * x).sum(0), len(x))

    @classmethod
    def from_moments(cls, total: torch.Tensor, squares: torch.Tensor, count: int) -> Standardiser:
        """From column sums and sums of squares over ``count`` rows (population std)."""
        mean = total.double() / count
        variance = (squares.double() / count - mean * mean).clamp(min=0)
        std = variance.sqrt()
        return cls(mean=mean, std=torch.where(std < _MIN_STD, torch.ones_like(std), std))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.mean) / self.std).float()
