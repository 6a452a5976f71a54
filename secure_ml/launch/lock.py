"""One run per output folder: an advisory lock held for the run's lifetime.

Two runs writing the same ``--out DIR`` would overwrite each other's logs,
control files and results. ``hold_output(DIR, ...)`` takes an exclusive
``fcntl`` lock on ``DIR/.lock`` and writes who holds it (pid, start time,
spec, command). The kernel releases the lock when the holder exits or crashes,
so a stale file never blocks a later run; the file itself stays (removing it
would let two runs lock two different files). A second run refuses at once
with ``OutputInUse``, naming the holder from that file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from secure_ml.errors import OutputInUse

LOCK_NAME = ".lock"


@contextlib.contextmanager
def hold_output(out_dir: str | Path, *, spec_source: str) -> Iterator[Path]:
    """Hold ``out_dir``'s lock while the block runs; raise if another run holds it."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    # O_CLOEXEC (Python's default) keeps the descriptor out of party processes:
    # the lock ends with this process, not with its slowest child
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputInUse(_refusal(out, path)) from None
        _write_holder(fd, spec_source)
        yield out
    finally:
        os.close(fd)  # releases the lock


def _write_holder(fd: int, spec_source: str) -> None:
    holder = {
        "pid": os.getpid(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": spec_source,
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _refusal(out: Path, path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        who = f"pid {holder['pid']}, started {holder['started']}, spec {holder['spec']}"
    except (OSError, ValueError, KeyError, TypeError):
        who = "details not written yet"
    return (
        f"{out} is in use by another run ({who}); wait for it to finish, "
        "or pass a different --out DIR"
    )
