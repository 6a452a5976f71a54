"""The point-to-point path's codec seam, exercised with a real authenticating codec.

Per-message authenticated encryption for multi-host runs is a later issue; it
must slot in as a ``Frames`` codec without touching the exchange logic, the
communicator or CrypTen. This test plugs in an HMAC-SHA256 codec (one key for
the run, generated here; a counter per link and direction against replay) and
checks that every opening of a secure computation passes through it, that the
results are unchanged, and that a tampered message stops the run, naming the
party, instead of yielding a wrong value or a hang. The codec is swapped in by
the user function, which the dealer does not run: links to the dealer keep
the run's codec. (``test_codec_sees_every_byte.py`` checks the run's own codec
on every link, the dealer's included.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest
import torch
from mpkit import make_spec, run_parties

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(180)]
TAG = 32  # bytes of an HMAC-SHA256 tag


class TaggedFrames:
    """payload bytes + HMAC(sender, receiver, counter, payload)."""

    name = "tagged"

    def __init__(self, inner, key: bytes, rank: int, compute: int, *, corrupt: bool = False):
        self.inner, self.key, self.rank, self.corrupt = inner, key, rank, corrupt
        self.compute = compute  # ranks below this are compute parties
        self.sent: dict[int, int] = {}
        self.received: dict[int, int] = {}

    def _tag(self, sender: int, receiver: int, counter: int, data: bytes) -> bytes:
        header = f"{sender}>{receiver}#{counter}|".encode()
        return hmac.new(self.key, header + data, hashlib.sha256).digest()

    def seal(self, peer: int, seq: int, payload: torch.Tensor) -> torch.Tensor:
        if peer >= self.compute:
            return self.inner.seal(peer, seq, payload)
        data = payload.contiguous().reshape(-1).view(torch.uint8)
        counter = self.sent[peer] = self.sent.get(peer, 0) + 1
        tag = self._tag(self.rank, peer, counter, data.numpy().tobytes())
        wire = torch.cat([data, torch.frombuffer(bytearray(tag), dtype=torch.uint8)])
        if self.corrupt:
            wire[0] ^= 1  # a flipped bit on the way
        return wire

    def buffer(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        if peer >= self.compute:
            return self.inner.buffer(peer, out)
        return torch.empty(out.nelement() * out.element_size() + TAG, dtype=torch.uint8)

    def open(self, peer: int, seq: int, wire: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if peer >= self.compute:
            return self.inner.open(peer, seq, wire, out)
        data, tag = wire[:-TAG], wire[-TAG:].numpy().tobytes()
        counter = self.received[peer] = self.received.get(peer, 0) + 1
        expected = self._tag(peer, self.rank, counter, data.numpy().tobytes())
        if not hmac.compare_digest(tag, expected):
            raise RuntimeError(f"message {counter} from rank {peer} failed authentication")
        return out.copy_(data.view(out.dtype).reshape(out.shape))


def secure_product(session, key: bytes, corrupt_rank: int | None = None):
    links = session.links
    corrupt = session.rank == corrupt_rank
    frames = TaggedFrames(links.frames, key, session.rank, session.world_size, corrupt=corrupt)
    links.frames = frames
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(4, 3, generator=g), torch.randn(3, 2, generator=g)
    x = session.share(a if session.rank == 0 else None, owner="p0")
    y = session.share(b if session.rank == 1 else None, owner="p1")
    opened = (x.matmul(y).sigmoid()).get_plain_text()
    return {"opened": opened, "expected": torch.sigmoid(a @ b), "sealed": sum(frames.sent.values())}


def test_an_authenticating_codec_sees_every_opening_and_changes_nothing(world, tmp_path):
    key = secrets.token_bytes(32)
    results = run_parties(lambda s: secure_product(s, key), make_spec(world), tmp_path)
    for r in results.values():
        assert torch.allclose(r["opened"], r["expected"], atol=0.01)
        assert r["sealed"] > 10  # matmul, comparisons, exp, reciprocal: all through the codec


def test_a_tampered_message_stops_the_run_naming_the_party(tmp_path):
    from secure_ml.errors import SecureMLError

    key = secrets.token_bytes(32)
    with pytest.raises(SecureMLError, match=r"p0 \(rank 0\).*failed authentication"):
        import secure_ml

        spec = make_spec("2pc")
        secure_ml.run(lambda s: secure_product(s, key, corrupt_rank=1), spec, out=tmp_path,
                      timeout=120)  # fmt: skip
