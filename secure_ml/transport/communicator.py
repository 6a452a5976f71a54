"""Our CrypTen communicator: CrypTen's ``DistributedCommunicator`` with bounds.

CrypTen's own communicator calls ``init_process_group`` and ``new_group``
without a timeout, so gloo waits 30 minutes for a peer that died, and it reads
its configuration from environment variables. This subclass takes everything
as arguments and gives every process group CrypTen creates (the default group,
``main_group``, ``ttp_group`` and ``ttp_comm_group``) the same bounded timeout.
It is installed as CrypTen's communicator instance, so all of CrypTen's
collectives and its byte/round counters run through it.

Ranks: the compute parties are ``0..world_size-1``; when a dealer (TTP) takes
part it is rank ``world_size`` and the default group has ``world_size + 1``
ranks, as in CrypTen.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import torch.distributed as dist

from secure_ml.compat import load_crypten

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
            log.debug("process groups ready: rank %d of %d", rank, total)

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


def connect(
    *,
    rank: int,
    world_size: int,
    rendezvous: str,
    with_dealer: bool,
    timeout_s: float,
    name: str,
) -> object:
    """Create our communicator and install it as CrypTen's communicator."""
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
    )
    registry.instance = instance
    return instance


def disconnect() -> None:
    """Tear down CrypTen's communicator (party 0 also tells the dealer to stop)."""
    crypten = load_crypten()
    if crypten.communicator.DistributedCommunicator.is_initialized():
        crypten.communicator.DistributedCommunicator.shutdown()
