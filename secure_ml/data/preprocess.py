"""Standardisation without pooling.

Vertical partitions: each owner scales its own columns with its own training
statistics (``Standardiser.fit``). Horizontal partitions: the global mean and
scale are computed on shares and stay shared (``secure_ml.sharing.scaling``);
nobody, the owners included, learns them. ``MIN_SHARED_STD`` is the smallest
standard deviation the shared computation resolves: the plaintext twin of a
horizontal run uses it in place of ``MIN_STD`` so both treat the same columns
as constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_STD = 1e-6
#: columns with a smaller std are constant for ``secure_ml.sharing.scaling``
MIN_SHARED_STD = 2.0**-9


@dataclass(frozen=True)
class Standardiser:
    """Per-column mean and standard deviation."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, *, min_std: float = MIN_STD) -> Standardiser:
        """Column mean and population std; a std below ``min_std`` counts as 1."""
        x = x.double()
        mean = x.mean(0)
        std = (x - mean).square().mean(0).sqrt()
        return cls(mean=mean, std=torch.where(std < min_std, torch.ones_like(std), std))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.mean) / self.std).float()

    def restore(self, z: torch.Tensor) -> torch.Tensor:
        """Original units of standardised ``z``."""
        return (z.double() * self.std + self.mean).float()

    def as_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std}
