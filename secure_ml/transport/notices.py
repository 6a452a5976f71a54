"""Lost-party notices: so every survivor names the party that was lost first.

Across hosts nobody watches the processes; each learns of a failure from its
own links. When party Z dies, hangs or is cut off, the parties waiting on Z
time out or see its connection close and name Z. But a party that was waiting
on one of them sees only that *that* party closed its connections. So a
process that stops because it lost a peer first leaves a notice in the run's
rendezvous store (the one every process already met in): the rank of the
party lost first. A process that loses the link to a party that left a notice
names the party in the notice.

The store lives in rank 0's process (``tcp://`` rendezvous). When rank 0 is
the one leaving a notice, its peers would learn of it only when its
connections close, and by then its store would be gone with it. So rank 0
first closes its links (its peers see the connections close), then keeps the
store up for ``LINGER_S`` so they can read the notice, then exits.

What a notice holds: two ranks (who left it, whom it lost); never a value, a
share or an error text. The store is not authenticated: a forged notice can
only change which party an error message names. Every store call here is
bounded (``STORE_WAIT_S``): when the lost party hosted the store, reads fail
fast and the message names the party whose link broke.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

STORE_WAIT_S = 2.0
#: how long a process that saw a peer's connection close waits for its notice
NOTICE_WAIT_S = 1.0
#: how long rank 0 keeps the store up after a loss, for the others to read its notice
#: (they read as soon as its connections close, each read bounded by STORE_WAIT_S)
LINGER_S = STORE_WAIT_S + 1.0
_KEY = "secure_ml/lost-first/{rank}"


class NoAnswer(Exception):
    """The store did not answer in time (or there is none)."""


def bounded(call: Callable[[Any], Any], wait_s: float = STORE_WAIT_S, store: Any = None) -> Any:
    """``call(store)`` on the run's store (or ``store``), given up after ``wait_s``.

    A stopped or unplugged store host never answers, and TCPStore's socket
    reads have no timeout of their own (its timeout bounds only waits for
    keys). So the call runs in a daemon thread that this one stops waiting
    for; a thread stuck on a dead host is left behind, harmless.
    """
    import torch.distributed as dist

    if store is None:
        if not dist.is_initialized():
            raise NoAnswer("no store")
        store = dist.distributed_c10d._get_default_store()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call(store)
        except Exception as error:  # the caller only needs "no answer"
            outcome["error"] = error

    thread = threading.Thread(target=run, name="secure-ml-store", daemon=True)
    thread.start()
    thread.join(wait_s)
    if "value" not in outcome:
        raise NoAnswer("the store did not answer")
    return outcome["value"]


def leave(rank: int, lost_first: int) -> None:
    """Say that process ``rank`` stops because it lost ``lost_first`` (best effort)."""
    # the store's host may be the lost party: the notice is a courtesy
    with contextlib.suppress(NoAnswer):
        bounded(lambda store: store.set(_KEY.format(rank=rank), str(lost_first)))


def read(rank: int, *, wait_s: float = 0.0) -> int | None:
    """The rank that process ``rank`` said it lost first, or None (no notice, or no store).

    ``wait_s``: how long to wait for a notice still to come. A peer's gloo
    closes its connections as soon as it times out, a moment before the peer
    gets to write its notice.
    """
    key = _KEY.format(rank=rank)
    deadline = time.monotonic() + wait_s
    try:
        while not bounded(lambda store: store.check([key])):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return int(bounded(lambda store: store.get(key)).decode())
    except (NoAnswer, ValueError):  # no store, or a malformed notice: name the broken link
        return None


def store_answers() -> bool:
    """Whether the run's store answers within ``STORE_WAIT_S`` (False without a store)."""
    try:
        bounded(lambda store: store.check([_KEY.format(rank=0)]))
        return True
    except NoAnswer:
        return False


def linger_as_store_host(rank: int, rendezvous: str) -> None:
    """Rank 0 of a ``tcp://`` run: close the links, keep the store up a while (see above)."""
    import torch.distributed as dist

    if rank != 0 or not rendezvous.startswith("tcp://") or not dist.is_initialized():
        return
    store = dist.distributed_c10d._get_default_store()  # keeps the server alive
    try:
        dist.destroy_process_group()  # gloo's pairs close: peers stop waiting on us
    except Exception:  # leaving anyway: the notice is a courtesy
        return
    time.sleep(LINGER_S)
    del store
