"""Start-up names who is missing; store calls give up on a silent host."""

from __future__ import annotations

import socket
import threading

import pytest

from secure_ml.errors import PeerLost, SpecError
from secure_ml.transport.notices import NoAnswer, bounded
from secure_ml.transport.rendezvous import meet

NAMES = ("alice", "bob", "dealer")


def test_a_process_that_never_joins_is_named(tmp_path):
    rendezvous = f"file://{tmp_path / 'rdzv'}"
    with pytest.raises(
        PeerLost, match=r"lost party bob \(rank 1\), party dealer \(rank 2\) at start-up"
    ) as info:
        meet(rendezvous, rank=0, size=3, names=NAMES, timeout_s=0.5)
    assert info.value.peer == 1 and "collective_timeout" in str(info.value)


def test_every_process_joined_returns_the_store(tmp_path):
    rendezvous = f"file://{tmp_path / 'rdzv'}"
    stores = {}
    threads = [
        threading.Thread(
            target=lambda r=r: stores.update(
                {r: meet(rendezvous, rank=r, size=2, names=NAMES[:2], timeout_s=10)}
            )
        )
        for r in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(stores) == [0, 1]


def test_an_unreachable_store_host_is_named():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        PeerLost, match=r"lost party alice \(rank 0\) at start-up: its rendezvous"
    ) as info:
        meet(f"tcp://127.0.0.1:{port}", rank=1, size=3, names=NAMES, timeout_s=1)
    assert info.value.peer == 0


def test_a_malformed_rendezvous_is_a_spec_error():
    with pytest.raises(SpecError, match="expected tcp://HOST:PORT or file:///PATH"):
        meet("udp://x:1", rank=0, size=2, names=NAMES, timeout_s=1)


@pytest.mark.timeout(30)
def test_a_store_call_that_never_returns_is_given_up():
    host_stopped = threading.Event()  # the call blocks until the test ends, as on a frozen host
    with pytest.raises(NoAnswer):
        bounded(lambda store: host_stopped.wait(), wait_s=0.2, store=object())
    host_stopped.set()
    assert bounded(lambda store: store + 1, store=1) == 2
