"""Lost-party notices: so every survivor names the party that was lost first.

Across hosts nobody watches the processes; each learns of a failure from its
own links. When party Z dies, hangs or is cut off, the parties waiting on Z
time out or see its connection close and name Z. But a party that was waiting
on one of them sees only that *that* party closed its connections. So a
process that stops because it lost a peer first leaves a notice in the run's
rendezvous store (the one every process already met in): the rank of the
party lost first. A process that loses the link to a party that left a notice
names the party in the notice.

What a notice holds: two ranks (who left it, whom it lost); never a value, a
share or an error text. The store is not authenticated: a forged notice can
only change which party an error message names. Every store call here is
bounded (``STORE_WAIT_S``): when the lost party hosted the store, reads fail
fast and the message names the party whose link broke.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

STORE_WAIT_S = 2.0
_KEY = "secure_ml/lost-first/{rank}"


@contextmanager
def _store():
    """The run's store with a short timeout (the usual one is restored after)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        yield None
        return
    store = dist.distributed_c10d._get_default_store()
    usual = store.timeout
    store.set_timeout(timedelta(seconds=STORE_WAIT_S))
    try:
        yield store
    finally:
        store.set_timeout(usual)


def leave(rank: int, lost_first: int) -> None:
    """Say that process ``rank`` stops because it lost ``lost_first`` (best effort)."""
    try:
        with _store() as store:
            if store is not None:
                store.set(_KEY.format(rank=rank), str(lost_first))
    except Exception:  # the store's host may be the lost party: the notice is a courtesy
        pass


def read(rank: int) -> int | None:
    """The rank that process ``rank`` said it lost first, or None (no notice, or no store)."""
    key = _KEY.format(rank=rank)
    try:
        with _store() as store:
            if store is None or not store.check([key]):
                return None
            return int(store.get(key).decode())
    except Exception:  # unreachable store or a malformed notice: name the broken link
        return None
