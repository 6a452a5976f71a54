"""An eavesdropper on the bridge between namespaces: what can it read?

Three parties and the dealer, one per namespace, run a function with a known
secret: p0 shares it, the parties compute on it and reveal the result to p2
only. ``tcpdump`` on the bridge records every byte. The test then searches
the reassembled TCP streams for:

- every ChaCha20 key that crosses a link (each party's key for the pairwise
  stream it shares with the next rank, the dealer's key for each party), in
  the form it is sent (4 int64);
- the shares p0 and p1 send p2 when the result is revealed to it;
- the spec hash the processes exchange to check they run the same spec.

With encryption on (the default off loopback) it finds none of them; with
``encryption = "off"`` and ``insecure_plaintext = true`` it finds every one,
so the search itself is shown to work. Either way it never finds the keys a
party keeps to itself, or p2's own share. The keys are recorded by the
function's unpickling, in each process before its session starts (a test
hook: ``secure_ml.sharing.csprng.new_key`` is wrapped to log what it drew).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from netns import (
    Testnet,
    ensure_tcpdump,
    function_spec,
    in_subnet,
    netns_available,
    pickled_function,
    run_parties_in_netns,
    tcp_packets,
    tcp_streams,
    unique_prefix,
)

pytestmark = pytest.mark.multiparty

NAMES = ("p0", "p1", "p2", "dealer")
SECRET = torch.linspace(-3.0, 5.0, 24)
SPEC = function_spec(("p0", "p1", "p2"), receiver="p2", collective_timeout=60)
PLAINTEXT = ["--set", "transport.encryption=off", "--set", "transport.insecure_plaintext=true"]


def _record_keys(folder: str) -> None:
    """Wrap ``new_key``: each key drawn is logged with the function that drew it."""
    from secure_ml.sharing import csprng

    drawn = csprng.new_key

    def new_key() -> bytes:
        key = drawn()
        frame = sys._getframe(1)
        while frame.f_code.co_name.startswith("<"):  # a comprehension: its function
            frame = frame.f_back
        caller = frame.f_code.co_name
        wire = csprng.key_to_tensor(key).numpy().tobytes()
        line = json.dumps({"caller": caller, "wire": wire.hex()})
        with open(Path(folder) / f"keys-{os.getpid()}.jsonl", "a") as f:
            f.write(line + "\n")
        return key

    csprng.new_key = new_key


class Spy:
    """The function every process loads: unpickling it installs the key log."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        _record_keys(self.folder)

    def __call__(self, session):
        x = session.share(SECRET if session.name == "p0" else None, owner="p0")
        y = x * 2 + x
        share = y.share.contiguous().numpy().tobytes()
        opened = session.reveal(y, to=["p2"])
        record = {"share": share.hex(), "pid": os.getpid()}
        record["opened"] = None if opened is None else opened.tolist()
        (Path(self.folder) / f"share-{session.name}.json").write_text(json.dumps(record))


@pytest.mark.timeout(240)
def test_an_eavesdropper_finds_nothing_when_encrypted_and_everything_when_not(tmp_path):
    reason = netns_available() or ensure_tcpdump()
    if reason:
        pytest.skip(reason)
    spec = tmp_path / "spy.toml"
    spec.write_text(SPEC)
    found = {}
    with Testnet(unique_prefix("spy"), len(NAMES)) as net:
        for mode, extra in (("encrypted", []), ("plain", PLAINTEXT)):
            found[mode] = _eavesdrop(net, spec, tmp_path / mode, extra)
    encrypted, plain = found["encrypted"], found["plain"]
    sent = ["next key p0", "next key p1", "next key p2"]
    sent += ["dealer key 0", "dealer key 1", "dealer key 2", "share p0", "share p1", "spec hash"]
    kept = ["local key p0", "local key p1", "local key p2", "share p2"]
    assert set(encrypted) == set(plain) == set(sent) | set(kept)
    assert [name for name in sent if encrypted[name]] == []
    assert [name for name in sent if not plain[name]] == []
    assert [name for name in kept if encrypted[name] or plain[name]] == []


def _eavesdrop(net: Testnet, spec: Path, out: Path, extra: list[str]) -> dict[str, bool]:
    """Run the spy function with a capture on; which secrets appear in the traffic."""
    spy_dir = out / "spy"
    spy_dir.mkdir(parents=True)
    (out / "spy.pkl").write_bytes(pickled_function(Spy(spy_dir)))
    capture = net.capture(out / "bridge.pcap")
    run = run_parties_in_netns(
        net, spec, out / "runs", extra_args=["--function", str(out / "spy.pkl"), *extra]
    )
    codes = run.wait(timeout=150)
    capture.stop()
    run.kill_all()
    for name in NAMES:
        assert codes[name] == 0, f"{name} exit {codes[name]}:\n{run.log(name)}"
    channel = "plain" if extra else "encrypted"
    p2 = json.loads((spy_dir / "share-p2.json").read_text())
    torch.testing.assert_close(torch.tensor(p2["opened"]), SECRET * 3, atol=1e-3, rtol=0)
    results = {
        name: json.loads((run.outs[name] / f"result-{name}.json").read_text()) for name in NAMES
    }
    assert {r["channel"] for r in results.values()} == {channel}
    secrets = _secrets(spy_dir, results["p0"]["spec_hash"])
    packets = [p for p in tcp_packets(capture.path) if in_subnet(p.src) and in_subnet(p.dst)]
    streams = list(tcp_streams(packets).values())
    assert sum(map(len, streams)) > 5_000, "the capture holds too little to search"
    return {name: any(secret in s for s in streams) for name, secret in secrets.items()}


def _secrets(spy_dir: Path, spec_hash: str) -> dict[str, bytes]:
    """Each secret by name, as the bytes that would be on the wire."""
    secrets = {"spec hash": spec_hash.encode()}
    logs = {p.stem.split("-")[1]: p.read_text().splitlines() for p in spy_dir.glob("keys-*")}
    drawn = {pid: [json.loads(line) for line in lines] for pid, lines in logs.items()}
    assert len(drawn) == len(NAMES), sorted(drawn)
    for name in NAMES[:-1]:
        record = json.loads((spy_dir / f"share-{name}.json").read_text())
        secrets[f"share {name}"] = bytes.fromhex(record["share"])
        keys = drawn.pop(str(record["pid"]))
        assert [k["caller"] for k in keys] == ["setup_party_streams"] * 2, keys
        secrets[f"next key {name}"] = bytes.fromhex(keys[0]["wire"])
        secrets[f"local key {name}"] = bytes.fromhex(keys[1]["wire"])
    [keys] = drawn.values()  # the dealer's
    assert [k["caller"] for k in keys] == ["setup_dealer_streams"] * 3, keys
    secrets |= {f"dealer key {i}": bytes.fromhex(k["wire"]) for i, k in enumerate(keys)}
    return secrets
