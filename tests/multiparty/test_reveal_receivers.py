"""A reveal sends shares to its receivers only: no other party holds a slice of the value.

gloo's ``reduce`` is a reduce-scatter followed by a gather, so it leaves every
non-root rank a fully reduced slice of what it opens. Here each party watches
everything it holds or receives while a value is revealed to others: every
tensor a ``torch.distributed`` call wrote into (gloo's collective buffers and
the links' receive buffers), every payload its ``Frames`` codec opened, and its
own share. None of it may contain an element of the opened value, for small
and large tensors, arithmetic (SUM) and binary (XOR) shares, with ``p2p_open``
on and off. The plaintext is the sum (or XOR) of uniformly random 64-bit
shares that each party draws itself: nobody knows it before the reveal, and a
random share equals one of its elements with probability ~2^-47.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest
import torch
import torch.distributed as dist
from mpkit import make_spec, run_parties

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(240)]

SIZES = (100, 100_000)  # one below and one far above P2P_MAX_ELEMENTS
RECEIVERS = {2: ["p1"], 3: ["p0", "p2"]}  # p0, resp. p1, never receives
#: every torch.distributed call that can write data into a tensor of this party
WRITING_CALLS = ("reduce", "all_reduce", "reduce_scatter", "gather", "all_gather",
                 "broadcast", "scatter", "recv", "irecv")  # fmt: skip


class RecordingFrames:
    """Wraps the links' codec and keeps every payload this party received."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.received: list[tuple[int, torch.Tensor]] = []

    def seal(self, peer, seq, payload):
        return self.inner.seal(peer, seq, payload)

    def buffer(self, peer, like):
        return self.inner.buffer(peer, like)

    def open(self, peer, seq, wire, like):
        payload = self.inner.open(peer, seq, wire, like)
        self.received.append((peer, payload.clone()))
        return payload


def _tensors(values) -> list[torch.Tensor]:
    found = []
    for value in values:
        if torch.is_tensor(value):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found += _tensors(value)
    return found


@contextmanager
def recorded_buffers():
    """Every tensor handed to a writing ``torch.distributed`` call inside the block."""
    seen: list[torch.Tensor] = []
    originals = {name: getattr(dist, name) for name in WRITING_CALLS}

    def spy(call):
        def recorded(*args, **kwargs):
            result = call(*args, **kwargs)
            seen.extend(_tensors([*args, *kwargs.values()]))  # async: filled once waited on
            return result

        return recorded

    for name, call in originals.items():
        setattr(dist, name, spy(call))
    try:
        yield seen
    finally:
        for name, call in originals.items():
            setattr(dist, name, call)


def random_shared(session, ptype, n: int):
    """A value nobody knows: every party's share is 64 random bits per element."""
    share = torch.frombuffer(bytearray(os.urandom(8 * n)), dtype=torch.long)
    return session.crypten.mpc.MPCTensor.from_shares(share, ptype=ptype)


def plaintext_elements_in(tensors: list[torch.Tensor], plaintext: torch.Tensor) -> int:
    """How many elements of ``tensors`` (int64 ones) equal some element of ``plaintext``."""
    flat = plaintext.reshape(-1)
    return sum(int(torch.isin(t.reshape(-1), flat).sum()) for t in tensors if t.dtype == torch.long)


def reveal_and_watch(session):
    """Reveal arithmetic and binary values of each size; report what each party saw."""
    comm = session.crypten.communicator.get()
    codec = None
    if comm.links is not None:
        codec = comm.links.frames = RecordingFrames(comm.links.frames)
    receivers = RECEIVERS[session.world_size]
    mpc = session.crypten.mpc
    report = {}
    for ptype in (mpc.arithmetic, mpc.binary):
        for n in SIZES:
            value = random_shared(session, ptype, n)
            before = comm.get_communication_stats()
            heard = len(codec.received) if codec is not None else 0
            with recorded_buffers() as buffers:
                opened = session.reveal(value, to=receivers, name=f"{ptype.name} {n}")
            after = comm.get_communication_stats()
            messages = codec.received[heard:] if codec is not None else []
            # the test's ground truth, opened to everyone once the watch is over
            raw = value._tensor.reveal()
            seen = [*buffers, *(payload for _, payload in messages), value._tensor.share]
            report[f"{ptype.name} {n}"] = {
                "opened": opened,
                "expected": value._tensor.encoder.decode(raw),
                "plaintext_elements_seen": plaintext_elements_in(seen, raw),
                "messages_from": sorted(peer for peer, _ in messages),
                "rounds": after["rounds"] - before["rounds"],
                "bytes": after["bytes"] - before["bytes"],
            }
    return report


@pytest.mark.parametrize("p2p_open", [True, False], ids=["p2p_open", "p2p_off"])
@pytest.mark.parametrize("parties", [2, 3], ids=["2pc", "3pc"])
def test_non_receivers_never_hold_or_receive_the_plaintext(parties, p2p_open, tmp_path):
    world = {2: "2pc", 3: "3pc"}[parties]
    spec = make_spec(world, mpc={"p2p_open": p2p_open})
    results = run_parties(reveal_and_watch, spec, tmp_path)
    receivers = RECEIVERS[parties]
    for name, report in results.items():
        rank = int(name[1:])
        times = receivers.count(name)
        for case, r in report.items():
            n = r["expected"].nelement()
            where = f"{name}, {case}, p2p_open={p2p_open}"
            # one round per receiver; a receiver counts the n-1 shares it gets, a sender 1
            assert r["rounds"] == len(receivers), where
            sent_elements = (len(receivers) - times) + times * (parties - 1)
            assert r["bytes"] == 8 * n * sent_elements, where
            if name in receivers:
                assert r["opened"] is not None and torch.equal(r["opened"], r["expected"]), where
                # the shares came over the links (through the codec), from every peer
                peers = [p for p in range(parties) if p != rank]
                assert r["messages_from"] == peers, where
            else:
                assert r["opened"] is None, where
                assert r["messages_from"] == [], where
                assert r["plaintext_elements_seen"] == 0, where
