"""Point-to-point links between compute parties: the path that opens shares.

An opening to one party (``collect``: ``reveal``, ``get_plain_text(dst=...)``,
CrypTen's truncation gather) always takes this path: each party sends its
share to that party only. gloo's ``reduce`` cannot be used for it, as it is a
reduce-scatter followed by a gather that leaves every rank a reduced slice.

An opening to everyone (``exchange``) takes it too when it is faster. CrypTen
opens with gloo's ``all_reduce``; for the small tensors of most MPC rounds that
costs ~1.1 ms on loopback where one send/recv exchange costs ~0.27 ms (DESIGN
§6), and with more than two parties a ring all_reduce takes ``2(n-1)``
sequential steps. Here every party sends its share to every other party at
once and combines what it receives: one round, whatever ``n``.

Every message of this path goes through a ``Frames`` codec (``seal`` on the
way out, ``open`` on the way in, with the peer's rank). Today's codec is the
identity: loopback is trusted and the README says multi-host traffic is not
protected. Authenticated encryption of every message (one key and one nonce
counter per link) is a new ``Frames`` class with the same three methods; the
exchange logic, the communicator and CrypTen above it stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.distributed as dist


class Frames(Protocol):
    """How a payload travels on one link (the seam for encryption)."""

    def seal(self, peer: int, payload: torch.Tensor) -> torch.Tensor:
        """The tensor put on the wire to ``peer`` for ``payload``."""

    def buffer(self, peer: int, like: torch.Tensor) -> torch.Tensor:
        """An empty wire tensor for a message from ``peer`` carrying a ``like`` payload."""

    def open(self, peer: int, wire: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The payload inside ``wire`` (an authenticating codec raises on tampering)."""


class PlainFrames:
    """The payload is the wire tensor (trusted loopback; no protection)."""

    def seal(self, peer: int, payload: torch.Tensor) -> torch.Tensor:
        return payload.contiguous()

    def buffer(self, peer: int, like: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(like, memory_format=torch.contiguous_format)

    def open(self, peer: int, wire: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return wire


class PeerLinks:
    """One party's links to the other compute parties of a process group."""

    def __init__(
        self, *, rank: int, world_size: int, group: object, frames: Frames | None = None
    ) -> None:
        self.rank = rank
        self.peers = [r for r in range(world_size) if r != rank]
        self.group = group
        self.frames = frames or PlainFrames()

    def exchange(self, payload: torch.Tensor) -> list[torch.Tensor]:
        """Send ``payload`` to every peer; return every party's payload by rank."""
        received = self._transfer(payload, send_to=self.peers, receive_from=self.peers)
        received[self.rank] = payload
        return [received[r] for r in range(len(self.peers) + 1)]

    def collect(self, payload: torch.Tensor, dst: int) -> list[torch.Tensor] | None:
        """Everyone sends ``payload`` to ``dst``; ``dst`` gets all payloads by rank."""
        if self.rank != dst:
            self._transfer(payload, send_to=[dst], receive_from=[])
            return None
        received = self._transfer(payload, send_to=[], receive_from=self.peers)
        received[self.rank] = payload
        return [received[r] for r in range(len(self.peers) + 1)]

    def _transfer(
        self, payload: torch.Tensor, *, send_to: Sequence[int], receive_from: Sequence[int]
    ) -> dict[int, torch.Tensor]:
        # All sends and receives are posted before any wait: no ordering between
        # peers is needed, so no party can block another.
        wires = {peer: self.frames.buffer(peer, payload) for peer in receive_from}
        pending = [dist.irecv(wire, src=peer, group=self.group) for peer, wire in wires.items()]
        sealed = [self.frames.seal(peer, payload) for peer in send_to]
        pending += [
            dist.isend(wire, dst=peer, group=self.group)
            for peer, wire in zip(send_to, sealed, strict=True)
        ]
        for request in pending:
            request.wait()
        return {peer: self.frames.open(peer, wire, payload) for peer, wire in wires.items()}
