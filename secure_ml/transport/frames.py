"""Frames codecs: how one message looks on the wire of one link.

Every message between two processes of a run passes a codec: ``seal`` on the
way out and ``open`` on the way in, with the peer's rank (see ``links.py``:
share openings, dealer requests and answers, stream keys, spec hashes, object
messages, barriers). Turning on protection is choosing a codec; nothing else
in the transport changes.

- ``plain``: the payload is the wire tensor (trusted loopback; no protection).
  Received payloads land in the caller's buffer: no copy.
- ``audit``: ``plain`` that also counts every message and byte per link and
  direction, so a run can show that no byte travelled outside the codec
  (``secure_ml/transport/links.py`` writes the counts at the end of a session).

An authenticated-encryption codec (issue 14) seals each payload with a
per-link, per-direction key and a counter nonce; ``buffer`` then returns a
wire tensor larger than the payload by the tag, which is why the receiving
side always asks the codec for its wire buffer.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import torch


class Frames(Protocol):
    """How a payload travels on one link (the seam for encryption)."""

    name: str

    def seal(self, peer: int, payload: torch.Tensor) -> torch.Tensor:
        """The tensor put on the wire to ``peer`` for ``payload``."""

    def buffer(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        """An empty wire tensor for a message from ``peer`` whose payload fills ``out``."""

    def open(self, peer: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The payload inside ``wire``, in ``out`` (an authenticating codec raises on tampering)."""


class PlainFrames:
    """The payload is the wire tensor (trusted loopback; no protection)."""

    name = "plain"

    def seal(self, peer: int, payload: torch.Tensor) -> torch.Tensor:
        return payload.contiguous()

    def buffer(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        # receive straight into the caller's tensor when it is contiguous
        if out.is_contiguous():
            return out
        return torch.empty_like(out, memory_format=torch.contiguous_format)

    def open(self, peer: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if wire is not out:
            out.copy_(wire)
        return out


class AuditFrames(PlainFrames):
    """``plain``, counting every message and byte that passes, per peer and direction."""

    name = "audit"

    def __init__(self) -> None:
        self.sent_bytes: Counter[int] = Counter()
        self.sent_messages: Counter[int] = Counter()
        self.received_bytes: Counter[int] = Counter()
        self.received_messages: Counter[int] = Counter()

    def seal(self, peer: int, payload: torch.Tensor) -> torch.Tensor:
        wire = super().seal(peer, payload)
        self.sent_bytes[peer] += _nbytes(wire)
        self.sent_messages[peer] += 1
        return wire

    def open(self, peer: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        self.received_bytes[peer] += _nbytes(wire)
        self.received_messages[peer] += 1
        return super().open(peer, wire, out)

    def counts(self) -> dict[str, dict[str, int]]:
        """Per peer rank (as a string key): bytes and messages each way."""
        peers = sorted(set(self.sent_messages) | set(self.received_messages))
        return {
            str(peer): {
                "sent_bytes": self.sent_bytes[peer],
                "sent_messages": self.sent_messages[peer],
                "received_bytes": self.received_bytes[peer],
                "received_messages": self.received_messages[peer],
            }
            for peer in peers
        }


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.nelement() * tensor.element_size()


CODECS: dict[str, type] = {"plain": PlainFrames, "audit": AuditFrames}


def make_frames(name: str) -> Frames:
    """The codec registered under ``name`` (the spec's ``[transport] codec``)."""
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    return CODECS[name]()
