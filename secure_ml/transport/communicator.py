"""Our CrypTen communicator: CrypTen's ``DistributedCommunicator`` on our links.

CrypTen's own communicator calls ``init_process_group`` and ``new_group``
without a timeout (gloo waits 30 minutes for a peer that died), reads its
configuration from environment variables, opens shares with gloo's
collectives and pickles objects. This subclass keeps CrypTen's interface and
counters and carries every call over the process's ``Links``
(``secure_ml/transport/links.py``): point-to-point messages that each pass the
run's ``Frames`` codec. There are no gloo subgroups and no gloo collectives:
CrypTen's ``main_group`` (the compute parties), ``ttp_group`` (compute parties
and the dealer) and ``ttp_comm_group`` (party 0 and the dealer) are plain sets
of ranks that say who takes part in a call.

Openings travel two ways. An opening to ONE party (``reduce``: ``reveal``
and ``get_plain_text(dst=...)``; ``gather``: CrypTen's truncation with three
or more parties) sends each party's share to that party and to nobody else,
whatever the tensor's size or dtype and whatever the ``[mpc]`` switches (gloo's
``reduce`` is a reduce-scatter followed by a gather that would leave every
other rank a reduced slice of the value). An opening to EVERYONE
(``all_reduce``, ``all_gather``) shows no party more than the value itself:
with ``p2p_open`` (the default) tensors up to ``DIRECT_MAX_ELEMENTS`` take one
direct exchange (one step), larger ones a reduce-scatter and all-gather over
the links; with ``p2p_open = false`` every opening to everyone takes the
two-step path, as a collective would. A batched opening (a list of tensors)
travels as one message per link instead of one collective per tensor.

Everything is counted in CrypTen's convention, so the numbers compare with raw
CrypTen's: one round per call, 8 bytes an element, each party counting the
elements it sends plus those it receives (an opening to one party counts
``n - 1`` tensors at the receiver and one at each sender, as CrypTen counts
``reduce``). Object messages count the bytes that travel (CrypTen counts
``sys.getsizeof``, the top-level container only).

Object messages (shapes, dealer requests, announcements, a model's ONNX graph)
are never pickled: ``send_obj``, ``recv_obj`` and ``broadcast_obj`` carry the
links' JSON-and-bytes messages (``secure_ml.transport.objects``), and a message
from a peer that does not parse raises ``ProtocolAbort`` naming that peer.

Ranks: the compute parties are ``0..world_size-1``; when a dealer (TTP) takes
part it is rank ``world_size``, as in CrypTen. Processes outside CrypTen's
world (higher ranks) share the links but never this communicator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

from secure_ml.compat import load_crypten
from secure_ml.errors import ProtocolAbort
from secure_ml.transport.links import DIRECT_MAX_ELEMENTS, Links, combine_all

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """Who takes part in a call (CrypTen passes its groups around; no gloo subgroup)."""

    name: str
    members: tuple[int, ...]


def _communicator_class() -> type:
    crypten = load_crypten()
    base = crypten.communicator.DistributedCommunicator

    class SecureMLCommunicator(base):
        """CrypTen communicator over our links (see the module docstring)."""

        def __init__(
            self, *, links: Links, world_size: int, with_dealer: bool, name: str, p2p_open: bool
        ) -> None:
            # CrypTen's __init__ is skipped on purpose: it reads the environment
            # and initialises process groups without timeouts.
            self.links = links
            self.rank = links.rank
            self.world_size = world_size
            self.distributed_backend = "gloo"
            self.reset_communication_stats()
            self._name = name
            compute = tuple(range(world_size))
            with_ttp = compute + ((world_size,) if with_dealer else ())
            self.main_group = Group("main", compute)
            self.ttp_group = Group("ttp", with_ttp)
            self.ttp_comm_group = Group("ttp_comm", (0, world_size) if with_dealer else (0,))
            self.ttp_initialized = with_dealer
            #: openings to everyone: one direct exchange when small (True), or
            #: always the two-step reduce-scatter/all-gather (False)
            self.p2p_open = p2p_open

        @classmethod
        def shutdown(cls) -> None:
            instance = cls.instance
            if instance.rank == 0 and instance.ttp_initialized:
                instance.send_obj("terminate", instance.get_ttp_rank(), instance.ttp_group)
            cls.instance = None

        def get_rank(self) -> int:
            return self.rank

        def get_distributed_backend(self) -> str:
            return self.distributed_backend

        # ---------------------------------------------- point to point --
        # CrypTen's replicated sharing and seed set-up; within the compute parties.
        def send(self, tensor, dst):
            self._count(tensor.nelement())
            self.links.send(dst, tensor.data)

        def recv(self, tensor, src=None):
            self._count(tensor.nelement())
            if src is None:
                raise ProtocolAbort("a receive must name its sender (no wildcard receives)")
            return self.links.recv(src, torch.empty_like(tensor.data))

        def isend(self, tensor, dst):
            self._count(tensor.nelement())
            return self.links.post_send(dst, tensor.data)

        def irecv(self, tensor, src=None):
            self._count(tensor.nelement())
            if src is None:
                raise ProtocolAbort("a receive must name its sender (no wildcard receives)")
            return self.links.post_recv(src, tensor.data)

        def scatter(self, scatter_list, src, size=None, device=None):
            # TFP: party 0 deals one share to each party
            members = self.main_group.members
            if self.rank == src:
                self._count(sum(t.nelement() for i, t in enumerate(scatter_list) if i != src))
                for peer in members:
                    if peer != src:
                        self.links.send(peer, scatter_list[peer])
                return scatter_list[src]
            out = torch.empty(size, dtype=torch.long, device=device)
            self._count(out.nelement())
            return self.links.recv(src, out)

        def broadcast(self, input, src, group=None, batched=False):
            members = self._members(group)
            tensors = input if batched else [input]
            n = sum(t.nelement() for t in tensors)
            self._count(n * (len(members) - 1) if src == self.rank else n)
            for tensor in tensors:  # received in place, as CrypTen expects
                self.links.broadcast(tensor.data, src, members)
            return input

        def barrier(self):
            self._count(0)
            self.links.barrier(self.main_group.members)

        # ------------------------------------------------ opening shares --
        # To everyone (all_reduce, all_gather): every party learns the value, so
        # no path can show a party more than that. CrypTen opens this way only
        # values masked by a dealer's random tuple (Beaver: x - a and y - b;
        # square: x - r; B2A: x ^ r; AND: x ^ a and y ^ b), which are uniformly
        # random, and what a caller asks to open to all (get_plain_text()
        # without dst).
        #
        # To one party (reduce, gather): only to ``dst``, whatever the size,
        # dtype or switch. reveal() opens through reduce.
        def all_reduce(self, input, op=dist.ReduceOp.SUM, batched=False):
            self._compute_party("all_reduce")
            combine = _combiner(op, "open a value to every party")
            flat, shapes = _flatten(input, batched)
            members = self.main_group.members
            direct = self.p2p_open and flat.nelement() <= DIRECT_MAX_ELEMENTS
            me = members.index(self.rank)
            self._count(_all_reduce_elements(flat.nelement(), len(members), me, direct=direct))
            opened = self.links.all_reduce(flat, members, combine, direct=direct)
            return _unflatten(opened, shapes, batched)

        def reduce(self, input, dst, op=dist.ReduceOp.SUM, batched=False):
            if self.world_size < 2:
                return input  # CrypTen's convention: the only party holds the value
            self._compute_party(f"reduce(dst={dst})")
            combine = _combiner(op, f"open a value to party {dst}")
            flat, shapes = _flatten(input, batched)
            members = self.main_group.members
            self._count((len(members) - 1 if dst == self.rank else 1) * flat.nelement())
            payloads = self.links.collect(flat, dst, members)
            if payloads is None:
                return None
            return _unflatten(combine_all(payloads, combine), shapes, batched)

        def gather(self, tensor, dst):
            # CrypTen's truncation with 3+ parties (beaver.wraps) gathers the
            # shares of x + r at party 0, r a dealer's random mask unknown to
            # party 0: it learns x + r and each party's share of it, all random.
            if self.world_size < 2:
                return [tensor]
            self._compute_party(f"gather(dst={dst})")
            members = self.main_group.members
            self._count((len(members) - 1 if dst == self.rank else 1) * tensor.nelement())
            payloads = self.links.collect(tensor.contiguous(), dst, members)
            return [None] if payloads is None else payloads

        def all_gather(self, tensor):
            # No CrypTen protocol we run calls it; every party gets every share.
            if self.world_size < 2:
                return [tensor]
            self._compute_party("all_gather")
            members = self.main_group.members
            self._count(2 * (len(members) - 1) * tensor.nelement())
            return self.links.exchange(tensor.contiguous(), members)

        def _compute_party(self, call: str) -> None:
            if self.rank >= self.world_size:
                raise ProtocolAbort(
                    f"rank {self.rank} is not a compute party and cannot take part in "
                    f"{call}; only the compute parties hold shares"
                )

        def _members(self, group) -> tuple[int, ...]:
            if group is None:
                return self.main_group.members
            if not isinstance(group, Group):
                raise ProtocolAbort(f"unknown process group {group!r}: use the communicator's")
            return group.members

        def _count(self, nelement: float) -> None:
            if crypten.cfg.communicator.verbose:
                self._log_communication(nelement)

        # ------------------------------------------------------ objects --
        # The links' object messages (JSON and raw bytes, length-prefixed);
        # counted as the bytes that travel, one round per message.
        def send_obj(self, obj, dst, group=None):
            sent = self.links.sent_bytes
            self.links.send_obj(obj, dst)
            self._count_bytes(self.links.sent_bytes - sent)

        def recv_obj(self, src, group=None):
            received = self.links.received_bytes
            obj = self.links.recv_obj(src)
            self._count_bytes(self.links.received_bytes - received)
            return obj

        def broadcast_obj(self, obj, src, group=None):
            if self.rank != src:
                return self.recv_obj(src)
            sent = self.links.sent_bytes
            self.links.send_obj(obj, *(m for m in self._members(group) if m != src))
            self._count_bytes(self.links.sent_bytes - sent)
            return obj

        def _count_bytes(self, nbytes: int) -> None:
            # CrypTen logs 8-byte elements; a fraction keeps the byte count exact
            if crypten.cfg.communicator.verbose:
                self._log_communication(nbytes / self.BYTES_PER_ELEMENT)

    return SecureMLCommunicator


_COMBINE = {
    dist.ReduceOp.SUM: torch.add,  # arithmetic shares; int64 wraps like Z_2^64
    dist.ReduceOp.BXOR: torch.bitwise_xor,  # binary shares
}


def _combiner(op, what: str):
    if op not in _COMBINE:
        raise ProtocolAbort(
            f"cannot {what} with {op}: only SUM (arithmetic) and BXOR (binary) shares "
            "combine on the links"
        )
    return _COMBINE[op]


def _all_reduce_elements(nelement: int, members: int, me: int, *, direct: bool) -> int:
    """Elements party ``me`` (its index among ``members``) sends plus receives."""
    if direct:  # its share to each of the others, and theirs
        return 2 * (members - 1) * nelement
    # reduce-scatter: it sends the slices it does not own and receives its own
    # slice from each other member; all-gather: the reverse. With 2 parties
    # exactly CrypTen's 2 * nelement for all_reduce. Slices as tensor_split's.
    base, extra = divmod(nelement, members)
    own = base + (1 if me < extra else 0)
    return 2 * (nelement - own) + 2 * (members - 1) * own


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


def connect(
    *, links: Links, world_size: int, with_dealer: bool, name: str, p2p_open: bool = True
) -> object:
    """Create our communicator over ``links`` and install it as CrypTen's communicator."""
    crypten = load_crypten()
    registry = crypten.communicator.DistributedCommunicator
    if registry.is_initialized() and registry.instance is not None:
        raise RuntimeError("a CrypTen communicator is already running in this process")
    instance = _communicator_class()(
        links=links, world_size=world_size, with_dealer=with_dealer, name=name, p2p_open=p2p_open
    )
    registry.instance = instance
    return instance


def disconnect() -> None:
    """Uninstall CrypTen's communicator (party 0 also tells the dealer to stop)."""
    crypten = load_crypten()
    registry = crypten.communicator.DistributedCommunicator
    if registry.instance is not None:
        type(registry.instance).shutdown()
