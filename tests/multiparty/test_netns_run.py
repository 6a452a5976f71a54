"""A real multi-host run: one process per network namespace, over a bridge.

The quickstart spec (3 hospitals + dealer) runs with each process in its own
namespace (its own eth0 and address), meeting only through the bridge; a
capture on the bridge proves the bytes really crossed it between the hosts'
addresses. Its result equals the same run's on loopback (the session fixture
``quickstart_on_loopback``) within fixed-point tolerance. Needs root
(skipped otherwise); installs tcpdump when missing.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch
from netns import (
    MASTER_PORT,
    Testnet,
    ensure_tcpdump,
    in_subnet,
    netns_available,
    run_parties_in_netns,
    tcp_packets,
    unique_prefix,
)
from testkit import ONE_EPOCH, QUICKSTART, QUICKSTART_PROCESSES

pytestmark = pytest.mark.multiparty

SPEC, NAMES = QUICKSTART, QUICKSTART_PROCESSES


@pytest.mark.timeout(180)
def test_quickstart_across_namespaces(tmp_path, quickstart_on_loopback):
    reason = netns_available() or ensure_tcpdump()
    if reason:
        pytest.skip(reason)
    with Testnet(unique_prefix("run"), len(NAMES)) as net:
        prefix = net.prefix
        capture = net.capture(tmp_path / "br0.pcap")
        started = time.monotonic()
        run = run_parties_in_netns(
            net, SPEC, tmp_path / "out", extra_args=list(ONE_EPOCH), timeout=120
        )
        assert [r.name for r in run.ranks] == list(NAMES)
        codes = run.wait()
        seconds = time.monotonic() - started
        capture.stop()
        for name in NAMES:
            assert codes[name] == 0, f"{name} exit {codes[name]}:\n{run.log(name)}"
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left, f"teardown left namespaces behind:\n{left}"

    out = tmp_path / "out" / "hospital_c"
    record = json.loads((out / "result-hospital_c.json").read_text())
    assert record["metrics"]["accuracy"] > 0.9
    assert record["channel"] == "encrypted"
    # the same spec and seed on loopback: equal up to fixed-point rounding
    reference = quickstart_on_loopback.out / "hospital_c"
    assert quickstart_on_loopback.codes["hospital_c"] == 0
    loopback = json.loads((reference / "result-hospital_c.json").read_text())
    assert abs(record["metrics"]["accuracy"] - loopback["metrics"]["accuracy"]) <= 0.02
    weights, expected = torch.load(out / "model.pt"), torch.load(reference / "model.pt")
    assert weights.keys() == expected.keys()
    for key, value in weights.items():
        torch.testing.assert_close(value, expected[key], atol=0.02, rtol=0.0)
    assert not (tmp_path / "out" / "hospital_a" / "model.pt").exists()

    packets = [p for p in tcp_packets(capture.path) if in_subnet(p.src) and in_subnet(p.dst)]
    hosts = {net.addr(i) for i in range(len(NAMES))}
    # every process sent and received over the bridge, from its own address
    assert {p.src for p in packets} == hosts and {p.dst for p in packets} == hosts
    # everyone met at rank 0's rendezvous, then gloo's pairs meshed host to host
    master = net.addr(0)
    to_store = {p.src for p in packets if p.dst == master and p.dport == MASTER_PORT}
    assert to_store == hosts - {master}
    pairs = {frozenset((p.src, p.dst)) for p in packets if p.payload}
    assert len(pairs) == len(hosts) * (len(hosts) - 1) // 2, sorted(map(sorted, pairs))
    payload = sum(len(p.payload) for p in packets)
    assert payload > 200_000, f"only {payload} bytes of TCP payload in {seconds:.1f} s"
