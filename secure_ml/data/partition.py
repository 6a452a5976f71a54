"""Partitions and the public row schedule every party agrees on.

Everything here is derived from public values (row counts, the spec's seed, and
for the Dirichlet simulation the public labels of a built-in dataset), so every
party computes the same split and the same batches without talking.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from secure_ml.errors import DataError


def split_rows(n_rows: int, *, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and test row indices, the same on every party."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_test = max(1, round(n_rows * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def vertical_columns(n_features: int, n_owners: int) -> list[slice]:
    """Contiguous, near-equal blocks of columns, one per data owner (rank order)."""
    if n_features < n_owners:
        raise DataError(f"{n_features} feature columns cannot be split among {n_owners} owners")
    edges = np.linspace(0, n_features, n_owners + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def horizontal_rows(n_rows: int, n_owners: int, *, seed: int) -> list[np.ndarray]:
    """Shuffled, near-equal groups of rows, one per data owner (rank order)."""
    order = np.random.default_rng(seed + 1).permutation(n_rows)
    return [np.sort(part) for part in np.array_split(order, n_owners)]


def dirichlet_rows(
    labels: np.ndarray, n_owners: int, *, alpha: float, seed: int
) -> list[np.ndarray]:
    """Non-IID rows: each class is spread over owners in Dirichlet(alpha) proportions."""
    rng = np.random.default_rng(seed + 2)
    parts: list[list[int]] = [[] for _ in range(n_owners)]
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet([alpha] * n_owners)
        cuts = (np.cumsum(shares)[:-1] * len(rows)).round().astype(int)
        for owner, chunk in enumerate(np.split(rows, cuts)):
            parts[owner].extend(chunk.tolist())
    empty = [i for i, p in enumerate(parts) if not p]
    if empty:
        raise DataError(
            f"[data] alpha = {alpha}: the Dirichlet split left owner(s) {empty} without rows; "
            "raise alpha or use fewer data owners"
        )
    return [np.sort(np.array(p)) for p in parts]


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
