"""``reveal``: open a shared value to named receivers, and to nobody else.

Stages, for each receiver ``r`` in ``to``, one after the other (one round each):

1. every other compute party sends its share of the value to ``r``, point to
   point over the links (``secure_ml/transport/links.py``), and sends it to
   nobody else; this holds for every size and dtype and every ``[mpc]`` switch
   (the communicator's ``reduce`` never uses gloo's reduce, which would leave
   each non-root party a reduced slice of the value);
2. ``r`` combines the shares (sum, or XOR for binary shares) and decodes the
   plaintext. A party not in ``to`` receives nothing during the reveal and gets
   ``None``: it never holds the value, a slice of it, or another party's share.

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
