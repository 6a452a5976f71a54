"""Input parties: secret-sharing a value from outside CrypTen's world.

A party with ``crypten = false`` (a federated client, a clinic that only
contributes data) never imports crypten, yet can give the compute parties a
shared value. Stage by stage:

1. the input party encodes its value in CrypTen's fixed point (``x * 2^16``,
   rounded toward zero, as ``FixedPointEncoder`` does) after the range check
   of ``fixed_point``; it draws ``n - 1`` masks of 64 uniformly random bits
   from ``os.urandom`` and sends compute party ``i`` the share ``m_i`` (the
   last one ``encode(x) - sum m_i``, mod 2^64), each over its own link. A
   compute party learns one share: 64 random bits per element, nothing of x;
   the input party learns nothing back;
2. the compute parties tell each other, over their links, whether their share
   arrived (one byte each): if any link to the input party failed (it died, or
   an ``optional`` party stopped midway), every compute party drops the value
   together, so no collective ever waits for a share that will not come;
3. each compute party wraps its share as an ``MPCTensor``.

The shares reveal the value's shape and dtype to the compute parties, as
``session.share`` does.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from secure_ml.errors import PeerLost
from secure_ml.sharing.fixed_point import PRECISION_BITS, check_encodable


def make_shares(value: torch.Tensor, parties: int, *, limit: str = "product") -> list[torch.Tensor]:
    """Additive shares over Z_2^64 of ``value``'s fixed-point encoding, one per party."""
    if parties < 1:
        raise ValueError(f"need at least one compute party to share with, got {parties}")
    checked = check_encodable(value, limit=limit, what="input")
    encoded = (checked * (1 << PRECISION_BITS)).long()
    masks = [_random_ring(encoded.shape) for _ in range(parties - 1)]
    last = encoded.clone()
    for mask in masks:
        last -= mask  # int64 arithmetic wraps: shares mod 2^64
    return [*masks, last]


def _random_ring(shape: torch.Size) -> torch.Tensor:
    count = max(1, shape.numel())
    words = torch.frombuffer(bytearray(os.urandom(8 * count)), dtype=torch.long)
    return words[: shape.numel()].reshape(shape)


def send_shares(links: Any, value: torch.Tensor, compute: list[int], *, limit: str) -> None:
    """Stage 1 at the input party: one share to each compute party (ranks ``compute``)."""
    shares = make_shares(value, len(compute), limit=limit)
    pending = [links.post_send(rank, share) for rank, share in zip(compute, shares, strict=True)]
    for message in pending:
        message.wait()


def receive_share(
    links: Any, sender: int, shape: tuple[int, ...], compute: list[int]
) -> torch.Tensor | None:
    """Stages 1-2 at a compute party: this party's share, or None on every party if lost."""
    share: torch.Tensor | None
    try:
        share = links.recv(sender, torch.empty(shape, dtype=torch.long))
    except PeerLost:
        share = None
    arrived = torch.tensor([share is not None], dtype=torch.uint8)
    everyone = links.exchange(arrived, compute)
    return share if all(bool(flag.item()) for flag in everyone) else None
