"""Partitions and the public row schedule every party agrees on.

Everything here is derived from public values (row counts, the spec's seed), so
every party computes the same split and the same batches without talking.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch


def split_rows(n_rows: int, *, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test row indices, the same on every party."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = max(1, round(n_rows * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def vertical_columns(n_features: int, n_owners: int) -> list[slice]:
    """Contiguous, near-equal blocks of columns, one per data owner (rank order)."""
    edges = np.linspace(0, n_features, n_owners + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def batch_schedule(
    n_rows: int, *, batch_size: int, epochs: int, seed: int
) -> list[list[torch.Tensor]]:
    """Per epoch, the row indices of each mini-batch (reshuffled every epoch)."""
    generator = torch.Generator().manual_seed(seed)
    schedule = []
    for _ in range(epochs):
        order = torch.randperm(n_rows, generator=generator)
        schedule.append(list(order.split(batch_size)))
    return schedule
