"""Helpers shared by all tests (tests/ is not a package: see DESIGN.md §3)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


QUICKSTART = REPO / "protocols" / "mpc_train_quickstart.toml"
QUICKSTART_PROCESSES = ("hospital_a", "hospital_b", "hospital_c", "dealer")
#: the short quickstart that the loopback and the namespace runs both train
ONE_EPOCH = ("--set", "train.epochs=1")


def secure_ml_run(spec: Path, out: Path, sets: list[str], timeout: float):
    """``secure-ml run SPEC --out OUT --quiet --set ...`` from the repository, captured."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "secure_ml", "run", str(spec), "--out", str(out), "--quiet",
               *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
