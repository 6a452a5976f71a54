"""Files through which a party process reports to the launcher.

In ``<control>/``: ``<party>.hb`` (touched every second: the process is alive
and not frozen), ``<party>.progress`` (one line: what it is doing) and
``<party>.status.json`` (written once at the end: ok, or the error and its
traceback). Writes are atomic (write then rename), so the launcher never reads
half a file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

HEARTBEAT_PERIOD_S = 1.0


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class PartyControl:
    """The party side: heartbeat, progress and final status."""

    def __init__(self, directory: str | Path, party: str) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.party = party
        self._stop = threading.Event()
        self._parent = os.getppid()

    def path(self, suffix: str) -> Path:
        return self.dir / f"{self.party}.{suffix}"

    def start_heartbeat(self, *, exit_if_orphaned: bool) -> None:
        thread = threading.Thread(
            target=self._beat, args=(exit_if_orphaned,), name="heartbeat", daemon=True
        )
        thread.start()

    def _beat(self, exit_if_orphaned: bool) -> None:
        hb = self.path("hb")
        while not self._stop.is_set():
            hb.write_text(f"{time.time():.3f}")
            if exit_if_orphaned and os.getppid() != self._parent:
                os._exit(70)  # the launcher is gone: never outlive it
            self._stop.wait(HEARTBEAT_PERIOD_S)

    def progress(self, message: str) -> None:
        _atomic_write(self.path("progress"), message.replace("\n", " "))

    def finish(self, status: dict[str, Any]) -> None:
        self._stop.set()
        _atomic_write(self.path("status.json"), json.dumps(status))


class ControlReader:
    """The launcher side: read what a party reported."""

    def __init__(self, directory: str | Path, party: str) -> None:
        self.dir = Path(directory)
        self.party = party

    def _file(self, suffix: str) -> Path:
        return self.dir / f"{self.party}.{suffix}"

    def heartbeat_age(self) -> float | None:
        try:
            return time.time() - self._file("hb").stat().st_mtime
        except FileNotFoundError:
            return None

    def progress(self) -> str | None:
        try:
            return self._file("progress").read_text()
        except FileNotFoundError:
            return None

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._file("status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
