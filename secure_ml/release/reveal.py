"""``reveal``: open a shared value to named receivers, and to nobody else.

Stages, for each receiver ``r`` in ``to``:

1. every compute party sends its share to ``r`` (one reduce towards ``r``);
2. ``r`` adds the shares and decodes the plaintext; every other party gets
   ``None`` and never holds the value, nor enough shares to rebuild it.

The session records what was revealed to whom; it ends up in ``result.json``
under ``revealed_to``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from secure_ml.session import Session


def reveal(
    session: Session, value: Any, *, to: Sequence[str], name: str = "value"
) -> torch.Tensor | None:
    """Open ``value`` to the parties named in ``to``; others get ``None``."""
    if isinstance(to, str):
        raise TypeError(f"to= takes a list of party names, e.g. to=[{to!r}]")
    if not to:
        raise ValueError("reveal needs at least one receiver in to=[...]")
    receivers = []
    for party_name in dict.fromkeys(to):  # de-duplicate, keep order
        party = session.roster.by_name(party_name)
        if party.is_dealer:
            raise ValueError("the dealer is not a compute party and cannot receive values")
        receivers.append(party)
    plaintext = None
    for party in receivers:
        opened = value.get_plain_text(dst=party.rank)
        if party.rank == session.rank:
            plaintext = opened
    session.record_reveal(name, [p.name for p in receivers])
    return plaintext
