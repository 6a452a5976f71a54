"""Encrypted channels between real processes: refusals that end the run.

Both runs seal every link (``encryption = "on"``, as across hosts), with key
pairs made for this test run. A party whose private key does not match the
public key the others hold is refused during the handshake, before the user
function (and so any share) runs anywhere; a message altered on the wire
stops the run at its receiver, naming the link.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from mpkit import make_spec

import secure_ml
from secure_ml.errors import EXIT_CODES, ChannelError, PartyFailure
from secure_ml.keys import init_keys

pytestmark = [pytest.mark.multiparty, pytest.mark.timeout(90)]


def encrypted_spec(keys) -> dict:
    spec = make_spec("ttp")
    spec["transport"] = {"encryption": "on", "keys": str(keys)}
    spec["launch"] = {"collective_timeout": 20, "heartbeat_timeout": 20}
    return spec


def marks_that_it_ran(session):
    (session.out_dir / "ran").write_text("the handshake let this party through")


def test_a_party_whose_key_does_not_match_is_refused_before_any_share(tmp_path, party_keys):
    keys = tmp_path / "keys"
    shutil.copytree(party_keys, keys)
    (keys / "p1.key").unlink()  # p1 now signs with a key nobody listed
    init_keys("p1", tmp_path / "impostor")
    shutil.copy(tmp_path / "impostor" / "p1.key", keys / "p1.key")
    with pytest.raises(PartyFailure) as failure:
        secure_ml.run(marks_that_it_ran, encrypted_spec(keys), out=tmp_path / "run", timeout=60)
    message = str(failure.value)
    assert "ChannelError: party p1 (rank 1) could not prove it is p1" in message, message
    assert "refusing the link before any share is exchanged" in message
    assert failure.value.exit_code == EXIT_CODES[ChannelError]
    assert not list((tmp_path / "run" / "parties").glob("*/ran"))  # no function ran anywhere


def tampers_with_one_message(session):
    shared = session.share(torch.arange(4.0) if session.name == "p0" else None, owner="p0")
    first = session.reveal(shared, to=["p0"], name="first")
    sealed = session.links.frames
    (session.out_dir / "checks.txt").write_text(
        f"{session.channel} {type(sealed).__name__} {first is None or first.tolist()}"
    )
    if session.name == "p1":  # an attacker on the wire flips one bit of p1's next message to p0
        seal = sealed.seal

        def flip(peer, seq, payload):
            wire = seal(peer, seq, payload)
            if peer == 0:
                wire[-1] ^= 1
                sealed.seal = seal
            return wire

        sealed.seal = flip
    return session.reveal(shared * 2, to=["p0"], name="second")


def test_a_message_altered_on_the_wire_stops_the_run_naming_the_link(tmp_path, party_keys):
    with pytest.raises(PartyFailure) as failure:
        secure_ml.run(tampers_with_one_message, encrypted_spec(party_keys), out=tmp_path,
                      timeout=60)  # fmt: skip
    message = str(failure.value)
    assert "p0 (rank 0) failed: ChannelError: message" in message, message
    assert "from party p1 (rank 1) failed authentication" in message
    checks = {p: (tmp_path / "parties" / p / "checks.txt").read_text() for p in ("p0", "p1")}
    assert checks["p0"] == "encrypted SealedFrames [0.0, 1.0, 2.0, 3.0]"
    assert checks["p1"] == "encrypted SealedFrames True"
    assert not (tmp_path / "result.json").exists()
