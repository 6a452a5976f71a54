"""``reveal``: open a shared value to named receivers, and to nobody else.

Stages, on every compute party:

0. with a ``mechanism`` (see ``secure_ml.release.mechanism``), before any
   share moves: ``charge`` (nothing sent; a refusal raises on every party and
   the reveal ends there), then ``perturb`` on shares (sends what the
   mechanism's CrypTen ops send, opens nothing). Without a mechanism this
   stage does nothing and sends nothing: the reveal is exactly stages 1-2.

Then, for each receiver ``r`` in ``to``, one after the other (one round each):

1. every other compute party sends its share of the value to ``r``, point to
   point over the links (``secure_ml/transport/links.py``), and sends it to
   nobody else; this holds for every size and dtype and every ``[mpc]`` switch
   (the communicator's ``reduce`` never uses gloo's reduce, which would leave
   each non-root party a reduced slice of the value);
2. ``r`` combines the shares (sum, or XOR for binary shares) and decodes the
   plaintext. A party not in ``to`` receives nothing during the reveal and gets
   ``None``: it never holds the value, a slice of it, or another party's share.

The session records what was revealed to whom; it ends up in ``result.json``
under ``revealed_to`` (with or without a mechanism, in the same format).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from secure_ml.parties import Party
from secure_ml.release.mechanism import (
    Release,
    ReleaseMechanism,
    RevealSession,
    mechanism_name,
)


def reveal(
    session: RevealSession,
    value: Any,
    *,
    to: Sequence[str],
    name: str = "value",
    mechanism: ReleaseMechanism | None = None,
) -> torch.Tensor | None:
    """Open ``value`` to the parties named in ``to``; others get ``None``.

    With ``mechanism``, it is charged and then perturbs the value on shares
    before any share is sent (every compute party must pass the same one).
    """
    receivers = _receivers(session, to)
    used = None
    if mechanism is not None:
        used = mechanism_name(mechanism)
        value = _apply(mechanism, used, session, value, name=name, receivers=receivers)
    plaintext = None
    for party in receivers:
        opened = value.get_plain_text(dst=party.rank)
        if party.rank == session.rank:
            plaintext = opened
    session.record_reveal(name, [p.name for p in receivers], mechanism=used)
    return plaintext


def _receivers(session: RevealSession, to: Sequence[str]) -> list[Party]:
    """The receiving parties, checked before anything is charged or sent."""
    if isinstance(to, str):
        raise TypeError(f"to= takes a list of party names, e.g. to=[{to!r}]")
    if not to:
        raise ValueError("reveal needs at least one receiver in to=[...]")
    receivers = []
    for party_name in dict.fromkeys(to):  # de-duplicate, keep order
        party = session.roster.by_name(party_name)
        if party.is_dealer:
            raise ValueError("the dealer is not a compute party and cannot receive values")
        if not party.crypten:
            raise ValueError(
                f"party {party.name} is outside CrypTen's world (crypten = false) and holds no "
                "shares: reveal to a compute party, which may send the result on"
            )
        receivers.append(party)
    return receivers


def _apply(
    mechanism: ReleaseMechanism,
    used: str,
    session: RevealSession,
    value: Any,
    *,
    name: str,
    receivers: list[Party],
) -> Any:
    """Charge, then perturb on shares; a refusal raises before any share moves."""
    release = Release(
        name=name,
        receivers=tuple(p.name for p in receivers),
        shape=tuple(value.shape),
        session=session,
    )
    mechanism.charge(release)
    perturbed = mechanism.perturb(release, value)
    if not hasattr(perturbed, "get_plain_text"):
        raise TypeError(
            f"mechanism {used!r}: perturb returned "
            f"{type(perturbed).__name__}, not a shared value; return CrypTen ops on the "
            "shares (e.g. value + noise)"
        )
    return perturbed
