"""What one party sends another is parsed as data, never run (issue 12, items 3 and 4).

A malicious peer does not call our ``send_obj``: it writes bytes on the wire.
These tests do exactly that, in the layout of our links' bytes messages (an
int64 length, then the bytes), with a pickle whose unpickling would create a
marker file, and check that the receiver stops with a protocol error naming
the sender and that the marker never appears.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import cloudpickle
import pytest
import torch
from mpkit import make_spec

import secure_ml
from secure_ml.errors import EXIT_CODES, PartyFailure, ProtocolAbort

pytestmark = pytest.mark.multiparty


class CreatesFile:
    """Unpickling this runs ``touch path`` (what a code-execution payload would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def sends_a_pickle_as_an_object(payload: bytes):
    def body(session):
        import torch.distributed as dist

        comm = session.crypten.communicator.get()
        if session.rank == 1:
            # a bytes message on the wire: an int64 length, then the pickle's bytes
            length = len(payload).to_bytes(8, "big")
            dist.send(torch.frombuffer(bytearray(length), dtype=torch.uint8), 0)
            dist.send(torch.frombuffer(bytearray(payload), dtype=torch.uint8), 0)
        else:
            return comm.recv_obj(1)

    return body


@pytest.mark.timeout(90)
def test_a_pickle_sent_as_an_object_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "created_by_the_pickle"
    payload = pickle.dumps(CreatesFile(marker))
    with pytest.raises(PartyFailure) as failure:
        secure_ml.run(sends_a_pickle_as_an_object(payload), make_spec("2pc"), out=tmp_path,
                      timeout=60)  # fmt: skip
    message = str(failure.value)
    assert "p0 (rank 0) failed: ProtocolAbort: party p1 (rank 1) sent a malformed object" in message
    assert "(a Python pickle)" in message and "nothing it sent was run" in message
    assert not marker.exists()


ATTACKER = """
import os, pickle, sys
import torch, torch.distributed as dist

payload, rendezvous = open(sys.argv[1], "rb").read(), sys.argv[2]
# join as secure_ml's rendezvous expects (a rank key in the store), then gloo
store = dist.FileStore(rendezvous[len("file://"):], 2)
store.set("secure_ml/joined/1", "1")
dist.init_process_group("gloo", store=store, world_size=2, rank=1)
def as_bytes(data):
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
# the channel handshake's hello (on loopback: no encryption), as a real peer's
hello = torch.empty(41, dtype=torch.uint8)
pending = [dist.irecv(hello, 0), dist.isend(as_bytes(b"SMLHELO1" + bytes(1) + os.urandom(32)), 0)]
[p.wait() for p in pending]
# the spec-hash check of every session on the wire: each side sends an int64
# length, then its bytes; this peer sends a pickle and unpickles nothing itself
theirs = torch.empty(8, dtype=torch.uint8)
pending = [dist.irecv(theirs, 0), dist.isend(as_bytes(len(payload).to_bytes(8, "big")), 0)]
[p.wait() for p in pending]
body = torch.empty(int.from_bytes(theirs.numpy().tobytes(), "big"), dtype=torch.uint8)
pending = [dist.irecv(body, 0), dist.isend(as_bytes(payload), 0)]
[p.wait() for p in pending]
"""


@pytest.mark.timeout(90)
def test_a_pickle_sent_at_the_spec_check_is_refused_and_runs_nothing(tmp_path):
    """One honest `secure-ml party` (a) and a peer (b) that sends a pickle."""
    marker = tmp_path / "created_by_the_pickle"
    (tmp_path / "payload.pkl").write_bytes(pickle.dumps(CreatesFile(marker)))
    spec = tmp_path / "two.toml"
    spec.write_text(
        '[protocol]\nname = "python"\ndealer = "tfp"\ninsecure_dealer = true\n'
        '[[party]]\nname = "a"\nroles = ["data_owner"]\n'
        '[[party]]\nname = "b"\nroles = ["data_owner"]\n'
    )
    function = tmp_path / "noop.pkl"
    function.write_bytes(cloudpickle.dumps(id))  # the run must stop before calling it
    rendezvous = f"file://{tmp_path / 'rdzv'}"
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "RENDEZVOUS": rendezvous,
           "GLOO_SOCKET_IFNAME": "lo"}  # fmt: skip
    honest = subprocess.Popen(
        [sys.executable, "-m", "secure_ml", "party", str(spec), "--out", str(tmp_path / "a"),
         "--function", str(function)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    attacker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ATTACKER), str(tmp_path / "payload.pkl"),
         rendezvous],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = honest.communicate(timeout=80)[1]
    attacker.communicate(timeout=30)
    assert not marker.exists(), "the honest party unpickled the peer's message"
    assert honest.returncode == EXIT_CODES[ProtocolAbort], err
    assert "party b (rank 1) sent a malformed object message" in err
    assert "(a Python pickle)" in err


def asks_the_dealer_for(message):
    def body(session):
        comm = session.crypten.communicator.get()
        if session.rank == 0:
            # what CrypTen's TTPClient.ttp_request does, with a request of our choosing
            comm.send_obj(message, comm.get_ttp_rank(), comm.ttp_group)
            comm.recv_obj(comm.get_ttp_rank(), comm.ttp_group)

    return body


@pytest.mark.timeout(90)
def test_the_dealer_refuses_a_method_it_does_not_serve(tmp_path):
    # CrypTen's TTPServer would call server._setup_generators() and re-seed
    # (today: the dealer waits in a barrier no party enters)
    request = {"function": "_setup_generators", "device": "cpu", "args": (), "kwargs": {}}
    with pytest.raises(PartyFailure) as failure:
        secure_ml.run(asks_the_dealer_for(request), make_spec("ttp"), out=tmp_path, timeout=60)
    message = str(failure.value)
    assert "dealer (rank 2) failed: ProtocolAbort: the dealer refuses a request" in message
    assert "'_setup_generators' is not served" in message
