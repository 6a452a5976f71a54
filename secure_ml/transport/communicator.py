"""Our CrypTen communicator: CrypTen's ``DistributedCommunicator`` with bounds.

CrypTen's own communicator calls ``init_process_group`` and ``new_group``
without a timeout, so gloo waits 30 minutes for a peer that died, and it reads
its configuration from environment variables. This subclass takes everything
as arguments and gives every process group CrypTen creates (the default group,
``main_group``, ``ttp_group`` and ``ttp_comm_group``) the same bounded timeout.
It is installed as CrypTen's communicator instance, so all of CrypTen's
collectives and its byte/round counters run through it.

Openings travel two ways. An opening to ONE party (``reduce``: ``reveal``
and ``get_plain_text(dst=...)``; ``gather``: CrypTen's truncation with three
or more parties) always goes point to point over ``PeerLinks``: each party
sends its share to that party and to nobody else, whatever the tensor's size
or dtype and whatever the ``[mpc]`` switches. It never uses gloo's ``reduce``,
a reduce-scatter followed by a gather that leaves every other rank a fully
reduced slice of the value. An opening to EVERYONE (``all_reduce``,
``all_gather``) shows no party more than the value itself, so it takes the
faster path: with ``p2p_open`` (the default) one point-to-point exchange for
tensors up to ``P2P_MAX_ELEMENTS``, gloo's collectives for larger ones or with
``p2p_open = false``. On the links a batched opening (a list of tensors)
travels as one message per link instead of one collective per tensor.

Both ways are counted in CrypTen's own convention, so the numbers compare with
raw CrypTen's: one round per opening, 8 bytes an element; an opening to one
party counts ``n - 1`` tensors at the receiver and one at each sender (as
CrypTen counts ``reduce``), a point-to-point exchange counts what a party
sends plus what it receives.

Object messages (shapes, dealer requests, announcements, a model's ONNX graph)
are never pickled: ``send_obj``, ``recv_obj``, ``broadcast_obj`` and
``all_gather_obj`` carry the JSON-and-bytes format of
``secure_ml.transport.objects``, and a message from a peer that does not parse
raises ``ProtocolAbort`` naming that peer.

Ranks: the compute parties are ``0..world_size-1``; when a dealer (TTP) takes
part it is rank ``world_size`` and the default group has ``world_size + 1``
ranks, as in CrypTen.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import torch
import torch.distributed as dist

from secure_ml.compat import load_crypten
from secure_ml.errors import ProtocolAbort
from secure_ml.transport import objects
from secure_ml.transport.links import PeerLinks

#: openings to everyone up to this many elements go over the links (openings
#: to one party always do, whatever their size). Measured on loopback
#: (2 cores): at 256-32K elements one exchange takes ~0.3-0.4 ms with 2 parties
#: and ~1.2 ms with 3, gloo's all_reduce ~1.0 and ~2.5 ms; from 64K elements on
#: the all_reduce wins (1M elements, 2 parties: ~6 ms against ~12 ms).
P2P_MAX_ELEMENTS = 1 << 15

log = logging.getLogger(__name__)


def _communicator_class() -> type:
    crypten = load_crypten()
    base = crypten.communicator.DistributedCommunicator

    class SecureMLCommunicator(base):
        """CrypTen communicator with bounded timeouts on every process group."""

        def __init__(
            self,
            *,
            rank: int,
            world_size: int,
            rendezvous: str,
            with_dealer: bool,
            timeout_s: float,
            name: str,
            p2p_open: bool = True,
            backend: str = "gloo",
        ) -> None:
            # CrypTen's __init__ is skipped on purpose: it reads the environment
            # and initialises process groups without timeouts.
            self.rank = rank
            self.world_size = world_size
            self.rendezvous = rendezvous
            self.distributed_backend = backend
            self.reset_communication_stats()
            self._name = name
            timeout = timedelta(seconds=timeout_s)
            total = world_size + 1 if with_dealer else world_size
            dist.init_process_group(
                backend=backend,
                init_method=rendezvous,
                world_size=total,
                rank=rank,
                timeout=timeout,
            )
            # Every rank must create every group, in the same order (CrypTen's).
            self.ttp_group = dist.new_group(list(range(total)), timeout=timeout)
            if total > 1:
                self.ttp_comm_group = dist.new_group([0, total - 1], timeout=timeout)
            self.main_group = dist.new_group(list(range(world_size)), timeout=timeout)
            self.ttp_initialized = with_dealer
            #: openings to everyone take the links (True) or gloo's collectives
            self.p2p_open = p2p_open
            # Every compute party has links, whatever p2p_open says: an opening
            # to one party always takes them (see reduce).
            self.links = None
            if rank < world_size and world_size > 1:
                self.links = PeerLinks(rank=rank, world_size=world_size, group=self.main_group)
            log.debug("process groups ready: rank %d of %d", rank, total)

        # ------------------------------------------------ opening shares --
        # To everyone (all_reduce, all_gather): every party learns the value, so
        # no path can show a party more than that; p2p_open and the size choose
        # the faster one. CrypTen opens this way only values masked by a
        # dealer's random tuple (Beaver: x - a and y - b; square: x - r; B2A:
        # x ^ r; AND: x ^ a and y ^ b), which are uniformly random, and what a
        # caller asks to open to all (get_plain_text() without dst).
        #
        # To one party (reduce, gather): always over the links, only to ``dst``,
        # whatever the size, dtype or switch. gloo's reduce is a reduce-scatter
        # followed by a gather: it would leave every other rank a fully reduced
        # slice of the value. reveal() opens through reduce.
        def all_reduce(self, input, op=dist.ReduceOp.SUM, batched=False):
            if not self._p2p(input, op):
                return super().all_reduce(input, op=op, batched=batched)
            flat, shapes = _flatten(input, batched)
            self._count(2 * len(self.links.peers) * flat.nelement())
            opened = _combine(self.links.exchange(flat), op)
            return _unflatten(opened, shapes, batched)

        def reduce(self, input, dst, op=dist.ReduceOp.SUM, batched=False):
            if self.world_size < 2:
                return input  # CrypTen's convention: the only party holds the value
            links = self._links_to_one("reduce", dst)
            if op not in _COMBINE:
                raise ProtocolAbort(
                    f"cannot open a value to party {dst} with {op}: only SUM (arithmetic) "
                    "and BXOR (binary) shares combine point to point, and gloo's reduce "
                    "would leave slices of the value at the other parties"
                )
            flat, shapes = _flatten(input, batched)
            self._count((len(links.peers) if dst == self.rank else 1) * flat.nelement())
            payloads = links.collect(flat, dst)
            if payloads is None:
                return None
            return _unflatten(_combine(payloads, op), shapes, batched)

        def gather(self, tensor, dst):
            # CrypTen's truncation with 3+ parties (beaver.wraps) gathers the
            # shares of x + r at party 0, r a dealer's random mask unknown to
            # party 0: it learns x + r and each party's share of it, all random.
            if self.world_size < 2:
                return [tensor]
            links = self._links_to_one("gather", dst)
            self._count((len(links.peers) if dst == self.rank else 1) * tensor.nelement())
            payloads = links.collect(tensor.contiguous(), dst)
            return [None] if payloads is None else payloads

        def all_gather(self, tensor):
            # No CrypTen protocol we run calls it; every party gets every share.
            if not self._p2p(tensor):
                return super().all_gather(tensor)
            self._count(2 * len(self.links.peers) * tensor.nelement())
            return self.links.exchange(tensor.contiguous())

        def _p2p(self, input, op=None) -> bool:
            """Whether an opening to everyone goes over the links (``op``: how payloads combine)."""
            if not self.p2p_open or self.links is None:
                return False
            if op is not None and op not in _COMBINE:
                return False
            tensors = input if isinstance(input, list) else [input]
            if any(t.dtype != torch.long for t in tensors):
                return False  # shares are int64; anything else keeps CrypTen's path
            return sum(t.nelement() for t in tensors) <= P2P_MAX_ELEMENTS

        def _links_to_one(self, call: str, dst: int) -> PeerLinks:
            """The links of an opening to ``dst`` alone (there is no other path)."""
            if self.links is None:
                raise ProtocolAbort(
                    f"rank {self.rank} is not a compute party and cannot take part in "
                    f"{call}(dst={dst}); only the compute parties hold shares"
                )
            return self.links

        def _count(self, nelement: int) -> None:
            if crypten.cfg.communicator.verbose:
                self._log_communication(nelement)

        # ------------------------------------------------------ objects --
        # CrypTen pickles objects (and unpickles what a peer sends); these carry
        # JSON and raw bytes instead (secure_ml.transport.objects). The framing
        # is CrypTen's: an int32 length, then that many bytes. Counted as the
        # bytes that travel (CrypTen counts sys.getsizeof, the top-level
        # container only), one round per message.
        peer_names: tuple[str, ...] = ()

        def send_obj(self, obj, dst, group=None):
            data = objects.encode(obj)
            length, payload = _object_tensors(data)
            group = self.main_group if group is None else group
            pending = [dist.isend(length, dst, group=group), dist.isend(payload, dst, group=group)]
            for request in pending:
                request.wait()
            self._count_bytes(len(data) + _LENGTH_BYTES)

        def recv_obj(self, src, group=None):
            group = self.main_group if group is None else group
            length = torch.zeros((), dtype=torch.int32)
            dist.irecv(length, src, group=group).wait()
            payload = torch.empty(self._declared(int(length), src), dtype=torch.uint8)
            dist.irecv(payload, src, group=group).wait()
            self._count_bytes(payload.nelement() + _LENGTH_BYTES)
            return self._decode(payload, src)

        def broadcast_obj(self, obj, src, group=None):
            group = self.main_group if group is None else group
            receivers = dist.get_world_size(group) - 1
            if self.rank == src:
                data = objects.encode(obj)
                length, payload = _object_tensors(data)
                dist.broadcast(length, src, group=group)
                dist.broadcast(payload, src, group=group)
                self._count_bytes(receivers * (len(data) + _LENGTH_BYTES))
                return obj
            length = torch.zeros((), dtype=torch.int32)
            dist.broadcast(length, src, group=group)
            payload = torch.empty(self._declared(int(length), src), dtype=torch.uint8)
            dist.broadcast(payload, src, group=group)
            self._count_bytes(payload.nelement() + _LENGTH_BYTES)
            return self._decode(payload, src)

        def all_gather_obj(self, obj) -> list:
            """Every process of the run (dealer included) sends ``obj``; all get all, by rank.

            Replaces torch's ``all_gather_object`` (which unpickles) with the
            same layout: an int64 length from each, then buffers padded to the
            longest.
            """
            data = objects.encode(obj)
            total = dist.get_world_size()
            lengths = [torch.zeros(1, dtype=torch.long) for _ in range(total)]
            dist.all_gather(lengths, torch.tensor([len(data)]))
            declared = [self._declared(int(n), r) for r, n in enumerate(lengths)]
            padded = torch.zeros(max(declared), dtype=torch.uint8)
            padded[: len(data)] = _object_tensors(data)[1]
            buffers = [torch.empty_like(padded) for _ in range(total)]
            dist.all_gather(buffers, padded)
            # like CrypTen's all_gather: each sends to and receives from every other
            self._count_bytes(2 * (total - 1) * (padded.nelement() + 8))
            return [
                obj if r == self.rank else self._decode(buffer[:n], r)
                for r, (buffer, n) in enumerate(zip(buffers, declared, strict=True))
            ]

        def _declared(self, length: int, peer: int) -> int:
            if 0 < length <= objects.MAX_OBJECT_BYTES:
                return length
            raise ProtocolAbort(
                f"{self._peer(peer)} announced an object message of {length} bytes (allowed: "
                f"1 to {objects.MAX_OBJECT_BYTES}); stopping instead of waiting for it"
            )

        def _decode(self, payload: torch.Tensor, peer: int):
            try:
                return objects.decode(payload.numpy().tobytes())
            except objects.MalformedObject as e:
                raise ProtocolAbort(
                    f"{self._peer(peer)} sent a malformed object message: {e}; secure_ml "
                    "parses object messages as JSON and never unpickles them, so nothing it "
                    "sent was run. Every party must run secure_ml (same version)"
                ) from None

        def _peer(self, rank: int) -> str:
            if rank < len(self.peer_names):
                return f"party {self.peer_names[rank]} (rank {rank})"
            return f"the party of rank {rank}"

        def _count_bytes(self, nbytes: int) -> None:
            # CrypTen logs 8-byte elements; a fraction keeps the byte count exact
            if crypten.cfg.communicator.verbose:
                self._log_communication(nbytes / self.BYTES_PER_ELEMENT)

        def broadcast(self, input, src, group=None, batched=False):
            result = super().broadcast(input, src, group=group, batched=batched)
            # CrypTen counts a broadcast as reaching world_size - 1 receivers, but
            # the dealer's ttp_comm_group has one (party 0): undo the excess.
            dealer_sent = src == self.get_rank() and group is getattr(self, "ttp_comm_group", None)
            if dealer_sent and self.world_size > 2 and crypten.cfg.communicator.verbose:
                n = sum(t.nelement() for t in input) if batched else input.nelement()
                self.comm_bytes -= (self.world_size - 2) * n * self.BYTES_PER_ELEMENT
            return result

    return SecureMLCommunicator


#: the int32 length that precedes every object message
_LENGTH_BYTES = 4


def _object_tensors(data: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """An object message as CrypTen frames it: its int32 length, then its bytes."""
    return torch.tensor(len(data), dtype=torch.int32), torch.frombuffer(
        bytearray(data), dtype=torch.uint8
    )


_COMBINE = {
    dist.ReduceOp.SUM: torch.add,  # arithmetic shares; int64 wraps like Z_2^64
    dist.ReduceOp.BXOR: torch.bitwise_xor,  # binary shares
}


def _flatten(input, batched: bool) -> tuple[torch.Tensor, list[torch.Size]]:
    tensors = input if batched else [input]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:  # torch.cat would silently promote some of the shares
        found = ", ".join(sorted(map(str, dtypes)))
        raise ProtocolAbort(f"a batched opening needs tensors of one dtype, got {found}")
    shapes = [t.shape for t in tensors]
    if len(tensors) == 1:  # a view, no copy: large openings are memory-bound
        return tensors[0].reshape(-1), shapes
    return torch.cat([t.reshape(-1) for t in tensors]), shapes


def _unflatten(flat: torch.Tensor, shapes: list[torch.Size], batched: bool):
    sizes = [s.numel() for s in shapes]
    parts = [p.reshape(s) for p, s in zip(flat.split(sizes), shapes, strict=True)]
    return parts if batched else parts[0]


def _combine(payloads: list[torch.Tensor], op) -> torch.Tensor:
    combine = _COMBINE[op]
    if len(payloads) == 1:
        return payloads[0].clone()
    total = combine(payloads[0], payloads[1])  # a new tensor: payloads stay untouched
    for payload in payloads[2:]:
        total = combine(total, payload, out=total)
    return total


def connect(
    *,
    rank: int,
    world_size: int,
    rendezvous: str,
    with_dealer: bool,
    timeout_s: float,
    name: str,
    p2p_open: bool = True,
    names: tuple[str, ...] = (),
) -> object:
    """Create our communicator and install it as CrypTen's communicator.

    ``names``: every process's party name by rank, so that errors about a
    peer's messages name it.
    """
    crypten = load_crypten()
    registry = crypten.communicator.DistributedCommunicator
    if registry.is_initialized():
        raise RuntimeError("a CrypTen communicator is already running in this process")
    instance = _communicator_class()(
        rank=rank,
        world_size=world_size,
        rendezvous=rendezvous,
        with_dealer=with_dealer,
        timeout_s=timeout_s,
        name=name,
        p2p_open=p2p_open,
    )
    instance.peer_names = tuple(names)
    registry.instance = instance
    return instance


def disconnect() -> None:
    """Tear down CrypTen's communicator (party 0 also tells the dealer to stop)."""
    crypten = load_crypten()
    if crypten.communicator.DistributedCommunicator.is_initialized():
        crypten.communicator.DistributedCommunicator.shutdown()
