"""Frames codecs: how one message looks on the wire of one link.

Every message between two processes of a run passes a codec: ``seal`` on the
way out and ``open`` on the way in, with the peer's rank and the message's
sequence number on that link and direction (see ``links.py``: share openings,
dealer requests and answers, stream keys, spec hashes, object messages,
barriers). Turning on protection is choosing a codec; nothing else in the
transport changes.

- ``plain``: the payload is the wire tensor (trusted loopback; no protection).
  Received payloads land in the caller's buffer: no copy.
- ``audit``: another codec (``plain`` by default) that also counts every
  message and byte per link and direction, so a run can show that no byte
  travelled outside the codec (the session writes the counts at its end).
- ``SealedFrames``: AES-256-GCM with a per-link, per-direction key from the
  handshake (``secure_ml.keys.exchange``) and the sequence number as nonce.
  The wire is the ciphertext and a 16-byte tag per segment. A message that was
  tampered with, replayed, reordered or dropped fails to open (its nonce or
  tag is wrong) and aborts the run, naming the link. Not selected by name:
  the session installs it once the handshake agreed on encryption.

Sequence numbers are counted by ``Links`` at posting time, per peer and
direction; both ends post in the same order, so they agree without sending
them.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import torch

from secure_ml.errors import ChannelError


class Frames(Protocol):
    """How a payload travels on one link (the seam for encryption)."""

    name: str

    def seal(self, peer: int, seq: int, payload: torch.Tensor) -> torch.Tensor:
        """The tensor put on the wire to ``peer`` for message ``seq`` carrying ``payload``."""

    def buffer(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        """An empty wire tensor for a message from ``peer`` whose payload fills ``out``."""

    def open(self, peer: int, seq: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The payload inside ``wire``, in ``out`` (an authenticating codec raises on tampering)."""


class PlainFrames:
    """The payload is the wire tensor (trusted loopback; no protection)."""

    name = "plain"

    def seal(self, peer: int, seq: int, payload: torch.Tensor) -> torch.Tensor:
        return payload.contiguous()

    def buffer(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        # receive straight into the caller's tensor when it is contiguous
        if out.is_contiguous():
            return out
        return torch.empty_like(out, memory_format=torch.contiguous_format)

    def open(self, peer: int, seq: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if wire is not out:
            out.copy_(wire)
        return out


#: AES-GCM's tag; one per segment
TAG_BYTES = 16
#: a payload is sealed in segments of at most this many bytes (the AEAD
#: library takes at most 2^31 - 1 bytes per call); each segment has its own
#: nonce (sequence number, segment index) and tag
SEGMENT_BYTES = 1 << 30


class SealedFrames:
    """AES-256-GCM per link and direction, the sequence number as nonce.

    ``send_keys[peer]`` seals what this process sends to ``peer``;
    ``receive_keys[peer]`` opens what it receives from ``peer``. Each key is
    used in one direction only, so a nonce never repeats under a key.
    """

    name = "sealed"

    def __init__(
        self,
        send_keys: dict[int, bytes],
        receive_keys: dict[int, bytes],
        *,
        describe: object = str,
    ) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._send = {peer: AESGCM(key) for peer, key in send_keys.items()}
        self._receive = {peer: AESGCM(key) for peer, key in receive_keys.items()}
        self._describe = describe

    def seal(self, peer: int, seq: int, payload: torch.Tensor) -> torch.Tensor:
        aead = self._cipher(self._send, peer)
        data = _bytes_view(payload)
        wire = torch.empty(_wire_bytes(len(data)), dtype=torch.uint8)
        sealed = wire.numpy()
        for index, (plain, cipher) in enumerate(_segments(len(data))):
            aead.encrypt_into(_nonce(seq, index), data[plain], None, sealed[cipher])
        return wire

    def buffer(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        nbytes = out.nelement() * out.element_size()
        return torch.empty(_wire_bytes(nbytes), dtype=torch.uint8)

    def open(self, peer: int, seq: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        from cryptography.exceptions import InvalidTag

        aead = self._cipher(self._receive, peer)
        contiguous = out.is_contiguous()
        target = out if contiguous else torch.empty_like(out, memory_format=torch.contiguous_format)
        data, sealed = _bytes_view(target), wire.numpy()
        try:
            for index, (plain, cipher) in enumerate(_segments(len(data))):
                aead.decrypt_into(_nonce(seq, index), sealed[cipher], None, data[plain])
        except InvalidTag:
            raise ChannelError(
                f"message {seq} from {self._describe(peer)} failed authentication: it was "
                "tampered with, replayed, reordered or a message before it was dropped; "
                "stopping the run (nothing from this message was used)"
            ) from None
        if not contiguous:
            out.copy_(target)
        return out

    def _cipher(self, ciphers: dict, peer: int):
        cipher = ciphers.get(peer)
        if cipher is None:
            raise ChannelError(f"no channel key for {self._describe(peer)}")
        return cipher


def _bytes_view(tensor: torch.Tensor):
    """The tensor's bytes as a writable numpy uint8 array (no copy when contiguous)."""
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    return flat.view(torch.uint8).numpy()


def _segments(nbytes: int) -> list[tuple[slice, slice]]:
    """Per segment of a payload of ``nbytes`` bytes: its payload bytes and its wire bytes."""
    out = []
    for index, start in enumerate(range(0, max(nbytes, 1), SEGMENT_BYTES)):
        end = min(start + SEGMENT_BYTES, nbytes)
        wire_start = start + index * TAG_BYTES
        out.append((slice(start, end), slice(wire_start, wire_start + end - start + TAG_BYTES)))
    return out


def _wire_bytes(nbytes: int) -> int:
    return nbytes + TAG_BYTES * len(_segments(nbytes))


def _nonce(seq: int, segment: int) -> bytes:
    # 96 bits: the segment index (32) and the message's sequence number (64)
    return segment.to_bytes(4, "big") + seq.to_bytes(8, "big")


class AuditFrames:
    """Another codec (``plain`` by default), counting every message and wire byte per peer."""

    name = "audit"

    def __init__(self, inner: Frames | None = None) -> None:
        self.inner = inner or PlainFrames()
        self.sent_bytes: Counter[int] = Counter()
        self.sent_messages: Counter[int] = Counter()
        self.received_bytes: Counter[int] = Counter()
        self.received_messages: Counter[int] = Counter()

    def seal(self, peer: int, seq: int, payload: torch.Tensor) -> torch.Tensor:
        wire = self.inner.seal(peer, seq, payload)
        self.sent_bytes[peer] += _nbytes(wire)
        self.sent_messages[peer] += 1
        return wire

    def buffer(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        return self.inner.buffer(peer, out)

    def open(self, peer: int, seq: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        self.received_bytes[peer] += _nbytes(wire)
        self.received_messages[peer] += 1
        return self.inner.open(peer, seq, wire, out)

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


def with_inner(frames: Frames, inner: Frames) -> Frames:
    """``frames`` over ``inner``: the audit codec counts ``inner``'s wire; others give way."""
    if isinstance(frames, AuditFrames):
        frames.inner = inner
        return frames
    return inner


def make_frames(name: str, inner: Frames | None = None) -> Frames:
    """The codec registered under ``name`` (the spec's ``[transport] codec``).

    ``inner``: the codec under ``audit`` (e.g. the sealed one); ``plain`` with
    an ``inner`` is that inner codec itself.
    """
    if name not in CODECS:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODECS)}")
    if name == "audit":
        return AuditFrames(inner)
    return inner or PlainFrames()
