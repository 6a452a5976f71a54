"""What one party holds: its own rows or columns, read only in its own process.

``load_local(spec, party)`` returns this party's plaintext part:

- from a shared built-in source (simulation on public data): the party loads
  the source and keeps only its part, by the spec's partition: ``vertical``
  (a block of columns; labels only at the label owner), ``horizontal`` (a
  group of rows, with their labels) or ``dirichlet`` (rows, non-IID by label);
- from its own CSV (``[[party]] data = "csv:PATH"``): vertical CSVs carry an
  id column (rows are aligned later, see ``secure_ml.data.align``);
  horizontal CSVs carry the party's own ``label_column``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from secure_ml.data.partition import dirichlet_rows, horizontal_rows, split_rows, vertical_columns
from secure_ml.data.sources import load_source
from secure_ml.parties import DATA_OWNER, LABEL_OWNER, Party

if TYPE_CHECKING:
    from secure_ml.spec import Spec


@dataclass
class LocalData:
    """One party's own plaintext. Vertical CSV rows are aligned later by ``ids``."""

    x_train: torch.Tensor | None = None
    y_train: torch.Tensor | None = None
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    ids: tuple[str, ...] | None = None  # vertical CSVs, before alignment
    x_all: torch.Tensor | None = None  # vertical CSVs, before alignment
    y_all: torch.Tensor | None = None
    task: str | None = None  # known where the party sees a source or labels
    n_classes: int | None = None


def data_owners(spec: Spec) -> tuple[Party, ...]:
    return spec.roster.with_role(DATA_OWNER)


def uses_csv(spec: Spec) -> bool:
    return any(p.data is not None for p in spec.parties)


def load_local(spec: Spec, party: Party) -> LocalData:
    """This party's own part of the data (nothing, if it holds none)."""
    holds_labels = party.has(LABEL_OWNER) or spec.data.partition != "vertical"
    if party not in data_owners(spec) and not party.has(LABEL_OWNER):
        return LocalData()
    if uses_csv(spec):
        return _from_csv(spec, party, holds_labels)
    return _from_source(spec, party)


def _from_source(spec: Spec, party: Party) -> LocalData:
    data = load_source(
        spec.data.source, test_fraction=spec.data.test_fraction, seed=spec.protocol.seed
    )
    owners = data_owners(spec)
    local = LocalData(task=data.task, n_classes=data.n_classes)
    if spec.data.partition == "vertical":
        if party in owners:
            block = vertical_columns(data.x_train.shape[1], len(owners))[owners.index(party)]
            local.x_train, local.x_test = data.x_train[:, block], data.x_test[:, block]
        if party.has(LABEL_OWNER):
            local.y_train, local.y_test = data.y_train, data.y_test
        return local
    index = owners.index(party)
    train_rows = _rows(spec, data.y_train, len(owners))[index]
    test_rows = horizontal_rows(len(data.y_test), len(owners), seed=spec.protocol.seed)[index]
    local.x_train, local.y_train = data.x_train[train_rows], data.y_train[train_rows]
    local.x_test, local.y_test = data.x_test[test_rows], data.y_test[test_rows]
    return local


def _rows(spec: Spec, labels: torch.Tensor, n_owners: int) -> list[np.ndarray]:
    if spec.data.partition == "dirichlet":
        return dirichlet_rows(
            labels.numpy(), n_owners, alpha=spec.data.alpha, seed=spec.protocol.seed
        )
    return horizontal_rows(len(labels), n_owners, seed=spec.protocol.seed)


def _from_csv(spec: Spec, party: Party, holds_labels: bool) -> LocalData:
    from secure_ml.data.csv import read_csv

    entry = next(p for p in spec.parties if p.name == party.name)
    path = Path(entry.data.split(":", 1)[1])
    vertical = spec.data.partition == "vertical"
    table = read_csv(
        path,
        id_column=spec.data.id_column if vertical else None,
        label_column=entry.label_column if holds_labels else None,
    )
    features = torch.from_numpy(table.features)
    labels = None if table.labels is None else torch.from_numpy(table.labels)
    if vertical:
        return LocalData(ids=table.ids, x_all=features, y_all=labels)
    train, test = split_rows(
        len(features), test_fraction=spec.data.test_fraction, seed=spec.protocol.seed
    )
    return LocalData(
        x_train=features[train], y_train=labels[train], x_test=features[test], y_test=labels[test]
    )
