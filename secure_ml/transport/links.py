"""Links: the one message path between the processes of a run.

Every process of a run (CrypTen's compute parties, the dealer, and parties
outside CrypTen's world) joins one ``torch.distributed`` process group and
talks to the others only through its ``Links``: point-to-point messages, each
passing the run's ``Frames`` codec (``frames.py``) with the peer's rank. No
gloo collective, no subgroup and no pickle is used after the group is formed,
so a codec sees every byte between two processes, and turning on encryption
is choosing a codec.

What travels:

- tensors (share openings, dealer answers, stream keys), received into the
  caller's buffer;
- bytes, length-prefixed: an int64 length, then the bytes (both through the
  codec); objects are bytes in the JSON format of ``objects.py``;
- patterns built from these, among a set of member ranks: ``exchange`` (every
  member sends to every other at once, one step whatever the number of
  members), ``collect`` (everyone sends to one), ``all_reduce`` (an exchange up
  to ``DIRECT_MAX_ELEMENTS``; above, a reduce-scatter then an all-gather,
  each member combining one slice, which moves ``2(n-1)/n`` of the tensor per
  member instead of ``n-1`` copies and is as fast as gloo's ring on large
  tensors), ``broadcast`` and ``barrier``.

A message that cannot be delivered (the peer's process died, or it stayed
silent past the group's timeout) raises ``PeerLost`` naming the peer. A
peer's death breaks only the links to it: the others keep talking, which is
what lets a protocol continue without an ``optional`` party.

Ordering: messages between two processes are matched in the order they were
posted, so both sides must post in the same order (every protocol here is
deterministic in what it sends).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from secure_ml.errors import PeerLost, ProtocolAbort
from secure_ml.transport import notices, objects
from secure_ml.transport.frames import Frames, PlainFrames
from secure_ml.transport.naming import describe

#: openings to everyone up to this many elements take one direct exchange;
#: larger ones a reduce-scatter and an all-gather over the same links.
#: Measured on loopback (2 cores, medians): at 4K-32K elements an exchange
#: takes 0.4-0.7x gloo's all_reduce time; from 256K elements on it takes
#: 1.1-2.2x (every party sends its whole tensor to every other), while the
#: two-step path matches gloo (see PIPELINE_CHUNK_ELEMENTS).
DIRECT_MAX_ELEMENTS = 1 << 15

#: the two-step path moves a slice in chunks of this many elements, combining
#: one chunk while the next travels. Measured on loopback (benchmarks/
#: openings.py, interleaved medians, time / gloo's all_reduce at 256K, 1M, 4M
#: elements): one message per slice 1.06, 1.02, 0.84 (2 parties) and 0.99,
#: 0.89, 0.99 (3); chunks of 64K elements 1.72, 1.25, 1.00 and 1.27, 1.22,
#: 1.18, as each message costs Python and gloo overhead that loopback does
#: not hide. So chunks are large: only slices above 8 MB are split.
PIPELINE_CHUNK_ELEMENTS = 1 << 20

#: the length that precedes a bytes message
_LENGTH = struct.Struct(">q")

Combine = Callable[..., torch.Tensor]


class Pending:
    """A posted message; ``wait`` returns the payload (received) or ``None`` (sent)."""

    __slots__ = ("_links", "_out", "_peer", "_seq", "_wire", "_work")

    def __init__(
        self, links: Links, peer: int, seq: int, work: Any, wire: torch.Tensor, out: Any
    ) -> None:
        self._links, self._peer, self._seq, self._work = links, peer, seq, work
        self._wire, self._out = wire, out

    def wait(self) -> torch.Tensor | None:
        try:
            self._work.wait()
        except RuntimeError as error:
            raise self._links.lost(self._peer, error) from None
        if self._out is None:
            return None
        return self._links.frames.open(self._peer, self._seq, self._wire, self._out)


class Links:
    """One process's links to every other process of the run."""

    def __init__(
        self,
        *,
        rank: int,
        size: int,
        frames: Frames | None = None,
        names: Sequence[str] = (),
    ) -> None:
        self.rank = rank
        self.size = size
        self.frames = frames or PlainFrames()
        self.names = tuple(names)
        #: payload bytes and messages, whatever the codec (outside CrypTen's counters)
        self.sent_bytes = self.received_bytes = self.sent_messages = 0
        #: per peer, the sequence number of the next message posted each way;
        #: the codec's nonces (both ends post in the same order)
        self._next_send: Counter[int] = Counter()
        self._next_recv: Counter[int] = Counter()

    # ------------------------------------------------------ naming --
    def describe(self, peer: int) -> str:
        return describe(peer, self.names)

    def lost(self, peer: int, error: BaseException) -> PeerLost:
        """The error for a message to or from ``peer`` that failed with ``error``.

        When ``peer`` closed its links because it had lost another party
        first (its notice, ``notices.py``), the error names that party.
        """
        text = str(error)
        if "closed" in text.lower() or "reset" in text.lower():
            why = "its connection closed (the process stopped or crashed)"
            first = notices.read(peer, wait_s=notices.NOTICE_WAIT_S)
            if first is not None and first not in (peer, self.rank):
                return PeerLost(
                    f"lost {self.describe(first)}: {self.describe(peer)} stopped after losing "
                    "it, and its connection closed",
                    peer=peer,
                    lost_first=first,
                )
        elif "timed out" in text.lower() or "timeout" in text.lower():
            why = "it sent nothing within the collective timeout ([launch] collective_timeout)"
        else:
            why = f"the transport failed ({text.splitlines()[0][:200] if text else 'no detail'})"
        return PeerLost(f"lost the link to {self.describe(peer)}: {why}", peer=peer)

    # ------------------------------------------------ point to point --
    def post_send(self, peer: int, payload: torch.Tensor) -> Pending:
        seq = self._next_send[peer]
        self._next_send[peer] += 1
        wire = self.frames.seal(peer, seq, payload)
        self.sent_bytes += payload.nelement() * payload.element_size()
        self.sent_messages += 1
        try:
            work = dist.isend(wire, dst=peer)
        except RuntimeError as error:
            raise self.lost(peer, error) from None
        return Pending(self, peer, seq, work, wire, None)

    def post_recv(self, peer: int, out: torch.Tensor) -> Pending:
        """Post a receive of a payload shaped like ``out``; ``wait()`` fills and returns ``out``."""
        seq = self._next_recv[peer]
        self._next_recv[peer] += 1
        wire = self.frames.buffer(peer, out)
        self.received_bytes += out.nelement() * out.element_size()
        try:
            work = dist.irecv(wire, src=peer)
        except RuntimeError as error:
            raise self.lost(peer, error) from None
        return Pending(self, peer, seq, work, wire, out)

    def send(self, peer: int, payload: torch.Tensor) -> None:
        self.post_send(peer, payload).wait()

    def recv(self, peer: int, out: torch.Tensor) -> torch.Tensor:
        return self.post_recv(peer, out).wait()

    def send_bytes(self, peer: int, data: bytes) -> None:
        """Send ``data`` (an int64 length, then the bytes)."""
        length, body = _bytes_tensors(data)
        pending = [self.post_send(peer, length), self.post_send(peer, body)]
        for message in pending:
            message.wait()

    def recv_bytes(self, peer: int, *, limit: int) -> bytes:
        """Receive one bytes message; a declared length outside ``1..limit`` aborts."""
        length = self.recv(peer, torch.zeros(_LENGTH.size, dtype=torch.uint8))
        declared = self._declared(peer, length, limit)
        body = self.recv(peer, torch.empty(declared, dtype=torch.uint8))
        return body.numpy().tobytes()

    # ------------------------------------------------------- objects --
    # JSON and raw bytes (``objects.py``), never a pickle; a message that does
    # not parse aborts, naming its sender.
    def send_obj(self, obj: Any, *peers: int) -> None:
        """Send ``obj`` to each of ``peers`` (encoded once)."""
        data = objects.encode(obj)
        for peer in peers:
            self.send_bytes(peer, data)

    def recv_obj(self, peer: int) -> Any:
        """One object message from ``peer``, parsed."""
        return self._decode(self.recv_bytes(peer, limit=objects.MAX_OBJECT_BYTES), peer)

    def all_gather_obj(self, obj: Any, members: Sequence[int]) -> list[Any]:
        """Every member sends ``obj`` to every other; all get all, in ``members`` order."""
        received = self.all_gather_bytes(
            objects.encode(obj), members, limit=objects.MAX_OBJECT_BYTES
        )
        return [
            obj if m == self.rank else self._decode(data, m)
            for m, data in zip(members, received, strict=True)
        ]

    def _decode(self, data: bytes, peer: int) -> Any:
        try:
            return objects.decode(data)
        except objects.MalformedObject as e:
            raise ProtocolAbort(
                f"{self.describe(peer)} sent a malformed object message: {e}; secure_ml parses "
                "object messages as JSON and never unpickles them, so nothing it sent was run. "
                "Every party must run secure_ml (same version)"
            ) from None

    # ------------------------------------------------------ patterns --
    def exchange(self, payload: torch.Tensor, members: Sequence[int]) -> list[torch.Tensor]:
        """Send ``payload`` to every other member; every member's payload, in ``members`` order."""
        others = [m for m in members if m != self.rank]
        received = self._transfer({m: payload for m in others}, {m: payload for m in others})
        received[self.rank] = payload
        return [received[m] for m in members]

    def collect(
        self, payload: torch.Tensor, dst: int, members: Sequence[int]
    ) -> list[torch.Tensor] | None:
        """Every member sends ``payload`` to ``dst`` only; ``dst`` gets all, by ``members``."""
        if self.rank != dst:
            self._transfer({dst: payload}, {})
            return None
        others = [m for m in members if m != dst]
        received = self._transfer({}, {m: payload for m in others})
        received[self.rank] = payload
        return [received[m] for m in members]

    def all_reduce(
        self, payload: torch.Tensor, members: Sequence[int], combine: Combine, *, direct: bool
    ) -> torch.Tensor:
        """Every member's payloads combined (a new tensor), delivered to every member.

        ``direct``: one exchange (one step); otherwise a reduce-scatter then
        an all-gather (two steps, less traffic per member on large tensors).
        """
        if direct:
            return combine_all(self.exchange(payload, members), combine)
        return self._reduce_scatter_all_gather(payload, list(members), combine)

    def _reduce_scatter_all_gather(
        self, payload: torch.Tensor, members: list[int], combine: Combine
    ) -> torch.Tensor:
        """Member ``i`` combines slice ``i`` and sends it on, chunk by chunk (pipelined).

        Every receive and every first-step send is posted at once; each chunk
        of this member's slice is combined as soon as the other members' copies
        of it arrive and is sent on at once, while later chunks still travel.
        Between two members, messages are posted in the same order on both
        sides: first-step chunks, then second-step chunks.
        """
        me, chunk = members.index(self.rank), PIPELINE_CHUNK_ELEMENTS
        others = [m for m in members if m != self.rank]
        slices = payload.tensor_split(len(members))
        out = torch.empty_like(payload)
        parts = out.tensor_split(len(members))
        copies = {m: torch.empty_like(slices[me]) for m in others}
        arriving = {m: [self.post_recv(m, c) for c in copies[m].split(chunk)] for m in others}
        gathering = [
            self.post_recv(m, c) for i, m in enumerate(members) if m != self.rank
            for c in parts[i].split(chunk)
        ]  # fmt: skip
        sent = [
            self.post_send(m, c) for i, m in enumerate(members) if m != self.rank
            for c in slices[i].split(chunk)
        ]  # fmt: skip
        for j, (own, total) in enumerate(
            zip(slices[me].split(chunk), parts[me].split(chunk), strict=True)
        ):
            total.copy_(own)
            for m in others:
                combine(total, arriving[m][j].wait(), out=total)
            sent += [self.post_send(m, total) for m in others]
        for message in gathering + sent:
            message.wait()
        return out

    def swap(self, payloads: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Send ``payloads[peer]`` to each peer; get one payload of the same shape from each."""
        return self._transfer(payloads, payloads)

    def broadcast(self, tensor: torch.Tensor, src: int, members: Sequence[int]) -> torch.Tensor:
        """``src`` sends ``tensor`` to every other member; receivers get it in ``tensor``."""
        if self.rank == src:
            self._transfer({m: tensor for m in members if m != src}, {})
            return tensor
        return self.recv(src, tensor)

    def barrier(self, members: Sequence[int]) -> None:
        """Return once every member has reached its barrier (one empty-ish exchange)."""
        self.exchange(torch.zeros(1, dtype=torch.uint8), members)

    def all_gather_bytes(self, data: bytes, members: Sequence[int], *, limit: int) -> list[bytes]:
        """Every member sends ``data`` to every other; all get all, in ``members`` order."""
        others = [m for m in members if m != self.rank]
        length, body = _bytes_tensors(data)
        lengths = self._transfer(
            {m: length for m in others}, {m: torch.empty_like(length) for m in others}
        )
        declared = {m: self._declared(m, t, limit) for m, t in lengths.items()}
        bodies = self._transfer(
            {m: body for m in others},
            {m: torch.empty(n, dtype=torch.uint8) for m, n in declared.items()},
            fresh=False,
        )
        bodies[self.rank] = body
        return [bodies[m].numpy().tobytes() for m in members]

    def _declared(self, peer: int, length: torch.Tensor, limit: int) -> int:
        (declared,) = _LENGTH.unpack(length.numpy().tobytes())
        if not 0 < declared <= limit:
            raise ProtocolAbort(
                f"{self.describe(peer)} announced a message of {declared} bytes (allowed: "
                f"1 to {limit}); stopping instead of waiting for it"
            )
        return declared

    def _transfer(
        self,
        sends: dict[int, torch.Tensor],
        receives: dict[int, torch.Tensor],
        *,
        fresh: bool = True,
    ) -> dict[int, torch.Tensor]:
        """Post every receive and send before any wait: no party can block another.

        ``receives`` maps a peer to a tensor shaped like its payload; with
        ``fresh`` a new buffer is received into, otherwise that tensor itself.
        """
        outs = {
            peer: torch.empty_like(like, memory_format=torch.contiguous_format) if fresh else like
            for peer, like in receives.items()
        }
        pending = {peer: self.post_recv(peer, out) for peer, out in outs.items()}
        sent = [self.post_send(peer, payload) for peer, payload in sends.items()]
        received = {peer: message.wait() for peer, message in pending.items()}
        for message in sent:
            message.wait()
        return received


def _bytes_tensors(data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    length = torch.frombuffer(bytearray(_LENGTH.pack(len(data))), dtype=torch.uint8)
    if not data:  # torch.frombuffer refuses an empty buffer
        return length, torch.empty(0, dtype=torch.uint8)
    return length, torch.frombuffer(bytearray(data), dtype=torch.uint8)


def combine_all(payloads: Sequence[torch.Tensor], combine: Combine) -> torch.Tensor:
    """The payloads combined into a new tensor (the payloads stay untouched)."""
    if len(payloads) == 1:
        return payloads[0].clone()
    total = combine(payloads[0], payloads[1])
    for payload in payloads[2:]:
        total = combine(total, payload, out=total)
    return total


def join(
    *,
    rank: int,
    size: int,
    rendezvous: str,
    timeout_s: float,
    frames: Frames | None = None,
    names: Sequence[str] = (),
    backend: str = "gloo",
    startup_timeout_s: float | None = None,
) -> Links:
    """Join the run's process group (every process, CrypTen's or not); return the links.

    The start-up wait (``rendezvous.meet``, bounded by ``startup_timeout_s``,
    default ``timeout_s``) names any process that never arrived; ``timeout_s``
    bounds every later wait. No crypten here: a process outside CrypTen's
    world calls only this.
    """
    from datetime import timedelta

    from secure_ml.transport.rendezvous import meet

    if dist.is_initialized():
        raise RuntimeError("this process already joined a run's process group")
    startup = timeout_s if startup_timeout_s is None else startup_timeout_s
    store = meet(rendezvous, rank=rank, size=size, names=tuple(names), timeout_s=startup)
    store.set_timeout(timedelta(seconds=timeout_s))
    dist.init_process_group(
        backend=backend,
        store=store,
        world_size=size,
        rank=rank,
        timeout=timedelta(seconds=timeout_s),
    )
    return Links(rank=rank, size=size, frames=frames, names=names)


def leave() -> None:
    """Leave the process group (local: no message is sent)."""
    if dist.is_initialized():
        dist.destroy_process_group()
