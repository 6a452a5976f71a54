"""Fixtures shared across test folders (one expensive run, several readers)."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import ONE_EPOCH, QUICKSTART, QUICKSTART_PROCESSES, REPO

PER_HOST = REPO / "launchers" / "party_per_host.sh"


@dataclass(frozen=True)
class SeparateRun:
    """Processes started one by one, as on separate hosts: exit codes, logs, outputs."""

    out: Path
    codes: dict[str, int]
    logs: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def quickstart_on_loopback(tmp_path_factory) -> SeparateRun:
    """The one-epoch quickstart, one ``party_per_host.sh`` per process on loopback.

    Read by the per-host launcher test and, as the reference, by the
    namespace run (same spec, same seed: results must agree).
    """
    out = tmp_path_factory.mktemp("per-host")
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    base["SECURE_ML"] = str(REPO / ".venv" / "bin" / "secure-ml")
    if not os.access(base["SECURE_ML"], os.X_OK):
        base.pop("SECURE_ML")
    procs = {}
    for rank, name in enumerate(QUICKSTART_PROCESSES):
        env = {**base, "OUT": str(out / name)}
        if name == "dealer":
            env["ROLE"] = "dealer"
        else:
            env["RANK"] = str(rank)
        procs[name] = subprocess.Popen(
            ["bash", str(PER_HOST), str(QUICKSTART), *ONE_EPOCH],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    logs = {name: p.communicate(timeout=220)[0] for name, p in procs.items()}
    return SeparateRun(out, {n: p.returncode for n, p in procs.items()}, logs)
