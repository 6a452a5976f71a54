"""Encrypted channels without processes: the sealed codec and the handshake.

The handshake runs between threads over in-memory links that an attacker in
the middle may rewrite, so refusals are checked where they happen.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import pytest
import torch

from secure_ml.errors import ChannelError, KeyMaterialError, SpecMismatchError
from secure_ml.keys import init_keys
from secure_ml.keys.exchange import (
    LOCAL,
    OFF,
    REQUIRED,
    KeyRing,
    channel_mode,
    establish,
    on_loopback,
)
from secure_ml.transport import frames
from secure_ml.transport.frames import AuditFrames, SealedFrames, with_inner

KEY_AB, KEY_BA = os.urandom(32), os.urandom(32)


def pair() -> tuple[SealedFrames, SealedFrames]:
    """Party 0's and party 1's codecs for the link between them."""
    return SealedFrames({1: KEY_AB}, {1: KEY_BA}), SealedFrames({0: KEY_BA}, {0: KEY_AB})


def test_sealed_messages_open_only_in_order_untouched_and_hide_the_payload():
    a, b = pair()
    payload = torch.arange(1000, dtype=torch.int64)
    wire = a.seal(1, 7, payload)
    assert wire.dtype == torch.uint8 and wire.nelement() == 8000 + frames.TAG_BYTES
    assert payload.numpy().tobytes()[:64] not in wire.numpy().tobytes()
    assert b.buffer(0, torch.empty(1000, dtype=torch.int64)).nelement() == wire.nelement()
    out = torch.empty(1000, dtype=torch.int64)
    assert torch.equal(b.open(0, 7, wire, out), payload)

    def refused(seq: int, sealed: torch.Tensor, codec: SealedFrames = b) -> None:
        with pytest.raises(ChannelError, match=rf"message {seq} from 0 failed authentication"):
            codec.open(0, seq, sealed, torch.empty(1000, dtype=torch.int64))

    refused(8, wire)  # replayed as the next message, or a message dropped before it
    refused(6, wire)  # reordered
    tampered = wire.clone()
    tampered[100] ^= 1
    refused(7, tampered)
    reflected = SealedFrames({0: KEY_AB}, {0: KEY_AB})  # own direction's key: no reflection
    assert torch.equal(reflected.open(0, 7, wire, out), payload)
    refused(7, a.seal(1, 7, payload), SealedFrames({}, {0: KEY_BA}))  # the other direction's key


def test_sealing_keeps_dtypes_shapes_strides_empty_payloads_and_segments(monkeypatch):
    a, b = pair()
    for payload in (
        torch.tensor([True, False, True]),
        torch.randn(3, 4),
        torch.empty(0, dtype=torch.int64),
        torch.tensor(5, dtype=torch.int32),
    ):
        out = torch.empty_like(payload)
        assert torch.equal(b.open(0, 0, a.seal(1, 0, payload), out), payload)
    strided = torch.empty(4, 2, dtype=torch.int64)[:, 0]  # a non-contiguous destination
    b.open(0, 1, a.seal(1, 1, torch.arange(4)), strided)
    assert torch.equal(strided, torch.arange(4))

    monkeypatch.setattr(frames, "SEGMENT_BYTES", 16)  # 40 bytes: three segments, three tags
    wire = a.seal(1, 2, torch.arange(10, dtype=torch.int32))
    assert wire.nelement() == 40 + 3 * frames.TAG_BYTES
    assert torch.equal(b.open(0, 2, wire, torch.empty(10, dtype=torch.int32)), torch.arange(10))
    swapped = torch.cat([wire[32:64], wire[:32], wire[64:]])  # two segments swapped
    with pytest.raises(ChannelError):
        b.open(0, 2, swapped, torch.empty(10, dtype=torch.int32))


def test_the_audit_codec_counts_the_sealed_wire():
    a, _ = pair()
    audit = with_inner(AuditFrames(), a)
    audit.seal(1, 0, torch.zeros(4, dtype=torch.int64))
    assert audit.counts()["1"]["sent_bytes"] == 32 + frames.TAG_BYTES
    assert with_inner(frames.PlainFrames(), a) is a


# ------------------------------------------------------------ handshake --


class MemoryLinks:
    """In-memory links between threads; ``tamper(src, dst, data)`` may rewrite messages."""

    def __init__(self, rank: int, size: int, boxes: dict, names, tamper=None) -> None:
        self.rank, self.size, self.boxes, self.names = rank, size, boxes, names
        self.tamper = tamper or (lambda src, dst, data: data)

    def describe(self, peer: int) -> str:
        return f"party {self.names[peer]} (rank {peer})"

    def _post(self, peer: int, payload: torch.Tensor) -> None:
        data = self.tamper(self.rank, peer, payload.numpy().tobytes())
        self.boxes[(self.rank, peer)].put(data)

    def _take(self, peer: int) -> torch.Tensor:
        return torch.frombuffer(bytearray(self.boxes[(peer, self.rank)].get(timeout=10)),
                                dtype=torch.uint8)  # fmt: skip

    def exchange(self, payload, members):
        for m in members:
            if m != self.rank:
                self._post(m, payload)
        return [payload if m == self.rank else self._take(m) for m in members]

    def swap(self, payloads):
        for peer, payload in payloads.items():
            self._post(peer, payload)
        return {peer: self._take(peer) for peer in payloads}


NAMES = ("alice", "bob", "dealer")


@pytest.fixture(scope="module")
def key_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in NAMES:
        init_keys(name, folder)
    return folder


def handshake(folders, modes, tamper=None):
    """Run the handshake among len(modes) threads; each rank's codec or exception."""
    size = len(modes)
    boxes = {(i, j): queue.Queue() for i in range(size) for j in range(size) if i != j}
    results: dict[int, object] = {}

    def one(rank: int) -> None:
        links = MemoryLinks(rank, size, boxes, NAMES[:size], tamper)
        ring = KeyRing(folder=folders[rank], me=NAMES[rank])
        try:
            results[rank] = establish(links, mode=modes[rank], names=NAMES[:size],
                                      keys=lambda: ring)  # fmt: skip
        except Exception as error:  # the test inspects it
            results[rank] = error
            for peer in range(size):  # unblock the others, as a closed link would
                if peer != rank:
                    boxes[(rank, peer)].put(b"\0" * 80)

    threads = [threading.Thread(target=one, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return [results[r] for r in range(size)]


def test_the_handshake_gives_each_direction_its_own_key_and_stays_plain_on_loopback(
    key_folder,
):
    codecs = handshake([key_folder] * 3, [REQUIRED, LOCAL, LOCAL])
    assert all(isinstance(c, SealedFrames) for c in codecs)
    a, b, dealer = codecs
    message = torch.arange(5)
    assert torch.equal(b.open(0, 0, a.seal(1, 0, message), torch.empty(5, dtype=torch.int64)),
                       message)  # fmt: skip
    assert torch.equal(a.open(2, 3, dealer.seal(0, 3, message), torch.empty_like(message)),
                       message)  # fmt: skip
    with pytest.raises(ChannelError):  # alice->bob and alice->dealer use different keys
        dealer.open(0, 0, a.seal(1, 0, message), torch.empty_like(message))
    # nobody needs keys when every process is on loopback
    assert handshake([Path("/nonexistent")] * 2, [LOCAL, LOCAL]) == [None, None]


def test_a_peer_without_the_right_private_key_is_refused(key_folder, tmp_path):
    rogue = tmp_path / "rogue"
    init_keys("bob", rogue)  # a new bob key pair that nobody knows
    for name in ("alice", "dealer"):
        (rogue / f"{name}.pub").write_text((key_folder / f"{name}.pub").read_text())
    alice, _, dealer = handshake([key_folder, rogue, key_folder], [REQUIRED] * 3)
    for refused in (alice, dealer):
        assert isinstance(refused, ChannelError)
        assert "party bob (rank 1) could not prove it is bob" in str(refused)
        assert "bob.pub" in str(refused) and "SHA256:" in str(refused)


def test_a_man_in_the_middle_who_swaps_ephemeral_keys_is_refused(key_folder):
    def swap_key(src, dst, data):
        if len(data) == 41 and {src, dst} == {0, 1}:  # hello between alice and bob
            return data[:9] + bytes(reversed(data[9:]))
        return data

    alice, bob = handshake([key_folder] * 2, [REQUIRED, REQUIRED], tamper=swap_key)
    assert isinstance(alice, ChannelError) and isinstance(bob, ChannelError)

    # a downgrade (hellos rewritten to LOCAL) never leaves a requiring party in the clear:
    # it still seals, and the rewritten hello breaks the transcript, so both refuse
    def downgrade(src, dst, data):
        return data[:8] + bytes([LOCAL]) + data[9:] if len(data) == 41 else data

    codecs = handshake([key_folder] * 2, [REQUIRED, REQUIRED], tamper=downgrade)
    assert all(isinstance(c, ChannelError) for c in codecs)


def test_encryption_off_beside_required_is_a_spec_mismatch_and_keys_must_match(
    key_folder, tmp_path
):
    off, _ = handshake([key_folder] * 2, [OFF, REQUIRED])
    assert isinstance(off, SpecMismatchError) and "alice switched encryption off" in str(off)
    misnamed = tmp_path / "misnamed"
    misnamed.mkdir()
    (misnamed / "alice.key").write_bytes((key_folder / "alice.key").read_bytes())
    (misnamed / "alice.key").chmod(0o600)
    (misnamed / "bob.pub").write_text((key_folder / "alice.pub").read_text())
    with pytest.raises(KeyMaterialError, match="is alice's public key, not bob's"):
        KeyRing(folder=misnamed, me="alice").public("bob")


def test_the_mode_follows_the_spec_and_the_addresses():
    assert channel_mode("on", "file:///tmp/x", "lo") == REQUIRED
    assert channel_mode("off", "tcp://10.0.0.1:1", None) == OFF
    assert channel_mode("auto", "file:///tmp/x", "lo") == LOCAL
    assert channel_mode("auto", "tcp://127.0.0.1:29500", "lo") == LOCAL
    assert channel_mode("auto", "tcp://localhost:29500", "lo") == LOCAL
    assert channel_mode("auto", "tcp://192.0.2.10:29500", "lo") == REQUIRED  # remote store
    assert not on_loopback("tcp://127.0.0.1:1", "no-such-interface0")  # no loopback address
