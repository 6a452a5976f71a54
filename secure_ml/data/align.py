"""Row alignment for vertical partitions: which rows do all parties share?

Each party with a vertical CSV announces its id set to every compute party;
the rows used are the intersection, in sorted id order, split into train and
test rows by the spec's seed.

What this reveals: every compute party learns every other party's full id set
(which patients, customers, ... each holds), not only the intersection. Use ids
that are already shared knowledge, or pseudonyms agreed beforehand; a private
set intersection would reveal only the intersection and is not built yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secure_ml.data.local import LocalData
from secure_ml.data.partition import split_rows
from secure_ml.errors import DataError
from secure_ml.sharing.mpc import publish

if TYPE_CHECKING:
    from secure_ml.session import Session


def align_rows(session: Session, local: LocalData) -> LocalData:
    """Keep the rows whose ids every CSV-holding party has; split them train/test."""
    id_sets = publish(local.ids, my_rank=session.rank, world_size=session.world_size)
    held = [set(ids) for ids in id_sets if ids is not None]
    common = sorted(set.intersection(*held)) if held else []
    if len(common) < 2:
        sizes = ", ".join(str(len(s)) for s in held)
        raise DataError(
            f"vertical CSVs share {len(common)} ids in [data] id_column (id counts per "
            f"party: {sizes}); the parties must hold rows about the same ids"
        )
    spec = session.spec
    train, test = split_rows(
        len(common), test_fraction=spec.data.test_fraction, seed=spec.protocol.seed
    )
    if local.ids is None:
        return local
    position = {row_id: i for i, row_id in enumerate(local.ids)}
    rows = [position[row_id] for row_id in common]
    x = local.x_all[rows]
    local.x_train, local.x_test = x[train], x[test]
    if local.y_all is not None:
        y = local.y_all[rows]
        local.y_train, local.y_test = y[train], y[test]
    return local
