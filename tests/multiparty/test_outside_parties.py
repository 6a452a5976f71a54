"""Parties outside CrypTen's world, and optional parties that die (issue 13, item 2).

A process with ``crypten = false`` joins the run's links but never CrypTen:
two such processes run a protocol between themselves and neither imports
crypten (checked at interpreter exit, after the session closed). An
``optional`` input party secret-shares a value to the compute parties
(``send_shares``: random ring elements over its links, no CrypTen) and is then
killed; a second one is killed before it sends anything. The compute parties
notice the second's loss together (``receive_shares`` returns None), go on
without it, reveal what the first sent and finish; the launcher drops both and
the run succeeds.
"""

from __future__ import annotations

import pytest
import torch
from mpkit import make_spec, run_parties

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(180)]


def record_modules_at_exit(session) -> None:
    """At interpreter exit, write whether crypten was ever imported in this process."""
    import atexit
    import sys

    marker = session.out_dir / "crypten-imported.txt"
    atexit.register(lambda: marker.write_text(str("crypten" in sys.modules)))


def outside_pair(session):
    from secure_ml.errors import ProtocolAbort

    record_modules_at_exit(session)
    refused = None
    try:
        session.share(None, owner="a")
    except ProtocolAbort as error:
        refused = str(error)
    if session.name == "a":
        session.send(torch.arange(5.0), to="b")
        session.send_object({"note": ["hello", 2], "shape": (5,)}, to="b")
        back = session.receive(torch.empty(5), sender="b")
        return {"back": back, "refused": refused, "comm": session.comm_stats()}
    got = session.receive(torch.empty(5), sender="a")
    note = session.receive_object(sender="a")
    session.send(got * 2, to="a")
    return {"got": got, "note": note, "refused": refused, "comm": session.comm_stats()}


def test_two_processes_without_a_crypten_world_never_import_crypten(tmp_path):
    spec = {
        "protocol": {"name": "python", "dealer": "none"},
        "party": [
            {"name": "a", "roles": ["data_owner"], "crypten": False},
            {"name": "b", "roles": ["receiver"], "crypten": False},
        ],
        "launch": {"collective_timeout": 60, "heartbeat_timeout": 20},
    }
    results = run_parties(outside_pair, spec, tmp_path)
    assert torch.equal(results["a"]["back"], torch.arange(5.0) * 2)
    assert torch.equal(results["b"]["got"], torch.arange(5.0))
    assert results["b"]["note"] == {"note": ["hello", 2], "shape": (5,)}
    for name in ("a", "b"):
        assert "outside CrypTen's world" in results[name]["refused"]
        # payload bytes each way: 5 float32 twice, plus the object (length + body)
        assert results[name]["comm"]["bytes"] > 40
        imported = (tmp_path / "parties" / name / "crypten-imported.txt").read_text()
        assert imported == "False", f"{name} imported crypten"


# ---------------------------------------------------------- optional parties --
VALUE = torch.tensor([1.5, -2.25, 3.0])


def input_party_then_killed(session):
    """Clients send shares (or not) and die; compute parties go on without them."""
    import os
    import signal

    from secure_ml.errors import PeerLost

    if session.name == "late":
        os.kill(os.getpid(), signal.SIGKILL)  # dies before sending anything
    if session.name == "client":
        session.send_shares(VALUE)
        for name in ("p0", "p1"):  # wait until both hold their share, then die
            session.receive(torch.zeros(1), sender=name)
        os.kill(os.getpid(), signal.SIGKILL)
    shared = session.receive_shares(sender="client", shape=(3,))
    session.send(torch.ones(1), to="client")
    share = shared.share.clone()
    late = session.receive_shares(sender="late", shape=(3,))
    lost = None
    try:  # the raw links say who was lost
        session.receive(torch.empty(1), sender="late")
    except PeerLost as error:
        lost = (error.peer, str(error))
    opened = session.reveal(shared * 2, to=["p0"], name="client value x2")
    return {"opened": opened, "late": late, "lost": lost, "share": share}


def test_optional_parties_killed_midway_do_not_stop_the_others(tmp_path):
    spec = make_spec("2pc")
    spec["party"] += [
        {"name": "client", "roles": ["data_owner"], "crypten": False, "failure": "optional"},
        {"name": "late", "roles": ["data_owner"], "crypten": False, "failure": "optional"},
    ]
    said: list[str] = []
    results = run_parties(input_party_then_killed, spec, tmp_path, view=said.append)
    assert sorted(results) == ["p0", "p1"]  # the dropped parties return nothing
    assert torch.allclose(results["p0"]["opened"], VALUE * 2, atol=1e-4)
    assert results["p1"]["opened"] is None
    # each compute party holds 64 random bits per element, not the encoded value
    for name in ("p0", "p1"):
        assert not torch.equal(results[name]["share"], (VALUE * 65536).long()), name
        assert results[name]["late"] is None, name
        peer, message = results[name]["lost"]
        assert peer == 3 and "lost the link to party late (rank 3)" in message
    dropped = [line for line in said if "dropped out" in line]
    assert len(dropped) == 2 and all("killed by signal SIGKILL" in line for line in dropped)
