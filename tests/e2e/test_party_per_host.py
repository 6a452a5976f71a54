"""One `secure-ml party` per rank plus `secure-ml dealer`, meeting over TCP.

This is the multi-host path (launchers/party_per_host.sh) on loopback: each
process gets only the env contract (RANK, MASTER_ADDR, MASTER_PORT).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from testkit import REPO

SPEC = REPO / "protocols" / "mpc_train_quickstart.toml"
LAUNCHER = REPO / "launchers" / "party_per_host.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_parties_started_separately_train_together(tmp_path):
    base_env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    base_env["SECURE_ML"] = str(REPO / ".venv" / "bin" / "secure-ml")
    if not os.access(base_env["SECURE_ML"], os.X_OK):
        base_env.pop("SECURE_ML")
    procs = {}
    for rank, name in enumerate(["hospital_a", "hospital_b", "hospital_c", "dealer"]):
        env = {**base_env, "OUT": str(tmp_path / name)}
        if name == "dealer":
            env["ROLE"] = "dealer"
        else:
            env["RANK"] = str(rank)
        procs[name] = subprocess.Popen(
            ["bash", str(LAUNCHER), str(SPEC), "--set", "train.epochs=1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    logs = {name: p.communicate(timeout=220)[0] for name, p in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{logs[name][-3000:]}"
    record = json.loads((tmp_path / "hospital_c" / "result-hospital_c.json").read_text())
    assert record["metrics"]["accuracy"] > 0.9
    assert (tmp_path / "hospital_c" / "model.pt").is_file()
    assert not (tmp_path / "hospital_a" / "model.pt").exists()
