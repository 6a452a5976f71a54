"""One `secure-ml party` per rank plus `secure-ml dealer`, meeting over TCP.

This is the multi-host path (launchers/party_per_host.sh) on loopback: each
process gets only the env contract (RANK, MASTER_ADDR, MASTER_PORT). The run
itself is the session fixture ``quickstart_on_loopback`` (tests/conftest.py),
which the namespace run also compares against.
"""

from __future__ import annotations

import json

import pytest


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_parties_started_separately_train_together(quickstart_on_loopback):
    run = quickstart_on_loopback
    for name, code in run.codes.items():
        assert code == 0, f"{name}:\n{run.logs[name][-3000:]}"
    record = json.loads((run.out / "hospital_c" / "result-hospital_c.json").read_text())
    assert record["metrics"]["accuracy"] > 0.9
    assert record["channel"] == "plain"  # loopback: no keys needed, nothing to encrypt
    assert (run.out / "hospital_c" / "model.pt").is_file()
    assert not (run.out / "hospital_a" / "model.pt").exists()
