"""Every byte between two processes passes the codec (issue 13, item 1).

With ``[transport] codec = "audit"`` each process counts every message and
byte its codec seals and opens, per peer. Independently, each compute party
reads its own TCP sockets' counters (the kernel's ``TCP_INFO``: bytes sent
and acknowledged, bytes received) around one training run, leaving out the
rendezvous store's socket if it has one. gloo adds a fixed header to each message (96 bytes
on the sender's side, 48 for the receiver's ready notice, measured), so the
socket traffic must equal the codec's bytes plus those headers: a single
gloo collective, subgroup or pickle outside the codec would break the
equality. No ``torch.distributed`` collective may be called during the run,
and what the dealer's codec counts must mirror what party 0's counts for it.
Runs with 2 parties (no dealer) and 3 parties with the dealer, one training
run each, with one large opening (above the direct-exchange size) added. The
3-party run has encryption on (as across hosts): its sockets must carry
exactly the sealed bytes, so no message after the handshake went unsealed.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from mpkit import WORLDS, protocol_for, run_parties

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(240)]

SEND_HEADER, READY_NOTICE = 96, 48  # bytes gloo adds per message (tcp transport)
COLLECTIVES = ("all_reduce", "reduce", "broadcast", "all_gather", "gather", "scatter",
               "barrier", "reduce_scatter", "all_to_all", "all_gather_object",
               "broadcast_object_list", "new_group")  # fmt: skip


def socket_bytes(store_port: int) -> tuple[int, int]:
    """(sent and acknowledged, received) over this process's TCP connections."""
    sent = received = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.fromfd(int(fd), socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        with sock:  # a duplicate of the descriptor: closing it leaves gloo's open
            try:
                ends = (sock.getsockname()[1], sock.getpeername()[1])
            except OSError:
                continue  # a listening or unconnected socket
            if sock.type != socket.SOCK_STREAM or store_port in ends:
                continue
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
            acked, got = struct.unpack_from("QQ", info, 120)  # tcpi_bytes_acked/_received
            sent, received = sent + acked, received + got
    return sent, received


def totals(counts: dict) -> dict[str, int]:
    keys = ("sent_bytes", "sent_messages", "received_bytes", "received_messages")
    return {k: sum(peer[k] for peer in counts.values()) for k in keys}


def train_and_count(session):
    from secure_ml.protocols.train import MPCTrain

    # the local launcher meets in a file store; a tcp:// store has its own socket
    rendezvous = session.rendezvous
    store_port = int(rendezvous.rsplit(":", 1)[1]) if rendezvous.startswith("tcp://") else -1
    frames = session.links.frames
    calls: list[str] = []
    originals = {name: getattr(dist, name) for name in COLLECTIVES}
    for name, call in originals.items():
        setattr(dist, name, lambda *a, _n=name, _c=call, **k: (calls.append(_n), _c(*a, **k))[1])
    session.links.barrier(range(session.world_size))
    time.sleep(0.3)  # let the last acknowledgements land
    before_socket, before_codec = socket_bytes(store_port), totals(frames.counts())
    MPCTrain.run(session)
    big = session.share(torch.ones(40_000) if session.rank == 0 else None, owner="p0")
    opened = big.get_plain_text()  # above the direct size: reduce-scatter + all-gather
    session.links.barrier(range(session.world_size))
    time.sleep(0.3)
    after_socket, after_codec = socket_bytes(store_port), totals(frames.counts())
    for name, call in originals.items():
        setattr(dist, name, call)
    return {
        "socket": [a - b for a, b in zip(after_socket, before_socket, strict=True)],
        "codec": {k: after_codec[k] - before_codec[k] for k in after_codec},
        "collectives": calls,
        "opened_ok": bool(torch.allclose(opened, torch.ones(40_000))),
        "codec_name": frames.name,
        "inner": type(frames.inner).__name__,
    }


def audit_spec(world: str, keys: Path) -> dict:
    n = WORLDS[world]["parties"]
    parties = [{"name": f"p{i}", "roles": ["data_owner"]} for i in range(n)]
    parties[-1]["roles"] += ["label_owner", "receiver"]
    return {
        "protocol": protocol_for(world, seed=3),
        "party": parties,
        "data": {"source": "sklearn:breast_cancer", "partition": "vertical"},
        "train": {"epochs": 1, "batch_size": 128, "lr": 0.5},
        # the 3-party world seals every message (as across hosts): the sockets
        # must then carry exactly the sealed bytes, so nothing passed unsealed
        "transport": {"codec": "audit"}
        if world == "2pc"
        else {"codec": "audit", "encryption": "on", "keys": str(keys)},
        "launch": {"collective_timeout": 60, "heartbeat_timeout": 20},
    }


@pytest.mark.parametrize("world", ["2pc", "3pc"])
def test_every_byte_between_parties_passed_the_codec(world, tmp_path, party_keys):
    results = run_parties(train_and_count, audit_spec(world, party_keys), tmp_path)
    inner = "PlainFrames" if world == "2pc" else "SealedFrames"
    peers = WORLDS[world]["parties"] - 1 + (WORLDS[world]["dealer"] == "ttp")
    for name, r in results.items():
        codec, (sent, received) = r["codec"], r["socket"]
        assert r["codec_name"] == "audit" and r["opened_ok"] and r["inner"] == inner, name
        assert r["collectives"] == [], f"{name} called gloo collectives: {r['collectives']}"
        assert codec["sent_messages"] > 100, name  # a training run, not an idle one
        # every byte this party put on the wire: sealed payloads plus gloo's headers
        expected_sent = (codec["sent_bytes"] + SEND_HEADER * codec["sent_messages"]
                         + READY_NOTICE * codec["received_messages"])  # fmt: skip
        assert sent == expected_sent, f"{name}: {sent} bytes on its sockets, {expected_sent} sealed"
        expected_received = (codec["received_bytes"] + SEND_HEADER * codec["received_messages"]
                             + READY_NOTICE * codec["sent_messages"])  # fmt: skip
        # a peer may already have posted its next receive (the dealer waits for
        # party 0's next request): at most one ready notice per peer at each end
        assert abs(received - expected_received) <= 2 * READY_NOTICE * peers, name
    if WORLDS[world]["dealer"] == "ttp":  # the dealer's codec saw the same traffic as p0's
        dealer = json.loads((tmp_path / "parties" / "dealer" / "links-dealer.json").read_text())
        party0 = json.loads((tmp_path / "parties" / "p0" / "links-p0.json").read_text())
        dealer_rank = str(WORLDS[world]["parties"])
        to_dealer, from_p0 = party0["peers"][dealer_rank], dealer["peers"]["0"]
        assert to_dealer["sent_bytes"] == from_p0["received_bytes"] > 0
        assert to_dealer["received_bytes"] == from_p0["sent_bytes"] > 0
