"""The links' local parts: length prefixes, codecs, combining (no processes)."""

from __future__ import annotations

import pytest
import torch

from secure_ml.errors import ProtocolAbort
from secure_ml.transport.frames import AuditFrames, PlainFrames, make_frames
from secure_ml.transport.links import Links, _bytes_tensors, combine_all


def test_a_declared_length_outside_the_bound_aborts_naming_the_peer():
    links = Links(rank=0, size=2, names=("a", "b"))
    length, body = _bytes_tensors(b"hello")
    assert links._declared(1, length, limit=5) == 5 and body.numpy().tobytes() == b"hello"
    assert _bytes_tensors(b"")[1].nelement() == 0
    for bad in (0, 6, -1, 2**62):
        wire = torch.frombuffer(bytearray(bad.to_bytes(8, "big", signed=True)), dtype=torch.uint8)
        with pytest.raises(ProtocolAbort, match=r"party b \(rank 1\) announced a message of"):
            links._declared(1, wire, limit=5)


def test_plain_frames_receive_in_place_and_audit_counts_every_byte():
    plain = PlainFrames()
    out = torch.empty(4, dtype=torch.long)
    assert plain.buffer(1, out) is out  # no copy for a contiguous destination
    strided = torch.empty(4, 2, dtype=torch.long)[:, 0]
    wire = plain.buffer(1, strided)
    assert wire is not strided and wire.is_contiguous()
    wire.copy_(torch.arange(4))
    assert torch.equal(plain.open(1, 0, wire, strided), torch.arange(4))

    audit = make_frames("audit")
    assert isinstance(audit, AuditFrames)
    audit.seal(2, 0, torch.ones(3, dtype=torch.float32))
    audit.open(2, 0, torch.ones(5, dtype=torch.uint8), torch.empty(5, dtype=torch.uint8))
    assert audit.counts() == {"2": {"sent_bytes": 12, "sent_messages": 1,
                                    "received_bytes": 5, "received_messages": 1}}  # fmt: skip
    with pytest.raises(ValueError, match="unknown codec 'aead'"):
        make_frames("aead")


def test_combining_leaves_the_payloads_untouched():
    a, b, c = torch.tensor([1, 2]), torch.tensor([10, 20]), torch.tensor([100, 200])
    assert torch.equal(combine_all([a, b, c], torch.add), torch.tensor([111, 222]))
    assert torch.equal(a, torch.tensor([1, 2])) and torch.equal(b, torch.tensor([10, 20]))
    assert combine_all([a], torch.add) is not a
    wraps = torch.tensor([2**63 - 1])
    assert int(combine_all([wraps, torch.tensor([1])], torch.add)) == -(2**63)  # Z_2^64
