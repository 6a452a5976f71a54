"""Meeting the others: the run's store, and a start-up wait that names who is missing.

torch's own rendezvous waits for "clients" and, when one never comes, says
only how many arrived. Across hosts the user needs the name. So we open the
store ourselves (``tcp://host:port``: rank 0 hosts a ``TCPStore``;
``file://path``: a ``FileStore``), and, stage by stage:

1. each process connects to the store (rank 0 starts it); a process that
   cannot reach it within the start-up bound names rank 0, its host;
2. each process writes ``secure_ml/joined/<rank>`` (its rank only: the store
   is unauthenticated and readable by anyone who can reach it, so it never
   holds a secret; the channel handshake that follows proves identities);
3. each waits until every rank has written its key. Past the start-up
   bound, rank 0 writes which ranks never came and keeps the store up a
   moment (``LINGER_S``) so that every process names the same ones; a
   process whose store falls silent names rank 0, its host. Every store call
   is bounded (``notices.bounded``): a stopped host never answers.

Under torchrun, whose agent already hosts a store at ``MASTER_ADDR:MASTER_PORT``
(``TORCHELASTIC_USE_AGENT_STORE``), rank 0 joins that store as a client.

The process group is then built on this store. The start-up bound is the
collective timeout for every process, the dealer included (its later waits
may be longer: it idles while parties compute).
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from secure_ml.errors import PeerLost, SpecError
from secure_ml.transport.naming import describe
from secure_ml.transport.notices import LINGER_S, NoAnswer, bounded

_JOINED = "secure_ml/joined/{rank}"
_MISSING = "secure_ml/never-joined"
_POLL_S = 0.1


def meet(rendezvous: str, *, rank: int, size: int, names: tuple[str, ...], timeout_s: float) -> Any:
    """The run's store, once every process has joined it (see the module docstring)."""
    deadline = time.monotonic() + timeout_s
    store = _open_store(rendezvous, rank=rank, size=size, names=names, timeout_s=timeout_s)
    keys = [_JOINED.format(rank=r) for r in range(size)]
    while time.monotonic() <= deadline:
        state = _look(store, keys, rank)
        if state == "all":
            return store
        if state == "given up":  # rank 0 gave up first and wrote who never came
            with contextlib.suppress(NoAnswer):  # (silent again: look once more)
                raise _never_joined(_given_up_on(store), names, timeout_s)
        time.sleep(_POLL_S)
    try:
        away = _absent(store, keys)
    except NoAnswer:  # the store itself went silent: its host is the one lost
        raise _host_lost(rendezvous, names, timeout_s, "stopped answering") from None
    if rank == 0:  # tell the others who, and keep the store up while they read it
        store.set(_MISSING, " ".join(map(str, away)))
        if rendezvous.startswith("tcp://"):  # a file store outlives its writer
            time.sleep(LINGER_S)
    raise _never_joined(away, names, timeout_s)


def _look(store: Any, keys: list[str], rank: int) -> str:
    """One look at the store: "all" joined, rank 0 "given up", "waiting" or "silent".

    Our own key is written at every look (it is idempotent), so a look that
    found the store silent is simply repeated.
    """
    try:
        bounded(lambda s: s.set(keys[rank], "1"), store=store)
        if bounded(lambda s: s.check(keys), store=store):
            return "all"
        return "given up" if bounded(lambda s: s.check([_MISSING]), store=store) else "waiting"
    except NoAnswer:
        return "silent"


def _given_up_on(store: Any) -> list[int]:
    """The ranks rank 0 wrote as never joined."""
    return [int(r) for r in bounded(lambda s: s.get(_MISSING), store=store).split()]


def _absent(store: Any, keys: list[str]) -> list[int]:
    """The ranks whose key is not in the store (asked once, past the deadline)."""
    return [
        r for r, key in enumerate(keys) if not bounded(lambda s, k=key: s.check([k]), store=store)
    ]


def _never_joined(away: list[int], names: tuple[str, ...], timeout_s: float) -> PeerLost:
    listed = ", ".join(describe(r, names) for r in away)
    return PeerLost(
        f"lost {listed} at start-up: not joined the run within {timeout_s:g}s "
        "([launch] collective_timeout); check that every process was started with "
        "the same rendezvous and can reach it",
        peer=away[0],
    )


def _host_lost(rendezvous: str, names: tuple[str, ...], timeout_s: float, how: str) -> PeerLost:
    return PeerLost(
        f"lost {describe(0, names)} at start-up: its rendezvous at {rendezvous} {how} "
        f"within {timeout_s:g}s ([launch] collective_timeout); it hosts the run's store: "
        "check it is running and the port is open",
        peer=0,
    )


def _open_store(
    rendezvous: str, *, rank: int, size: int, names: tuple[str, ...], timeout_s: float
) -> Any:
    import torch.distributed as dist

    url = urlparse(rendezvous)
    if url.scheme == "file":
        return dist.FileStore(url.path, size)
    if url.scheme != "tcp" or not url.hostname or not url.port:
        raise SpecError(f"rendezvous {rendezvous!r}: expected tcp://HOST:PORT or file:///PATH")
    try:
        return dist.TCPStore(
            url.hostname,
            url.port,
            size,
            is_master=rank == 0 and not _agent_hosts(url.hostname, url.port),
            timeout=timedelta(seconds=timeout_s),
            wait_for_workers=False,  # we wait ourselves, naming who is missing
        )
    except (RuntimeError, ValueError) as error:
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        if rank == 0:
            raise SpecError(
                f"could not host the rendezvous on port {url.port} ({first}): is another "
                "run using it? Pick a free port (--master-port)"
            ) from None
        raise _host_lost(rendezvous, names, timeout_s, f"did not answer ({first})") from None


def _agent_hosts(host: str, port: int) -> bool:
    """Whether torchrun's agent already hosts a store at ``host:port`` (then rank 0 joins it)."""
    return (
        os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and os.environ.get("MASTER_ADDR") == host
        and os.environ.get("MASTER_PORT") == str(port)
    )
